package config

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestAllowedBlocksWarn: a CIDR in both lists, and a blocked prefix inside an allowed one, are warnings at the
// block entry; the config is still valid.
func TestAllowedBlocksWarn(t *testing.T) {
	dir := t.TempDir()
	list := writeFile(t, dir, "block.txt", "198.18.5.0/24\n198.18.9.9\n")
	cfg, diags := ParseWithOptions("test.hcl", []byte(`interface "eth0" {}
allow { cidrs = ["198.18.1.1", "198.18.4.0/22", "2001:2::/48", "198.18.9.9"] }
block {
  cidrs = ["198.18.1.1", "198.18.4.7", "198.18.8.0/24", "2001:2:0:1::/64", "2001:2::/32"]
  files = ["`+list+`"]
}`), skipIfCheck)
	if cfg == nil {
		t.Fatalf("config refused:\n%s", FormatDiagnostics(diags))
	}
	want := `test.hcl:4:12: warning: Allowed and blocked: 198.18.1.1/32 is in the allow list too; the allow list wins, so it is never blocked.
test.hcl:4:26: warning: Blocked inside allowed: 198.18.4.7/32 lies inside 198.18.4.0/22 of the allow list; the allow list wins, so it is never blocked.
test.hcl:4:57: warning: Blocked inside allowed: 2001:2:0:1::/64 lies inside 2001:2::/48 of the allow list; the allow list wins, so it is never blocked.
test.hcl:5:12: warning: Blocked inside allowed: 198.18.5.0/24 (in ` + list + `) lies inside 198.18.4.0/22 of the allow list; the allow list wins, so it is never blocked.
test.hcl:5:12: warning: Allowed and blocked: 198.18.9.9/32 (in ` + list + `) is in the allow list too; the allow list wins, so it is never blocked.`
	if got := FormatDiagnostics(diags); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestAllowedBlocksWarningsCapped(t *testing.T) {
	var cidrs []string
	for i := range maxOverlapWarnings + 5 {
		cidrs = append(cidrs, fmt.Sprintf(`"198.18.0.%d"`, i+1))
	}
	_, diags := ParseWithOptions("test.hcl", []byte(`interface "eth0" {}
allow { cidrs = ["198.18.0.0/24"] }
block { cidrs = [`+strings.Join(cidrs, ", ")+`] }`), skipIfCheck)
	if len(diags) != maxOverlapWarnings+1 || diags.HasErrors() {
		t.Fatalf("%d diagnostics, want %d warnings:\n%s", len(diags), maxOverlapWarnings+1, FormatDiagnostics(diags))
	}
	// The count is at the block's header, so it sorts first.
	if got, want := FormatDiagnostics(diags[:1]), "test.hcl:3:1: warning: Allowed and blocked: 5 more block entries overlap the allow list."; got != want {
		t.Errorf("last: got %q, want %q", got, want)
	}
}

// TestOffline: missing host files are errors (list files, databases) or warnings (feed files) on the host, and
// not looked for offline; what the file says is checked both ways.
func TestOffline(t *testing.T) {
	dir := t.TempDir()
	src := []byte(`interface "no-such-if0" {}
block { files = ["missing.txt"] }
feed "f" {
  path   = "missing-feed.txt"
  format = "plain"
}
geoip { country_database = "missing.mmdb" }
`)
	path := filepath.Join(dir, "test.hcl")
	_, diags := ParseWithOptions(path, src, Options{})
	got := strings.ReplaceAll(FormatDiagnostics(diags), dir, "$DIR")
	want := `$DIR/test.hcl:1:11: Unknown interface: There is no network interface named "no-such-if0" on this host (list them with ` + "`ip link`" + `).
$DIR/test.hcl:2:18: Missing list file: $DIR/missing.txt does not exist.
$DIR/test.hcl:4:12: warning: Cannot read feed file: open $DIR/missing-feed.txt: no such file or directory; the feed stays empty until the file can be read.
$DIR/test.hcl:7:28: Missing database: $DIR/missing.mmdb does not exist.`
	if got != want {
		t.Errorf("on the host: got\n%s\nwant\n%s", got, want)
	}
	cfg, diags := ParseWithOptions(path, src, Options{Offline: true})
	if cfg == nil || len(diags) != 0 {
		t.Errorf("offline: %s", FormatDiagnostics(diags))
	}
	// Offline, a present list file is still read, and a bad name is still refused.
	writeFile(t, dir, "missing.txt", "198.18.0.300\n")
	_, diags = ParseWithOptions(path, append([]byte(`interface "bad/name" {}`+"\n"), src[len(`interface "no-such-if0" {}`)+1:]...), Options{Offline: true})
	got = strings.ReplaceAll(FormatDiagnostics(diags), dir, "$DIR")
	want = `$DIR/test.hcl:1:11: Invalid interface name: interface name "bad/name" contains '/'.
$DIR/test.hcl:2:18: Bad list file entry: $DIR/missing.txt:1: bad CIDR "198.18.0.300": want an address or a prefix, as in "198.51.100.7", "198.51.100.0/24" or "2001:db8::/32".`
	if got != want {
		t.Errorf("offline, bad file: got\n%s\nwant\n%s", got, want)
	}
}
