package model_test

import (
	"fmt"
	"math/rand"
	"net/netip"
	"testing"

	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// randomIn is a seeded random address of prefix p.
func randomIn(rng *rand.Rand, p netip.Prefix) netip.Addr {
	a := p.Addr().AsSlice()
	r := make([]byte, len(a))
	rng.Read(r)
	for i := range a {
		keep := min(max(p.Bits()-8*i, 0), 8) // the prefix's bits in this byte
		m := byte(0xff) << (8 - keep)
		if keep == 0 {
			m = 0
		}
		a[i] = a[i]&m | r[i]&^m
	}
	out, _ := netip.AddrFromSlice(a)
	return out
}

// TestListLengths puts prefixes of every length of both families (slot and
// shorter lengths alike, nested, some expiring at different times) and
// hosts on both lists, and runs sources inside them through the kernel and
// the model at times before, between and after the expiries: the longest
// live match must agree whatever length it has and however many longer
// matches expired.
func TestListLengths(t *testing.T) {
	testutil.RequireRoot(t)
	rng := rand.New(rand.NewSource(15))
	areas := []netip.Prefix{pfx("198.18.0.0/15"), pfx("2001:2::/48")}
	expiries := []uint64{0, baseNS + 10, baseNS + 20, baseNS + 30}
	var s setup
	s.name = "list lengths"
	var srcs []netip.Addr
	const perArea = 64 // sources per area
	for _, area := range areas {
		bits := area.Addr().BitLen()
		for i := 0; i < perArea; i++ {
			srcs = append(srcs, randomIn(rng, area))
		}
		for _, src := range srcs[len(srcs)-perArea:] {
			// Several nested prefixes of random lengths over this source.
			for j := 0; j < 6; j++ {
				n := rng.Intn(bits) // never a host: hosts are below
				p, _ := src.Prefix(n)
				e := maps.Entry{Prefix: p, ListID: uint32(100*bits/32 + n), ExpiresNS: expiries[rng.Intn(len(expiries))]}
				if rng.Intn(8) == 0 {
					s.allow = append(s.allow, e)
				} else {
					s.block = append(s.block, e)
				}
			}
			if rng.Intn(4) == 0 {
				s.block = append(s.block, maps.Entry{Prefix: netip.PrefixFrom(src, bits), ListID: 1, ExpiresNS: expiries[rng.Intn(len(expiries))]})
			}
		}
	}
	h := newHarness(t, s)
	dv := &divergences{t: t, limit: 5}
	hitLens := map[uint32]bool{}
	changed := 0
	for _, src := range srcs {
		var first uint32
		for k, now := range []uint64{baseNS, baseNS + 10, baseNS + 20, baseNS + 30} {
			f := udp6(src.String(), 10)
			if src.Is4() {
				f = udp4(src.String(), 10)
			}
			d := h.m.Decide(f, now)
			if diff, _ := h.step(f, now); diff != "" {
				dv.add(fmt.Sprintf("%s at +%d ns", src, now-baseNS), diff, f)
			}
			hitLens[d.ListID] = true
			if k == 0 {
				first = d.ListID
			} else if d.ListID != first {
				changed++
			}
		}
	}
	h.checkCounters()
	// The test is only worth its cases: many lengths matched, and matches
	// that moved to a shorter prefix (or none) as entries expired.
	if len(hitLens) < 30 || changed < 10 {
		t.Fatalf("weak case: %d distinct list ids matched, %d answers changed with time; want >= 30 and >= 10",
			len(hitLens), changed)
	}
	t.Logf("%d sources x 4 times: %d distinct list ids (lengths) matched, %d answers changed as entries expired",
		len(srcs), len(hitLens), changed)
}
