package desired

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/listset"
	"github.com/bulwark-filter/bulwark/maps"
)

// TestCompile: list ids as the agent and replay give them: inline CIDRs under
// the config ids, list files from 4 (allow files first, then
// block files), block feeds from 512 in config order (score
// feeds get none), each named; the policy's mode, prefix and rules.
func TestCompile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	friends, bad, worse := write("friends.txt", "198.18.1.0/24\n"), write("bad.txt", "198.18.2.0/24\n"), write("worse.txt", "2001:2::/48\n")
	path := write("bulwark.hcl", fmt.Sprintf(`
mode = "monitor"
interface "eth0" {}
allow {
  cidrs = ["198.18.0.1/32"]
  files = [%q]
}
block {
  cidrs = ["198.18.3.0/24"]
  files = [%q, %q]
}
limits {
  ipv6_prefix = 56
  rule "dns" {
    protocol = "udp"
    ports    = ["53"]
    pps      = 5
    burst    = 5
  }
}
feed "a" {
  path   = %q
  format = "plain"
  action = "block"
}
feed "s" {
  path   = %q
  format = "plain"
  action = "score"
  weight = 10
}
feed "b" {
  path   = %q
  format = "plain"
  action = "block"
}
`, friends, bad, worse, bad, bad, bad))
	cfg, diags := config.LoadWithOptions(path, config.Options{SkipInterfaceCheck: true})
	if diags.HasErrors() {
		t.Fatal(config.FormatDiagnostics(diags))
	}
	d, diags := Compile(cfg)
	if diags.HasErrors() {
		t.Fatal(config.FormatDiagnostics(diags))
	}
	pfx := netip.MustParsePrefix
	for _, tt := range []struct {
		list listset.Set
		p    string
		id   uint32
		name string
	}{
		{d.Allow, "198.18.0.1/32", ListConfigAllow, "allow"},
		{d.Allow, "198.18.1.0/24", maps.FirstFileList, "allow:friends.txt"},
		{d.Block, "198.18.3.0/24", ListConfigBlock, "block"},
		{d.Block, "198.18.2.0/24", maps.FirstFileList + 1, "block:bad.txt"},
		{d.Block, "2001:2::/48", maps.FirstFileList + 2, "block:worse.txt"},
	} {
		if id, ok := tt.list.Lookup(pfx(tt.p)); !ok || id != tt.id || d.ListNames[id] != tt.name {
			t.Errorf("%s: list %d (%q); want %d (%q)", tt.p, id, d.ListNames[id], tt.id, tt.name)
		}
	}
	if len(d.Allow) != 2 || len(d.Block) != 3 {
		t.Errorf("allow %v, block %v: entries that the config does not name", d.Allow, d.Block)
	}
	if len(d.FeedIDs) != 2 || d.FeedIDs["a"] != 512 || d.FeedIDs["b"] != 513 ||
		d.ListNames[512] != "feed:a" || d.ListNames[513] != "feed:b" {
		t.Errorf("feed ids %v, names %v; want a %d, b %d", d.FeedIDs, d.ListNames, 512, 513)
	}
	if d.Policy.Mode != maps.ModeMonitor || d.Policy.SourcePrefix() != 56 || len(d.Policy.Rules) != 1 || d.Policy.RuleName(1) != "dns" {
		t.Errorf("policy %+v", d.Policy)
	}
}
