package config

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestKeysNamesAndOrder(t *testing.T) {
	keys := Keys()
	seen := map[string]bool{}
	for _, k := range keys {
		if seen[k] {
			t.Errorf("key %q listed twice", k)
		}
		seen[k] = true
	}
	// A few keys spelled out: the squashed aggregate limit, new_sources' packets-only limit, a labelled block.
	for _, k := range []string{"mode", "limits.aggregate.pps", "limits.aggregate.ipv4_prefix", "limits.new_sources.burst",
		"limits.rule", "feed", "reputation.weights.repeat", "geoip.asn_weights", "maps.events_ring_kib"} {
		if !seen[k] {
			t.Errorf("Keys() lacks %q", k)
		}
	}
	for _, k := range []string{"limits.new_sources.bandwidth", "limits.aggregate.limit", "interface.range"} {
		if seen[k] {
			t.Errorf("Keys() lists %q, which is not a key", k)
		}
	}
	if keys[0] != "mode" || keys[len(keys)-1] != "geoip.asn_weights" {
		t.Errorf("Keys() is not in struct order: %v", keys)
	}
}

// TestKeysAreInReference checks every key against the commented reference config: each is documented there.
func TestKeysAreInReference(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "..", "configs", "bulwark.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	// The limits config owns, as the reference states them (agent/desired checks the datapath's).
	for _, limit := range []string{fmt.Sprintf("At most %d classes", maxClasses)} {
		if !strings.Contains(string(src), limit) {
			t.Errorf("configs/bulwark.hcl does not say %q", limit)
		}
	}
	for _, k := range Keys() {
		last := k[strings.LastIndexByte(k, '.')+1:]
		if !strings.Contains(string(src), last) {
			t.Errorf("configs/bulwark.hcl does not mention %s", k)
		}
	}
}

func TestChanged(t *testing.T) {
	a := mustParse(t, `interface "eth0" {}
limits {
  rule "dns" {
    protocol = "udp"
    pps      = 10
  }
}`)
	// The same settings, moved about: nothing changed.
	b := mustParse(t, `

limits {

  rule "dns" {
    pps      = 10
    protocol = "udp"
  }
}
interface "eth0" {}
allow { cidrs = [] }`)
	if got := Changed(a, b); len(got) != 0 {
		t.Errorf("moved blocks: Changed = %v, want none", got)
	}
	c := mustParse(t, `interface "eth0" { attach = "native" }
mode = "monitor"
limits {
  ipv6_prefix = 56
  rule "dns" {
    protocol = "udp"
    pps      = 11
  }
}`)
	want := []string{"mode", "interface", "limits.ipv6_prefix", "limits.rule"}
	if got := Changed(a, c); !slices.Equal(got, want) {
		t.Errorf("Changed = %v, want %v", got, want)
	}
}
