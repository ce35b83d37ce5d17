package desired

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/loader"
	"github.com/bulwark-filter/bulwark/maps"
)

// check parses src as test.hcl (not looking for its interfaces) and, if it is valid, compiles it: the
// diagnostics of both steps, as `bulwark config check --skip-interfaces` prints them.
func check(t *testing.T, src string) string {
	t.Helper()
	cfg, diags := config.ParseWithOptions("test.hcl", []byte(src), config.Options{SkipInterfaceCheck: true})
	if !diags.HasErrors() {
		_, compiled := Compile(cfg)
		diags = append(diags, compiled...)
	}
	return config.FormatDiagnostics(diags)
}

// writeFile writes content to dir/name and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTooManyRules: maps.MaxRules rules compile, one more is refused at the rule past the limit.
func TestTooManyRules(t *testing.T) {
	if maps.MaxRules != 253 {
		t.Fatalf("maps.MaxRules = %d; the expected lines below assume 253", maps.MaxRules)
	}
	for _, n := range []int{253, 254} {
		var b strings.Builder
		b.WriteString("interface \"eth0\" {}\nlimits {\n")
		for i := range n {
			fmt.Fprintf(&b, "  rule \"r%d\" {\n    protocol = \"udp\"\n    ports = [\"%d\"]\n    pps = 1\n  }\n", i, i+1)
		}
		b.WriteString("}\n")
		want := ""
		if n == 254 {
			// Two header lines, then five lines a rule: rule 254 starts on line 3+5*253.
			want = "test.hcl:1268:3: Too many rules: At most 253 rules are allowed; this is rule 254."
		}
		if got := check(t, b.String()); got != want {
			t.Errorf("%d rules: got\n%s\nwant\n%s", n, got, want)
		}
	}
}

// TestCapacity: the lists and the classes must fit their maps, per family; the limit passes, one more does not.
func TestCapacity(t *testing.T) {
	for _, c := range []struct {
		name, src, want string
	}{
		{"allow hosts at the limit", `maps { allow_hosts = 2 }
allow { cidrs = ["198.18.0.1", "198.18.0.2", "2001:2::1", "2001:2::2", "198.18.0.1/32"] }`, ""},
		{"allow hosts past the limit", `maps { allow_hosts = 2 }
allow { cidrs = ["198.18.0.1", "198.18.0.2", "198.18.0.3"] }`,
			"test.hcl:3:1: List map too small: The allow list has 3 IPv4 hosts, more than its map holds: maps allow_hosts is 2 entries; raise it (set at test.hcl:2:8)."},
		{"block prefixes past the default", `block { cidrs = ["2001:2::/48", "2001:2:1::/48"] }
maps { block_prefixes = 1 }`,
			"test.hcl:2:1: List map too small: The block list has 2 IPv6 prefixes, more than its map holds: maps block_prefixes is 1 entries; raise it (set at test.hcl:3:8)."},
		{"class prefixes past the limit", `maps { classes = 1 }
limits {
  class "a" {
    cidrs = ["198.18.0.0/24", "2001:2::/48"]
    multiplier = 2
  }
  class "b" {
    cidrs = ["198.18.1.0/24"]
    multiplier = 2
  }
}`, "test.hcl:8:3: Class map too small: The classes hold 2 IPv4 prefixes up to here, more than their map holds: maps classes is 1 entries; raise it (set at test.hcl:2:8)."},
		{"max_verdicts above the verdict map", `maps { verdicts = 1000 }
reputation { mode = "enforce" }`,
			"test.hcl:2:19: Verdict map too small: reputation max_verdicts (100000) must not exceed the verdict map's size, maps verdicts (1000)."},
		{"max_verdicts above the default verdict map", `reputation {
  mode = "shadow"
  max_verdicts = 131073
}`,
			"test.hcl:4:18: Verdict map too small: reputation max_verdicts (131073) must not exceed the verdict map's size, maps verdicts (131072)."},
		{"max_verdicts at the verdict map", `maps { verdicts = 1000 }
reputation {
  mode = "shadow"
  max_verdicts = 1000
}`, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := check(t, "interface \"eth0\" {}\n"+c.src); got != c.want {
				t.Errorf("got\n%s\nwant\n%s", got, c.want)
			}
		})
	}
}

// TestListFilesAndBlockFeeds: each list file and each block feed takes a list id.
func TestListFilesAndBlockFeeds(t *testing.T) {
	dir := t.TempDir()
	list := writeFile(t, dir, "l.txt", "198.18.0.1\n")
	feed := writeFile(t, dir, "f.txt", "198.18.0.1\n")
	if MaxListFiles != 506 || MaxBlockFeeds != 512 {
		t.Fatalf("MaxListFiles %d, MaxBlockFeeds %d: want list ids 6..511 for files and 512..1023 for feeds", MaxListFiles, MaxBlockFeeds)
	}
	for _, n := range []int{MaxListFiles, MaxListFiles + 1} {
		files := strings.TrimSuffix(strings.Repeat(`"`+list+`", `, n), ", ")
		got := check(t, "interface \"eth0\" {}\nblock {\n  files = ["+files+"]\n}\n")
		want := ""
		if n > MaxListFiles {
			// The files are on line 3, each element "path", two characters apart.
			col := 12 + MaxListFiles*(len(list)+4)
			want = fmt.Sprintf("test.hcl:3:%d: Too many list files: At most %d list files are allowed, allow and block together; this is file %d.", col, MaxListFiles, n)
		}
		if got != want {
			t.Errorf("%d list files: got %s, want %s", n, got, want)
		}
	}
	for _, n := range []int{MaxBlockFeeds, MaxBlockFeeds + 1} {
		var b strings.Builder
		b.WriteString("interface \"eth0\" {}\nfeed \"s\" {\n  path = \"" + feed + "\"\n  format = \"plain\"\n  action = \"score\"\n  weight = 1\n}\n")
		for i := range n {
			fmt.Fprintf(&b, "feed \"f%d\" {\n  path = %q\n  format = \"plain\"\n}\n", i, feed)
		}
		got := check(t, b.String())
		want := ""
		if n > MaxBlockFeeds {
			// The score feed is on lines 2-7; each block feed is four lines.
			want = fmt.Sprintf("test.hcl:%d:1: Too many block feeds: At most %d feeds may have action = \"block\"; this is block feed %d.", 8+4*MaxBlockFeeds, MaxBlockFeeds, n)
		}
		if got != want {
			t.Errorf("%d block feeds: got %s, want %s", n, got, want)
		}
	}
}

// TestDefaultSizes: the sizes a config leaves unset are this host's defaults (HostSizes), the loader's the ceilings; a size
// set is taken as it is.
func TestDefaultSizes(t *testing.T) {
	cfg, diags := config.ParseWithOptions("test.hcl", []byte("interface \"eth0\" {}\nmaps {\n  classes = 7\n  events_ring_kib = 64\n}\n"),
		config.Options{SkipInterfaceCheck: true})
	if diags.HasErrors() {
		t.Fatal(config.FormatDiagnostics(diags))
	}
	d, diags := Compile(cfg)
	if diags.HasErrors() {
		t.Fatal(config.FormatDiagnostics(diags))
	}
	want := HostSizes()
	want.Classes, want.EventsBytes = 7, 64*1024
	if d.Sizes != want {
		t.Errorf("sizes %+v, want %+v", d.Sizes, want)
	}
	// The documented defaults (configs/bulwark.hcl), spelled out so a change to them is deliberate.
	def := loader.DefaultSizes()
	if got := [...]uint32{def.Sources, def.RuleBuckets, def.Verdicts, def.AllowHosts, def.AllowPrefixes, def.BlockHosts,
		def.BlockPrefixes, def.Classes, def.Aggregates, def.EventsBytes / 1024}; got != [...]uint32{1048576, 1048576, 131072,
		65536, 16384, 1048576, 262144, 16384, 65536, 1024} {
		t.Errorf("default sizes changed: %v", got)
	}
}

// TestReference: the commented reference config states the datapath's limits, and its maps block, as written,
// sets every size to its default.
func TestReference(t *testing.T) {
	path := filepath.Join("..", "..", "configs", "bulwark.hcl")
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, limit := range []string{fmt.Sprintf("At most %d rules.", maps.MaxRules), fmt.Sprintf("%d files in allow and block", MaxListFiles),
		fmt.Sprintf("At most %d feeds with action = \"block\"", MaxBlockFeeds)} {
		if !strings.Contains(string(src), limit) {
			t.Errorf("configs/bulwark.hcl does not say %q", limit)
		}
	}
	cfg, diags := config.LoadWithOptions(path, config.Options{SkipInterfaceCheck: true})
	if diags.HasErrors() {
		t.Fatal(config.FormatDiagnostics(diags))
	}
	if len(cfg.Set) == 0 || cfg.Maps == (config.Maps{}) {
		t.Fatalf("configs/bulwark.hcl sets no map size")
	}
	d, diags := Compile(cfg)
	if diags.HasErrors() {
		t.Fatal(config.FormatDiagnostics(diags))
	}
	if want := HostSizes(); d.Sizes != want {
		t.Errorf("configs/bulwark.hcl sizes %+v, want this host's defaults %+v", d.Sizes, want)
	}
}
