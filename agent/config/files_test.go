package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestLoadDirectory(t *testing.T) {
	dir := t.TempDir()
	// Lexical order, not creation order; a dot file, a non-.hcl file and a subdirectory are not read.
	writeFile(t, dir, "20-limits.hcl", "limits {\n  default { pps = 500 }\n}\n")
	writeFile(t, dir, "10-base.hcl", "interface \"eth0\" {}\nmode = \"monitor\"\nallow { files = [\"mgmt.txt\"] }\n")
	writeFile(t, dir, "mgmt.txt", "198.18.0.1\n")
	writeFile(t, dir, ".30-hidden.hcl", "this is not HCL")
	writeFile(t, dir, "README", "not a config")
	if err := os.Mkdir(filepath.Join(dir, "sub.hcl"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A link to a file counts (a ConfigMap volume's files are links).
	target := writeFile(t, t.TempDir(), "real.hcl", "metrics { listen = \"127.0.0.1:9999\" }\n")
	if err := os.Symlink(target, filepath.Join(dir, "40-metrics.hcl")); err != nil {
		t.Fatal(err)
	}

	paths, err := Paths(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "10-base.hcl"), filepath.Join(dir, "20-limits.hcl"), filepath.Join(dir, "40-metrics.hcl")}
	if !slices.Equal(paths, want) {
		t.Errorf("Paths = %v, want %v", paths, want)
	}

	l := Loader{Options: skipIfCheck}
	cfg, diags := l.Load(dir)
	if diags.HasErrors() {
		t.Fatalf("load %s:\n%s", dir, FormatDiagnostics(diags))
	}
	if cfg.Mode != "monitor" || cfg.Limits.Default.PPS != 500 || cfg.Metrics.Listen != "127.0.0.1:9999" ||
		len(cfg.Interfaces) != 1 || len(cfg.Allow.Files) != 1 || cfg.Allow.Files[0].Path != filepath.Join(dir, "mgmt.txt") {
		t.Errorf("merged config: %+v", *cfg)
	}
	if len(l.Files()) != 3 {
		t.Errorf("Files() holds %d files, want 3", len(l.Files()))
	}
}

func TestLoadDirectoryConflicts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []string // each is in the diagnostics
	}{
		{"key twice", map[string]string{
			"a.hcl": "interface \"eth0\" {}\nmode = \"monitor\"\n",
			"b.hcl": "\n\nmode = \"enforce\"\n",
		}, []string{"b.hcl:3:1: Duplicate argument", "a.hcl:2,1-5"}},
		{"block twice", map[string]string{
			"a.hcl": "interface \"eth0\" {}\nlimits {\n  ipv6_prefix = 56\n}\n",
			"b.hcl": "limits {\n  ipv6_prefix = 48\n}\n",
		}, []string{"b.hcl:1:1: Duplicate limits block", "the first is at " + "DIR/a.hcl:2:1"}},
		{"interface twice", map[string]string{
			"a.hcl": "interface \"eth0\" {}\n",
			"b.hcl": "# eth0 again\ninterface \"eth0\" {}\n",
		}, []string{"b.hcl:2:11: Duplicate interface", "already configured at DIR/a.hcl:1:1"}},
		{"syntax error in one file", map[string]string{
			"a.hcl": "interface \"eth0\" {}\n",
			"b.hcl": "mode = \n",
		}, []string{"b.hcl:1:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, src := range tc.files {
				writeFile(t, dir, name, src)
			}
			cfg, diags := LoadWithOptions(dir, skipIfCheck)
			if cfg != nil || !diags.HasErrors() {
				t.Fatalf("want errors, got config %+v", cfg)
			}
			got := FormatDiagnostics(diags)
			for _, w := range tc.want {
				if w = strings.ReplaceAll(w, "DIR", dir); !strings.Contains(got, w) {
					t.Errorf("diagnostics lack %q:\n%s", w, got)
				}
			}
		})
	}
}

func TestLoadEmptyDirectory(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "bulwark.conf", "mode = \"monitor\"\n")
	_, diags := LoadWithOptions(dir, skipIfCheck)
	want := dir + ":1:1: Cannot read config file: " + dir + " is a directory with no *.hcl file"
	if got := FormatDiagnostics(diags); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestEnvFunction(t *testing.T) {
	t.Setenv("BULWARK_TEST_NODE_IP", "198.18.0.7")
	t.Setenv("BULWARK_TEST_EMPTY", "")
	cfg := mustParse(t, `interface "eth0" {}
metrics { listen = "${env("BULWARK_TEST_NODE_IP")}:9740" }
mode = env("BULWARK_TEST_UNSET_MODE", "monitor")
log { level = env("BULWARK_TEST_EMPTY", "debug") == "" ? "warn" : "error" }
`)
	if cfg.Metrics.Listen != "198.18.0.7:9740" || cfg.Mode != "monitor" || cfg.Log.Level != "warn" {
		t.Errorf("listen %q, mode %q, level %q", cfg.Metrics.Listen, cfg.Mode, cfg.Log.Level)
	}

	for _, tc := range []struct{ src, want string }{
		{`mode = env("BULWARK_TEST_UNSET_MODE")`,
			`test.hcl:2:8: Error in function call: Call to function "env" failed: environment variable BULWARK_TEST_UNSET_MODE is not set and no default is given (as in env("BULWARK_TEST_UNSET_MODE", "default")).`},
		{`mode = env("")`, `test.hcl:2: Invalid function argument: Invalid value for "name" parameter: the variable's name must not be empty.`},
		{`mode = env("A", "b", "c")`, `test.hcl:2: Invalid function argument: Invalid value for "default" parameter: env takes a name and at most one default, not 3 arguments.`},
		{`mode = envv("A")`, `test.hcl:2:8: Call to unknown function: There is no function named "envv". Did you mean "env"?`},
		// The value is checked as a literal would be.
		{`mode = env("BULWARK_TEST_NODE_IP")`, `test.hcl:2:8: Invalid mode: "198.18.0.7" is not a valid mode; use one of: enforce, monitor.`},
	} {
		_, diags := ParseWithOptions("test.hcl", []byte("interface \"eth0\" {}\n"+tc.src+"\n"), skipIfCheck)
		// The column is HCL's (a string argument's is inside its quotes); the line is the call's.
		pos, msg, _ := strings.Cut(tc.want, " ")
		if got := FormatDiagnostics(diags); !strings.HasPrefix(got, pos) || !strings.HasSuffix(got, " "+msg) || strings.Count(got, "\n") != 0 {
			t.Errorf("%s:\n got %s\nwant %s", tc.src, got, tc.want)
		}
	}
}
