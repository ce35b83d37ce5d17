package maps_test

import (
	"net/netip"
	"testing"

	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// filterSource is the i-th test source of group g (198.18.g.0/24 up to
// 256 sources, then the next groups).
func filterSource(g, i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18 + byte(g>>8), byte(g + i>>8), byte(i)}), 32)
}

// filterSources is n sources from group g on.
func filterSources(g, n int) []maps.VerdictEntry {
	vs := make([]maps.VerdictEntry, n)
	for i := range vs {
		vs[i] = maps.VerdictEntry{Source: filterSource(g, i), Action: maps.VerdictBlock, ExpiresNS: 1 << 62,
			Origin: maps.OriginScorer}
	}
	return vs
}

// mayHold is s.MayHoldVerdicts of vs, failing t on an error.
func mayHold(t *testing.T, s *maps.Set, vs []maps.VerdictEntry) []bool {
	t.Helper()
	may, err := s.MayHoldVerdicts(vs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(may) != len(vs) {
		t.Fatalf("%d answers for %d sources", len(may), len(vs))
	}
	return may
}

// checkHeld fails t unless MayHoldVerdicts answers true for every source
// the map holds (the filter's promise: false is sure).
func checkHeld(t *testing.T, s *maps.Set, when string) {
	t.Helper()
	held, err := s.Verdicts()
	if err != nil {
		t.Fatal(err)
	}
	for i, ok := range mayHold(t, s, held) {
		if !ok {
			t.Errorf("%s: the map holds a verdict on %s, MayHoldVerdicts says it cannot", when, held[i].Source)
		}
	}
}

// countTrue counts the true answers.
func countTrue(may []bool) (n int) {
	for _, ok := range may {
		if ok {
			n++
		}
	}
	return n
}

// TestMayHoldVerdicts checks the verdict filter over pinned maps: the
// sources an earlier run (another Set over the same pins) wrote, those
// written after the first walk one by one or in batches, and those
// written again after a filter over half full is built anew, are all "may
// hold"; sources never written are mostly not (a Bloom filter of 16,384
// bits with 6 probes over at most 1,024 sources answers "may" for one in
// (1-e^(-6*1024/16384))^6 = 1/3,600 at most: the test allows a half); after
// deletes and a new build, the deleted sources are mostly not either.
func TestMayHoldVerdicts(t *testing.T) {
	load := testutil.PinnedLoader(t)
	earlier := load().Maps
	inherited := filterSources(0, 300)
	if err := earlier.PutVerdicts(inherited); err != nil {
		t.Fatal(err)
	}
	s := load().Maps // a restart: a new Set over the pinned maps
	never := filterSources(10, 1000)
	if n := countTrue(mayHold(t, s, never)); n > len(never)/2 {
		t.Errorf("%d of %d sources never written may be held, want at most half", n, len(never))
	}
	checkHeld(t, s, "the earlier run's verdicts")
	for i, ok := range mayHold(t, s, inherited) {
		if !ok {
			t.Errorf("the earlier run's verdict on %s: MayHoldVerdicts says the map cannot hold it", inherited[i].Source)
		}
	}
	one := filterSource(20, 1)
	if err := s.PutVerdict(one.Addr(), maps.VerdictThrottle, 1<<62, maps.OriginScorer, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.PutVerdicts(filterSources(21, 200)); err != nil {
		t.Fatal(err)
	}
	checkHeld(t, s, "after writes that followed the walk")

	// Turn the map over (write 500, delete them) until the filter is over
	// half full: 16,384*ln(2)/6 = 1,893 sources set half its bits in
	// expectation, and it is built again after 4,096 adds at least.
	for round := range 12 {
		vs := filterSources(100+2*round, 500)
		if err := s.PutVerdicts(vs); err != nil {
			t.Fatal(err)
		}
		checkHeld(t, s, "while turning the map over")
		for _, v := range vs {
			if err := s.DeleteVerdict(v.Source.Addr()); err != nil {
				t.Fatal(err)
			}
		}
	}
	gone := filterSources(100, 6000)
	if n := countTrue(mayHold(t, s, gone)); n > len(gone)/2 {
		t.Errorf("after a new build, %d of %d deleted sources may be held, want at most half", n, len(gone))
	}
	checkHeld(t, s, "after a new build")
}

// TestMayHoldVerdictsOverCap checks a map with more entries than its
// capped filter can tell apart: a filter of 1,024 bits over 1,000 sources
// has 1-e^(-6*1000/1024) = 99.7 % of its bits set, over the 75 % at which
// it answers "may hold" for every source, so sources never written are
// all "may hold" too, and every source the map holds still is.
func TestMayHoldVerdictsOverCap(t *testing.T) {
	maps.CapVerdictFilter(t, 1024)
	load := testutil.PinnedLoader(t)
	if err := load().Maps.PutVerdicts(filterSources(0, 1000)); err != nil {
		t.Fatal(err)
	}
	s := load().Maps
	checkHeld(t, s, "over the cap")
	never := filterSources(10, 1000)
	if n := countTrue(mayHold(t, s, never)); n != len(never) {
		t.Errorf("over the cap, %d of %d sources never written may be held, want all", n, len(never))
	}
}
