package maps_test

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// TestTakeChanges checks a list's change record: every prefix written or
// deleted through Add, Delete, DeleteMany and DeleteExpired is in it,
// normalised, once; taking it empties it; past 65,536 prefixes it is
// incomplete and holds none.
func TestTakeChanges(t *testing.T) {
	sizes := testutil.SmallSizes()
	sizes.BlockHosts = 1 << 17
	d := testutil.Load(t, testutil.Setup{Sizes: sizes})
	l := d.Maps.Block
	if ps, complete := l.TakeChanges(); len(ps) != 0 || !complete {
		t.Fatalf("a fresh list's changes: %v (complete %v), want none, complete", ps, complete)
	}
	if err := l.Add([]maps.Entry{
		{Prefix: netip.MustParsePrefix("198.18.0.1/32")},
		{Prefix: netip.MustParsePrefix("198.18.1.7/24")}, // normalised to 198.18.1.0/24
		{Prefix: netip.MustParsePrefix("::ffff:198.18.2.2/128")},
		{Prefix: netip.MustParsePrefix("198.18.0.1/32")},
		{Prefix: netip.MustParsePrefix("2001:2::/48"), ExpiresNS: 1},
	}); err != nil {
		t.Fatal(err)
	}
	if err := l.Delete(prefixes("198.18.9.9/32")); err != nil { // not there: still a change asked for
		t.Fatal(err)
	}
	if err := l.DeleteMany(prefixes("198.18.0.1/32", "198.18.3.0/24")); err != nil {
		t.Fatal(err)
	}
	if err := l.DeleteExpired(prefixes("2001:2::/48"), 2); err != nil {
		t.Fatal(err)
	}
	ps, complete := l.TakeChanges()
	want := sorted(prefixes("198.18.0.1/32", "198.18.1.0/24", "198.18.2.2/32", "2001:2::/48", "198.18.9.9/32", "198.18.3.0/24"))
	if got := sorted(ps); !slices.Equal(got, want) || !complete {
		t.Fatalf("changes: %v (complete %v), want %v, complete", got, complete, want)
	}
	if ps, complete := l.TakeChanges(); len(ps) != 0 || !complete {
		t.Fatalf("changes taken again: %v (complete %v), want none, complete", ps, complete)
	}
	const many = 1<<16 + 1
	es := make([]maps.Entry, many)
	for i := range es {
		es[i] = maps.Entry{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 20, byte(i >> 8), byte(i)}), 32)}
		if i >= 1<<16 {
			es[i].Prefix = netip.MustParsePrefix("198.19.0.1/32")
		}
	}
	if err := l.Add(es); err != nil {
		t.Fatal(err)
	}
	if ps, complete := l.TakeChanges(); len(ps) != 0 || complete {
		t.Fatalf("changes of %d prefixes: %d of them (complete %v), want none, incomplete", many, len(ps), complete)
	}
	if c := l.Count(0); c.IPv4 != 2+many {
		t.Fatalf("the list counts %d IPv4 entries, want %d", c.IPv4, 2+many)
	}
}

// TestAddRepeats adds a batch in which prefixes repeat, in and out of
// order, over entries already there: each prefix counts once, its last
// entry is in force, and a batch that fails (a full map) leaves every
// entry as it was, the repeated ones too.
func TestAddRepeats(t *testing.T) {
	d := testutil.Load(t, testutil.Setup{})
	l := d.Maps.Allow
	p := netip.MustParsePrefix
	if err := l.Add([]maps.Entry{{Prefix: p("198.18.0.5/32"), ListID: 7}, {Prefix: p("198.18.1.0/24"), ListID: 7}}); err != nil {
		t.Fatal(err)
	}
	if err := l.Add([]maps.Entry{
		{Prefix: p("198.18.0.9/32"), ListID: 8}, {Prefix: p("198.18.0.5/32"), ListID: 8},
		{Prefix: p("198.18.0.9/32"), ListID: 9}, {Prefix: p("198.18.1.0/24"), ListID: 9},
		{Prefix: p("198.18.0.0/24"), ListID: 9}, {Prefix: p("198.18.0.0/24"), ListID: 10},
	}); err != nil {
		t.Fatal(err)
	}
	if c := l.Count(0); c.IPv4 != 4 {
		t.Fatalf("the list counts %d IPv4 entries, want 4", c.IPv4)
	}
	wantIDs := map[netip.Prefix]uint32{p("198.18.0.5/32"): 8, p("198.18.0.9/32"): 9, p("198.18.1.0/24"): 9, p("198.18.0.0/24"): 10}
	check := func(when string) {
		t.Helper()
		for pfx, id := range wantIDs {
			if e, ok, err := l.Lookup(pfx); err != nil || !ok || e.ListID != id {
				t.Errorf("%s: %s: %+v (%v, %v), want list id %d", when, pfx, e, ok, err, id)
			}
		}
	}
	check("after the repeats")
	room := int(testutil.SmallSizes().AllowHosts)
	es := []maps.Entry{{Prefix: p("198.18.0.9/32"), ListID: 11}, {Prefix: p("198.18.0.5/32"), ListID: 11}}
	for i := range room {
		es = append(es, maps.Entry{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}), 32), ListID: 11})
	}
	es = append(es, maps.Entry{Prefix: p("198.18.0.9/32"), ListID: 12}, es[2]) // es[2] is new, and given twice
	if err := l.Add(es); err == nil {
		t.Fatalf("Add of %d hosts into a map of %d: no error", len(es), room)
	}
	check("after the failed add")
	if c := l.Count(0); c.IPv4 != 4 {
		t.Fatalf("after the failed add the list counts %d IPv4 entries, want 4", c.IPv4)
	}
	if got, err := l.Entries(); err != nil || len(got) != 4 {
		t.Fatalf("after the failed add the list holds %d entries (%v), want 4", len(got), err)
	}
}
