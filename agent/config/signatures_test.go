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
	live := mustParse(t, "interface \"eth0\" {}\nsignatures {\n  limit_pps = 500\n  factor = 4.5\n  sample_every = 8\n}\n")
	if sd := live.SignatureDetection; sd.LimitPPS != 500 || sd.LimitBurst != 500 || sd.Factor != 4.5 ||
		sd.SampleEvery != 8 || sd.MinPPS != DefaultSigMinPPS || sd.SampleBudget != DefaultSigSampleBudget {
		t.Errorf("signatures block: %+v", sd)
	}
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
		`signatures { limit_burst = 10 }`:                                                "Missing limit_pps",
		`signatures { limit_pps = 0 }`:                                                   "limit_pps must be > 0",
		`signatures { factor = 1 }`:                                                      "factor must be > 1",
		`signatures { min_pps = 0 }`:                                                     "min_pps must be > 0",
		`signatures { sample_every = 65537 }`:                                            "sample_every must be at most 65536",
		`signatures { sample_budget = 0 }`:                                               "sample_budget must be > 0",
		`signatures { min_new_sources = 1.5 }`:                                           "whole number",
	} {
		_, diags := Parse("t.hcl", []byte("interface \"eth0\" {}\n"+src))
		if !diags.HasErrors() || !strings.Contains(FormatDiagnostics(diags), want) {
			t.Errorf("%s:\n%s\nwant an error with %q", src, FormatDiagnostics(diags), want)
		}
	}
}
