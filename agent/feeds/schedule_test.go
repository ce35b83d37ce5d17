package feeds

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestNextRefresh(t *testing.T) {
	tests := []struct {
		name     string
		base     time.Duration
		jitter   float64
		min, max time.Duration
	}{
		{"default jitter", time.Hour, 0, 54 * time.Minute, 66 * time.Minute},
		{"explicit 10%", time.Hour, 0.1, 54 * time.Minute, 66 * time.Minute},
		{"25%", 4 * time.Minute, 0.25, 3 * time.Minute, 5 * time.Minute},
		{"no jitter", time.Hour, -1, time.Hour, time.Hour},
		{"NaN means none", time.Hour, math.NaN(), time.Hour, time.Hour},
		{"clamped to 50%", time.Hour, 3, 30 * time.Minute, 90 * time.Minute},
		{"zero base", 0, 0.1, 0, 0},
		{"negative base", -time.Second, 0.1, -time.Second, -time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rnd := rand.New(rand.NewPCG(1, 2))
			lo, hi := tt.max, tt.min
			for range 2000 {
				d := NextRefresh(tt.base, tt.jitter, rnd)
				if d < tt.min || d > tt.max {
					t.Fatalf("NextRefresh = %v, outside [%v, %v]", d, tt.min, tt.max)
				}
				lo, hi = min(lo, d), max(hi, d)
			}
			// The spread actually covers most of the range.
			if spread := tt.max - tt.min; spread > 0 && hi-lo < spread*9/10 {
				t.Errorf("samples span only [%v, %v] of [%v, %v]", lo, hi, tt.min, tt.max)
			}
		})
	}
	// Deterministic for a seeded generator, and a nil generator works.
	a := NextRefresh(time.Hour, 0, rand.New(rand.NewPCG(7, 7)))
	b := NextRefresh(time.Hour, 0, rand.New(rand.NewPCG(7, 7)))
	if a != b {
		t.Errorf("same seed, different results: %v, %v", a, b)
	}
	if d := NextRefresh(time.Hour, 0, nil); d < 54*time.Minute || d > 66*time.Minute {
		t.Errorf("nil rnd: %v", d)
	}
}

func TestDiff(t *testing.T) {
	tests := []struct {
		name, prev, next string
		added, removed   string
	}{
		{"both empty", "", "", "", ""},
		{"from nothing", "", "192.0.2.0/24 198.51.100.1/32", "192.0.2.0/24 198.51.100.1/32", ""},
		{"to nothing", "192.0.2.0/24 2001:db8::/32", "", "", "192.0.2.0/24 2001:db8::/32"},
		{"same", "192.0.2.0/24 2001:db8::/32", "192.0.2.0/24 2001:db8::/32", "", ""},
		{"mixed", "192.0.2.0/24 198.51.100.0/24 203.0.113.0/24 2001:db8::/48",
			"192.0.2.0/24 198.18.0.0/15 203.0.113.0/24 2001:db8::/32 2001:db8::/48",
			"198.18.0.0/15 2001:db8::/32", "198.51.100.0/24"},
		{"prefix length matters", "192.0.2.0/24", "192.0.2.0/25", "192.0.2.0/25", "192.0.2.0/24"},
		{"unsorted input with duplicates", "203.0.113.0/24 192.0.2.0/24 192.0.2.0/24", "192.0.2.0/24 198.51.100.0/24 198.51.100.0/24",
			"198.51.100.0/24", "203.0.113.0/24"},
	}
	split := func(s string) []netip.Prefix {
		var ps []netip.Prefix
		for _, f := range strings.Fields(s) {
			ps = append(ps, netip.MustParsePrefix(f))
		}
		return ps
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prev, next := split(tt.prev), split(tt.next)
			prevCopy := append([]netip.Prefix(nil), prev...)
			added, removed := Diff(prev, next)
			if got := prefixStrings(added); got != tt.added {
				t.Errorf("added %s, want %s", got, tt.added)
			}
			if got := prefixStrings(removed); got != tt.removed {
				t.Errorf("removed %s, want %s", got, tt.removed)
			}
			if prefixStrings(prev) != prefixStrings(prevCopy) {
				t.Errorf("Diff modified its input")
			}
		})
	}
}
