package desired

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/bulwark-filter/bulwark/agent/config"
)

// FuzzCompile checks that no valid config makes Compile panic, that a state is returned exactly when there are
// no errors, and that every diagnostic has a position: the config's checks and the limits leave nothing for the
// policy's compiler to refuse without one.
func FuzzCompile(f *testing.F) {
	ref, err := os.ReadFile(filepath.Join("..", "..", "configs", "bulwark.hcl"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ref)
	f.Add([]byte("interface \"eth0\" {}\nmaps { verdicts = 10\n classes = 1 }\nreputation { mode = \"shadow\" }\n" +
		"limits {\n class \"a\" {\n cidrs = [\"198.18.0.0/24\", \"198.18.1.0/24\"]\n multiplier = 2\n }\n}\n"))
	f.Add([]byte("interface \"eth0\" {}\nmaps { allow_hosts = 1 }\nallow { cidrs = [\"198.18.0.1\", \"198.18.0.2\"] }\n" +
		"limits {\n rule \"a\" {\n protocol = \"tcp\"\n tcp_flags = \"syn\"\n pps = 1\n }\n rule \"b\" {\n protocol = \"udp\"\n ports = [\"1-5\"]\n pps = 1\n }\n}\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		cfg, diags := config.ParseWithOptions("fuzz.hcl", src, config.Options{Offline: true})
		if diags.HasErrors() {
			return
		}
		d, diags := Compile(cfg)
		if (d == nil) != diags.HasErrors() {
			t.Fatalf("state %v returned with diagnostics:\n%s", d != nil, config.FormatDiagnostics(diags))
		}
		for _, dg := range diags {
			if dg.Subject == nil {
				t.Fatalf("diagnostic without a position: %s: %s", dg.Summary, dg.Detail)
			}
		}
	})
}
