package config

import (
	"strings"
	"testing"
)

func TestSignatureBlocks(t *testing.T) {
	cfg := mustParse(t, `
interface "eth0" {}
signature "syn80" {
  match = "protocol=tcp dst_port=80 tcp_flags=syn"
}
signature "dns" {
  match  = "protocol=udp dst_port=53"
  action = "limit"
  pps    = 100
}
signatures {
  detect = "shadow"
  ttl    = "2m"
}
`)
	if len(cfg.Signatures) != 2 || cfg.Signatures[0].Action != "drop" || cfg.Signatures[1].PPS != 100 ||
		cfg.SignatureDetection.Detect != "shadow" || cfg.SignatureDetection.TTL.Minutes() != 2 {
		t.Errorf("got %+v, %+v", cfg.Signatures, cfg.SignatureDetection)
	}
	block := func(attrs string) string { return "signature \"a\" {\n  match = \"ttl=1\"\n  " + attrs + "\n}" }
	for src, want := range map[string]string{
		`signature "a" { match = "ttl=1" }` + "\n" + `signature "a" { match = "ttl=2" }`: "Duplicate signature name",
		`signature "a" { action = "drop" }`:                                              `The argument "match" is required`,
		block(`action = "limit"`):                                                        "Missing pps",
		block(`pps = 5`):                                                                 "Unexpected pps",
		block(`action = "block"`):                                                        `"block"`,
		`signatures { detect = "on" }`:                                                   `"on"`,
		`signatures { ttl = "1s" }`:                                                      "ttl",
	} {
		_, diags := Parse("t.hcl", []byte("interface \"eth0\" {}\n"+src))
		if !diags.HasErrors() || !strings.Contains(FormatDiagnostics(diags), want) {
			t.Errorf("%s:\n%s\nwant an error with %q", src, FormatDiagnostics(diags), want)
		}
	}
}
