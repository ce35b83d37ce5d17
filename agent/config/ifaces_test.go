package config

import (
	"strings"
	"testing"
)

// TestInterfaceAutoAndPatterns: "auto" and patterns are accepted without
// the name checks of one interface; a bad pattern is an error at its label;
// on this host, a pattern that matches nothing is a warning, not an error.
func TestInterfaceAutoAndPatterns(t *testing.T) {
	cfg := mustParse(t, "interface \"auto\" {}\ninterface \"en*\" { attach = \"generic\" }\n")
	if len(cfg.Interfaces) != 2 || cfg.Interfaces[0].Name != "auto" || cfg.Interfaces[1].Name != "en*" || cfg.Interfaces[1].Attach != "generic" {
		t.Fatalf("interfaces %+v, want auto and en* (generic)", cfg.Interfaces)
	}
	_, diags := ParseWithOptions("test.hcl", []byte("interface \"eth[0-\" {}\n"), skipIfCheck)
	if got := FormatDiagnostics(diags); !diags.HasErrors() || !strings.Contains(got, "test.hcl:1:11: Invalid interface pattern") {
		t.Errorf("a bad pattern: %q, want Invalid interface pattern at 1:11", got)
	}
	_, diags = ParseWithOptions("test.hcl", []byte("interface \"bwk-none-*\" {}\n"), Options{})
	if got := FormatDiagnostics(diags); diags.HasErrors() || !strings.Contains(got, "warning: No interface matches") {
		t.Errorf("a pattern that matches nothing on this host: %q, want a warning only", got)
	}
	if names, err := ResolveInterface("l[o]"); err == nil {
		t.Errorf("pattern l[o] resolved to %v, want none: the loopback is left out", names)
	}
	if names, err := ResolveInterface("lo"); err != nil || len(names) != 1 || names[0] != "lo" {
		t.Errorf("lo resolved to %v, %v, want lo", names, err)
	}
}
