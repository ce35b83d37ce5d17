package maps_test

import (
	"math"
	"net/netip"
	"slices"
	"testing"

	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func sorted(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	slices.Sort(out)
	return out
}

// TestBatchReads reads lists, sources and verdicts of the real datapath
// in batches: counts by family leave expired entries out, and an expired
// entry written again before the sweep deletes it stays.
func TestBatchReads(t *testing.T) {
	sizes := testutil.SmallSizes()
	sizes.BlockHosts = 1 << 15
	d := testutil.Load(t, testutil.Setup{Sizes: sizes})
	const now, later = 1000, 1 << 62
	l := d.Maps.Allow
	if err := l.Add([]maps.Entry{
		{Prefix: netip.MustParsePrefix("198.18.0.1/32")},
		{Prefix: netip.MustParsePrefix("198.18.0.2/32"), ExpiresNS: now},
		{Prefix: netip.MustParsePrefix("198.18.1.0/24"), ExpiresNS: now - 1},
		{Prefix: netip.MustParsePrefix("198.18.2.0/24"), ExpiresNS: later},
		{Prefix: netip.MustParsePrefix("198.19.0.0/16"), ExpiresNS: 1},
		{Prefix: netip.MustParsePrefix("2001:2::1/128"), ExpiresNS: 1},
		{Prefix: netip.MustParsePrefix("2001:2:1::/48")},
	}); err != nil {
		t.Fatal(err)
	}
	if c := l.Count(now); c != (maps.ListCount{IPv4: 2, IPv6: 1}) {
		t.Fatalf("Count = %+v, want 2 IPv4, 1 IPv6", c)
	}
	gone := l.Expired(now)
	if got, want := sorted(gone), sorted(prefixes("198.18.0.2/32", "198.18.1.0/24", "198.19.0.0/16", "2001:2::1/128")); !slices.Equal(got, want) {
		t.Fatalf("Expired = %v, want %v", got, want)
	}
	// Written again with a new TTL between the read and the delete: stays.
	if err := l.Add([]maps.Entry{{Prefix: netip.MustParsePrefix("198.18.1.0/24"), ExpiresNS: later}}); err != nil {
		t.Fatal(err)
	}
	// 198.19.5.0/24 is not in the list: its lookup finds 198.19.0.0/16,
	// which is not it and is left alone.
	if err := l.DeleteExpired(prefixes("198.18.0.2/32", "198.18.1.0/24", "2001:2::1/128", "198.19.5.0/24"), now); err != nil {
		t.Fatal(err)
	}
	es, err := l.Entries()
	if err != nil {
		t.Fatal(err)
	}
	var left []netip.Prefix
	for _, e := range es {
		left = append(left, e.Prefix)
	}
	if got, want := sorted(left), sorted(prefixes("198.18.0.1/32", "198.18.1.0/24", "198.18.2.0/24", "198.19.0.0/16", "2001:2:1::/48")); !slices.Equal(got, want) {
		t.Fatalf("after DeleteExpired: %v, want %v", got, want)
	}

	// More entries than one batch holds.
	const many = 20000
	block := make([]maps.Entry, many)
	for i := range block {
		block[i].Prefix = netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 32)
	}
	if err := d.Maps.Block.Add(block); err != nil {
		t.Fatal(err)
	}
	lc := d.Maps.ListCounts(now)
	if want := map[string]maps.ListCount{"allow": {IPv4: 3, IPv6: 1}, "block": {IPv4: many}}; !(lc["allow"] == want["allow"] && lc["block"] == want["block"] && len(lc) == 2) {
		t.Fatalf("ListCounts = %v, want %v", lc, want)
	}

	src := make([]maps.Source, 300)
	for i := range src {
		src[i].Source = netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 7, byte(i)}), 32)
	}
	// 256 distinct addresses: the last 44 write over the first.
	if err := d.Maps.WriteSources(src); err != nil {
		t.Fatal(err)
	}
	if n, err := d.Maps.CountSources(); err != nil || n != 256 {
		t.Fatalf("CountSources = %d, %v; want 256", n, err)
	}

	for _, v := range []struct {
		addr    string
		action  maps.VerdictAction
		expires uint64
	}{{"198.18.8.1", maps.VerdictBlock, later}, {"198.18.8.2", maps.VerdictBlock, now}, {"198.18.8.3", maps.VerdictThrottle, later}} {
		if err := d.Maps.PutVerdict(netip.MustParseAddr(v.addr), v.action, v.expires, maps.OriginScorer, 0); err != nil {
			t.Fatal(err)
		}
	}
	vc, err := d.Maps.VerdictCounts(now)
	if err != nil {
		t.Fatal(err)
	}
	if vc[maps.VerdictBlock] != 1 || vc[maps.VerdictThrottle] != 1 || len(vc) != 2 {
		t.Fatalf("VerdictCounts = %v, want one block and one throttle", vc)
	}
}

// TestCountSourcesEstimate fills a sources map far past maps.SourceSample:
// the count, estimated from a sample of the hash buckets, is within 3 % of
// what was written (its standard error is about 0.4 %).
func TestCountSourcesEstimate(t *testing.T) {
	sizes := testutil.SmallSizes()
	sizes.Sources = 1 << 19
	d := testutil.Load(t, testutil.Setup{Sizes: sizes, Policy: maps.Policy{IPv6Prefix: 128}})
	const n = 400_000
	src := make([]maps.Source, n)
	base := netip.MustParseAddr("2001:2::").As16()
	for i := range src {
		a := base
		a[13], a[14], a[15] = byte(i>>16), byte(i>>8), byte(i)
		src[i].Source = netip.PrefixFrom(netip.AddrFrom16(a), 128)
	}
	if err := d.Maps.WriteSources(src); err != nil {
		t.Fatal(err)
	}
	got, err := d.Maps.CountSources()
	if err != nil {
		t.Fatal(err)
	}
	if got < n*97/100 || got > n*103/100 {
		t.Fatalf("CountSources = %d, want %d within 3 %%", got, n)
	}
}

// TestDeleteMany deletes more host entries than one batch holds, with
// prefixes and absent entries among them, and an update of more keys than
// existing looks up one by one: the list keeps exactly the others on their
// new id, and its counts follow.
func TestDeleteMany(t *testing.T) {
	sizes := testutil.SmallSizes()
	sizes.BlockHosts = 1 << 18
	d := testutil.Load(t, testutil.Setup{Sizes: sizes})
	l := d.Maps.Block
	const n = 70000 // over batchSize (65536)
	var es []maps.Entry
	var gone []netip.Prefix
	for i := range n {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 32)
		if i >= 1<<16 {
			p = netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}), 32)
		}
		es = append(es, maps.Entry{Prefix: p, ListID: 3})
		if i%2 == 0 {
			gone = append(gone, p)
		}
	}
	es = append(es, maps.Entry{Prefix: netip.MustParsePrefix("2001:2::1/128"), ListID: 3},
		maps.Entry{Prefix: netip.MustParsePrefix("2001:2:1::/48"), ListID: 3},
		maps.Entry{Prefix: netip.MustParsePrefix("198.18.128.0/24"), ListID: 3})
	if err := l.Add(es); err != nil {
		t.Fatal(err)
	}
	// Written again with another id: 70003 keys, looked up by a walk.
	for i := range es {
		es[i].ListID = 4
	}
	if err := l.Add(es); err != nil {
		t.Fatal(err)
	}
	if c := l.Count(0); c != (maps.ListCount{IPv4: n + 1, IPv6: 2}) {
		t.Fatalf("Count = %+v, want %d IPv4, 2 IPv6", c, n+1)
	}
	// Absent ones among them: another host, an absent prefix.
	gone = append(gone, prefixes("2001:2::1/128", "2001:2::2/128", "198.18.128.0/24", "198.20.0.1/32", "198.20.0.0/24")...)
	if err := l.DeleteMany(gone); err != nil {
		t.Fatal(err)
	}
	left, err := l.Entries()
	if err != nil {
		t.Fatal(err)
	}
	want := map[netip.Prefix]bool{netip.MustParsePrefix("2001:2:1::/48"): true}
	for i := 1; i < n; i += 2 {
		want[es[i].Prefix] = true
	}
	if len(left) != len(want) {
		t.Errorf("%d entries left, want %d", len(left), len(want))
	}
	for _, e := range left {
		if !want[e.Prefix] || e.ListID != 4 {
			t.Errorf("entry %+v left; want only the odd hosts and 2001:2:1::/48 on list 4", e)
		}
	}
	if c := l.Count(0); c != (maps.ListCount{IPv4: n / 2, IPv6: 1}) {
		t.Errorf("Count = %+v, want %d IPv4, 1 IPv6", c, n/2)
	}
}

// TestIterateSources reads more sources than three batches hold, the next
// batch read while the last is handed on: every source comes exactly once
// with its own counters (decoded as written), and a reader that stops after
// two batches gets no more and can read again.
func TestIterateSources(t *testing.T) {
	sizes := testutil.SmallSizes()
	sizes.Sources = 1 << 15
	d := testutil.Load(t, testutil.Setup{Sizes: sizes})
	const n = 3*maps.SourceBatch + 5
	src := make([]maps.Source, n)
	for i := range src {
		src[i] = maps.Source{Source: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 32),
			FirstSeenNS: uint64(i) + 7, Packets: uint64(i), Bytes: 100 * uint64(i), SYNs: uint64(i) / 2, UDP: 3 * uint64(i),
			PortBits: [4]uint64{uint64(i), 0, 0, 1 << 63}}
	}
	if err := d.Maps.WriteSources(src); err != nil {
		t.Fatal(err)
	}
	seen := make([]int, n)
	batches := 0
	if err := d.Maps.IterateSources(func(b []maps.Source) bool {
		batches++
		for _, s := range b {
			a := s.Source.Addr().As4()
			i := int(a[2])<<8 | int(a[3])
			w := src[i]
			if s.Source != w.Source || s.FirstSeenNS != w.FirstSeenNS || s.Packets != w.Packets || s.Bytes != w.Bytes ||
				s.SYNs != w.SYNs || s.UDP != w.UDP || s.PortBits != w.PortBits {
				t.Fatalf("read %+v, wrote %+v", s, w)
			}
			// Bits set: those of i, and the top bit of the last word.
			if want := popcount(uint64(i)) + 1; s.PortBitsSet != want {
				t.Fatalf("%s: %d port bits set, want %d", s.Source, s.PortBitsSet, want)
			}
			seen[i]++
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	for i, c := range seen {
		if c != 1 {
			t.Fatalf("source %d read %d times, want once", i, c)
		}
	}
	if batches < 4 {
		t.Errorf("%d sources in %d batches, want at least 4 of at most %d", n, batches, maps.SourceBatch)
	}
	for range 2 {
		calls := 0
		if err := d.Maps.IterateSources(func([]maps.Source) bool { calls++; return calls < 2 }); err != nil || calls != 2 {
			t.Fatalf("a reader that stops at its second batch: %d calls, %v; want 2, nil", calls, err)
		}
	}
}

func popcount(w uint64) int {
	n := 0
	for ; w != 0; w &= w - 1 {
		n++
	}
	return n
}

// TestDistinctPorts: linear counting over the 256-bit port sketch is
// 256*ln(256/zeros): 0 with no bit set, 256*ln 2 with half, 256*ln 256 when
// saturated (one zero assumed); counts outside 0-256 are computed, not
// looked up.
func TestDistinctPorts(t *testing.T) {
	for set, want := range map[int]float64{0: 0, 1: 256 * math.Log(256.0/255), 128: 256 * math.Ln2, 256: 256 * math.Log(256),
		300: 256 * math.Log(256), -1: 256 * math.Log(256.0/257)} {
		if got := maps.DistinctPorts(set); math.Abs(got-want) > 1e-9 {
			t.Errorf("DistinctPorts(%d) = %v, want %v", set, got, want)
		}
	}
}
