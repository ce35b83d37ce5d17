package config

import (
	"io"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse checks that no input makes Parse panic, that a config is returned exactly when there are no errors,
// and that every diagnostic has a position (so every printed line starts with file:line:col).
func FuzzParse(f *testing.F) {
	ref, err := os.ReadFile(filepath.Join("..", "..", "configs", "bulwark.hcl"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ref)
	f.Add([]byte(issue3Example))
	f.Add([]byte(`interface "eth0" {}` + "\n" + issue4Example))
	f.Fuzz(func(t *testing.T, src []byte) {
		l := Loader{Options: Options{SkipInterfaceCheck: true}}
		cfg, diags := l.Parse("fuzz.hcl", src)
		if (cfg == nil) != diags.HasErrors() {
			t.Fatalf("config %v returned with diagnostics:\n%s", cfg != nil, FormatDiagnostics(diags))
		}
		for _, d := range diags {
			if d.Subject == nil {
				t.Fatalf("diagnostic without a position: %s: %s", d.Summary, d.Detail)
			}
		}
		if err := WriteDiagnostics(io.Discard, l.Files(), diags); err != nil {
			t.Fatal(err)
		}
	})
}
