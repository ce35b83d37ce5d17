package agent_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/bulwark-filter/bulwark/test/agenttest"
)

// TestConfigCheck runs `bulwark config check` on broken configs (exit 1,
// one file:line:col line per error) and on the reference config (exit 0).
func TestConfigCheck(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	listFile := filepath.Join(dir, "block.txt")
	if err := os.WriteFile(listFile, []byte("198.18.66.0/24\n# comment\n198.18.67.1 ; trailing\nnot-an-address\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	head := "mode = \"enforce\"\ninterface \"eth0\" {\n  attach = \"auto\"\n}\n"
	for _, c := range []struct {
		name string
		body string
		want []string
	}{
		{"unknown key", head + "bogus = 1\n", []string{":5:1: "}},
		{"bad CIDR", head + "block {\n  cidrs = [\"198.18.66.0/24\", \"300.1.1.1\"]\n}\n", []string{":6:30: "}},
		{"port out of range", head + "limits {\n  rule \"x\" {\n    protocol = \"udp\"\n    ports = [\"70000\"]\n    pps = 1\n  }\n}\n", []string{":8:"}},
		{"rate zero", head + "limits {\n  default {\n    pps = 0\n  }\n}\n", []string{":7:"}},
		{"burst zero", head + "limits {\n  default {\n    pps = 10\n    burst = 0\n  }\n}\n", []string{":8:"}},
		{"wrong type", head + "mode = 3\n", []string{":"}},
		{"two errors", head + "bogus = 1\nblock {\n  cidrs = [\"198.18.0.1/24\"]\n}\n", []string{":5:1: ", ":7:"}},
		// The diagnostic points at the files entry and names the bad line.
		{"list file bad line", head + "block {\n  files = [\"" + listFile + "\"]\n}\n", []string{":6:"}},
		{"list file missing", head + "block {\n  files = [\"" + filepath.Join(dir, "nope.txt") + "\"]\n}\n", []string{":6:"}},
		// The fleet block: a bad server and a missing credentials file (config), and a max_active the verdict map
		// cannot hold (the compile step).
		{"fleet values", head + "fleet {\n  servers    = [\"http://198.19.0.1:4222\"]\n  node       = \"edge-1\"\n  creds_file = \"" +
			filepath.Join(dir, "nope.creds") + "\"\n}\n", []string{":6:17: ", ":8:16: "}},
		{"fleet max_active", head + "maps {\n  verdicts = 100\n}\nfleet {\n  servers = [\"nats://198.19.0.1\"]\n  node    = \"edge-1\"\n}\n",
			[]string{":8:1: "}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".hcl")
			if err := os.WriteFile(path, []byte(c.body), 0o600); err != nil {
				t.Fatal(err)
			}
			r := agenttest.RunBin(t, "config", "check", "--skip-interfaces", path)
			if r.Code != 1 {
				t.Fatalf("config check: %s, want exit 1", r)
			}
			at := path
			lines := strings.Split(strings.TrimSpace(r.Stderr), "\n")
			re := regexp.MustCompile("^" + regexp.QuoteMeta(at) + `:\d+:\d+: \S`)
			for _, l := range lines {
				if !strings.HasPrefix(l, at+":") {
					t.Errorf("diagnostic line %q does not start with the file", l)
				}
			}
			for _, w := range c.want {
				found := false
				for _, l := range lines {
					if re.MatchString(l) && strings.Contains(l, at+w) {
						found = true
					}
				}
				if !found {
					t.Errorf("config check stderr %q: no %s%s... diagnostic", r.Stderr, at, w)
				}
			}
			if c.name == "list file bad line" && !strings.Contains(r.Stderr, listFile+":4:") {
				t.Errorf("config check stderr %q does not name %s:4 (the bad line)", r.Stderr, listFile)
			}
			if len(lines) < len(c.want) {
				t.Errorf("config check: %d diagnostics, want %d", len(lines), len(c.want))
			}
		})
	}
	t.Run("reference config", func(t *testing.T) {
		ref, err := filepath.Abs("../../configs/bulwark.hcl")
		if err != nil {
			t.Fatal(err)
		}
		r := agenttest.RunBin(t, "config", "check", "--skip-interfaces", ref)
		if r.Code != 0 || strings.TrimSpace(r.Stdout) != ref+": ok" {
			t.Fatalf("config check %s: %s, want exit 0 and %q", ref, r, ref+": ok")
		}
	})
}

// TestConfigCheckWarnings: a valid config's warnings are printed too (stderr, file:line:col), and the check
// passes.
func TestConfigCheckWarnings(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "warn.hcl")
	agenttest.WriteFile(t, path, "interface \"lo\" {}\nallow { cidrs = [\"198.18.1.0/24\"] }\nblock {\n  cidrs = [\"198.18.1.0/24\"]\n}\n")
	r := agenttest.RunBin(t, "config", "check", path)
	want := path + ":4:12: warning: Allowed and blocked: 198.18.1.0/24 is in the allow list too; the allow list wins, so it is never blocked."
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != path+": ok" || strings.TrimSpace(r.Stderr) != want {
		t.Fatalf("config check: %s, want exit 0, %q and the warning %q", r, path+": ok", want)
	}
}

// TestConfigCheckOffline: by default the check looks at this host (the interface, the list file); --offline
// validates only what the file says, as CI on another machine would.
func TestConfigCheckOffline(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "host.hcl")
	agenttest.WriteFile(t, path, "interface \"bwk-absent0\" {}\nblock { files = [\"absent.txt\"] }\n")
	r := agenttest.RunBin(t, "config", "check", path)
	if r.Code != 1 || !strings.Contains(r.Stderr, path+":1:11: Unknown interface") ||
		!strings.Contains(r.Stderr, path+":2:18: Missing list file: "+filepath.Join(dir, "absent.txt")) {
		t.Fatalf("config check on this host: %s, want exit 1 naming the interface and the list file", r)
	}
	r = agenttest.RunBin(t, "config", "check", "--offline", path)
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != path+": ok" || r.Stderr != "" {
		t.Fatalf("config check --offline: %s, want exit 0 and ok", r)
	}
	// Offline still refuses what the file itself gets wrong.
	agenttest.WriteFile(t, path, "interface \"bwk-absent0\" {}\nblock { cidrs = [\"198.18.0.1/24\"] }\n")
	if r = agenttest.RunBin(t, "config", "check", "--offline", path); r.Code != 1 || !strings.Contains(r.Stderr, path+":2:18: Invalid CIDR") {
		t.Fatalf("config check --offline of a bad CIDR: %s, want exit 1 and %s:2:18: Invalid CIDR", r, path)
	}
}
