package importfmt

import "testing"

// FuzzParse feeds any input to every format: no panic, and every prefix
// returned is masked, unmapped and unique, within the bound.
func FuzzParse(f *testing.F) {
	for _, s := range []string{ipsetSave, nftSetJSON, nftRulesetJSON, cscliJSON, "198.18.0.1\n2001:2::/48 ; x\n",
		"create s hash:ip netmask 24\nadd s 198.18.0.1-198.18.0.9\n", `{"nftables": [{"set": {"type": "ipv6_addr", "elem": [{"range": ["::", "ffff::"]}]}}]}`} {
		f.Add([]byte(s))
	}
	const max = 1000
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, format := range Formats {
			r, err := Parse(data, format, Options{MaxEntries: max})
			if err != nil {
				continue
			}
			if len(r.Prefixes) > max {
				t.Fatalf("%s: %d prefixes over the bound %d", format, len(r.Prefixes), max)
			}
			seen := map[string]bool{}
			for _, p := range r.Prefixes {
				if !p.IsValid() || p.Masked() != p || p.Addr().Is4In6() || p.Addr().Zone() != "" {
					t.Fatalf("%s: prefix %s not normalised", format, p)
				}
				if seen[p.String()] {
					t.Fatalf("%s: %s twice", format, p)
				}
				seen[p.String()] = true
			}
		}
	})
}
