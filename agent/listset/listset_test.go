package listset

import (
	"math/rand"
	"net/netip"
	"slices"
	"testing"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// randomPrefixes makes n masked prefixes of both families, with repeats.
func randomPrefixes(n int, seed int64) []netip.Prefix {
	rng := rand.New(rand.NewSource(seed))
	out := make([]netip.Prefix, 0, n)
	for len(out) < n {
		var p netip.Prefix
		if rng.Intn(2) == 0 {
			a := [4]byte{198, 18, byte(rng.Intn(4)), byte(rng.Intn(8))}
			p = netip.PrefixFrom(netip.AddrFrom4(a), 24+rng.Intn(9)).Masked()
		} else {
			a := [16]byte{0x20, 0x01, 0, 2, 15: byte(rng.Intn(8))}
			a[6] = byte(rng.Intn(4))
			p = netip.PrefixFrom(netip.AddrFrom16(a), 48+rng.Intn(81)).Masked()
		}
		out = append(out, p)
	}
	return out
}

// netipCompare is the order Compare must agree with, from net/netip: IPv4
// first, then by address, then by length.
func netipCompare(a, b netip.Prefix) int {
	if a.Addr().Is4() != b.Addr().Is4() {
		if a.Addr().Is4() {
			return -1
		}
		return 1
	}
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

func TestKeyRoundTripAndOrder(t *testing.T) {
	ps := randomPrefixes(2000, 1)
	ps = append(ps, pfx("0.0.0.0/0"), pfx("::/0"), pfx("255.255.255.255/32"), pfx("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"),
		pfx("::/96"), pfx("::ffff:0:0/96"))
	for _, p := range ps {
		k := KeyOf(p)
		if got := k.Prefix(); got != p {
			t.Fatalf("KeyOf(%s).Prefix() = %s", p, got)
		}
		if k.Is4() != p.Addr().Is4() || k.IsHost() != p.IsSingleIP() {
			t.Errorf("%s: Is4 %v IsHost %v", p, k.Is4(), k.IsHost())
		}
	}
	for i := 1; i < len(ps); i++ {
		a, b := ps[i-1], ps[i]
		if got, want := Compare(KeyOf(a), KeyOf(b)), netipCompare(a, b); sign(got) != sign(want) {
			t.Errorf("Compare(%s, %s) = %d, want the sign of %d", a, b, got, want)
		}
	}
	// 198.18.0.0/32 and ::c612:0/128 have the same first bytes: the family tells them apart.
	if Compare(KeyOf(pfx("198.18.0.0/32")), KeyOf(pfx("c612::/128"))) >= 0 {
		t.Error("an IPv4 key does not sort before an IPv6 key of the same bytes")
	}
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

func TestSortKeys(t *testing.T) {
	ps := randomPrefixes(3000, 2)
	var keys []Key
	distinct := map[netip.Prefix]bool{}
	for _, p := range ps {
		keys = append(keys, KeyOf(p))
		distinct[p] = true
	}
	got := SortKeys(keys)
	if len(got) != len(distinct) {
		t.Fatalf("%d keys, want the %d distinct prefixes", len(got), len(distinct))
	}
	want := make([]netip.Prefix, 0, len(distinct))
	for p := range distinct {
		want = append(want, p)
	}
	slices.SortFunc(want, netipCompare)
	for i, k := range got {
		if k.Prefix() != want[i] {
			t.Fatalf("key %d is %s, want %s", i, k.Prefix(), want[i])
		}
	}
}

// TestBuildLastIDWins: a prefix named on several ids is on the highest,
// as the config's later sources (higher ids) win; Lookup finds each.
func TestBuildLastIDWins(t *testing.T) {
	ps := randomPrefixes(3000, 3)
	rng := rand.New(rand.NewSource(4))
	want := map[netip.Prefix]uint32{}
	var es []Entry
	for _, p := range ps {
		id := uint32(2 + rng.Intn(10))
		es = append(es, Entry{KeyOf(p), id})
		want[p] = max(want[p], id)
	}
	s := Build(es)
	if len(s) != len(want) {
		t.Fatalf("%d entries, want %d", len(s), len(want))
	}
	for p, id := range want {
		if got, ok := s.Lookup(p); !ok || got != id {
			t.Errorf("%s: id %d (%v), want %d", p, got, ok, id)
		}
	}
	n := 0
	for p, id := range s.All() {
		if want[p] != id {
			t.Errorf("All yields %s on %d, want %d", p, id, want[p])
		}
		n++
	}
	if n != len(want) {
		t.Errorf("All yields %d entries, want %d", n, len(want))
	}
	for _, p := range []string{"198.19.0.0/24", "2001:3::/48", "198.18.0.0/23"} {
		if id, ok := s.Lookup(pfx(p)); ok {
			t.Errorf("%s found on %d; no entry names it", p, id)
		}
	}
}

// TestIndexFrom: looked up in ascending order, each from the last position
// found, keys are found where Index finds them, present or not.
func TestIndexFrom(t *testing.T) {
	var es []Entry
	for _, p := range randomPrefixes(4000, 5) {
		es = append(es, Entry{Key: KeyOf(p)})
	}
	s := Build(es)
	queries := randomPrefixes(3000, 6)
	slices.SortFunc(queries, netipCompare)
	at, hits := 0, 0
	for _, q := range queries {
		k := KeyOf(q)
		i, found := s.IndexFrom(at, k)
		wi, wfound := slices.BinarySearchFunc(s, q, func(e Entry, q netip.Prefix) int { return netipCompare(e.Key.Prefix(), q) })
		if i != wi || found != wfound {
			t.Fatalf("IndexFrom(%d, %s) = %d, %v; want %d, %v", at, q, i, found, wi, wfound)
		}
		if found {
			hits++
		}
		at = i
	}
	if hits == 0 || hits == len(queries) {
		t.Errorf("%d of %d queries found: the test wants both kinds", hits, len(queries))
	}
	// From the end, and past every key.
	if i, found := s.IndexFrom(len(s), KeyOf(pfx("ffff::/16"))); i != len(s) || found {
		t.Errorf("IndexFrom(len) = %d, %v", i, found)
	}
}
