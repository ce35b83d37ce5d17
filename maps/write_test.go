package maps_test

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// TestWriteNew writes batches of entries the caller knows are new
// (Batch.AddNew, not looked up) beside entries over prefixes the list
// holds (Batch.Add, looked up), hosts and prefixes, into a list that
// holds entries: the list counts each prefix once and holds the batch's
// entries and the others as they were (an expiry replaced by none is gone
// from the count of entries in force). A batch that does not fit (a full
// map) fails with a FullError and leaves every entry, and the counts, as
// they were. An entry added as new whose prefix the list holds after all
// (written by another process) counts as a new one: it was not looked up.
func TestWriteNew(t *testing.T) {
	load := testutil.PinnedLoader(t)
	l := load().Maps.Allow
	room := int(testutil.SmallSizes().AllowHosts)
	host := func(i int) netip.Prefix {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 32)
	}
	net := func(i int) netip.Prefix {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(i), 0}), 24)
	}
	const far = 1 << 62 // an expiry that has not passed
	want := map[netip.Prefix]maps.Entry{}
	type item struct {
		e     maps.Entry
		fresh bool // added with AddNew
	}
	write := func(items []item) error {
		t.Helper()
		var b maps.Batch
		for _, it := range items {
			add := b.Add
			if it.fresh {
				add = b.AddNew
			}
			if err := add(it.e); err != nil {
				t.Fatal(err)
			}
		}
		return l.Write(&b)
	}
	check := func(when string) {
		t.Helper()
		got, err := l.Entries()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Errorf("%s: the list holds %d entries, want %d", when, len(got), len(want))
		}
		for _, e := range got {
			if w, ok := want[e.Prefix]; !ok || w != e {
				t.Errorf("%s: %+v, want %+v (%v)", when, e, w, ok)
			}
		}
		inForce := 0
		for _, e := range want {
			if e.ExpiresNS == 0 {
				inForce++
			}
		}
		if c := l.Count(0); c.IPv4 != len(want) || c.IPv6 != 0 {
			t.Errorf("%s: the list counts %+v entries, want %d IPv4", when, c, len(want))
		}
		if c := l.Count(far); c.IPv4 != inForce {
			t.Errorf("%s: the list counts %d IPv4 entries without an expiry, want %d", when, c.IPv4, inForce)
		}
	}
	// 200 hosts (the even ones of 0-398, every fifth with an expiry) and 10 prefixes.
	var first []item
	for i := range 10 {
		first = append(first, item{e: maps.Entry{Prefix: net(2 * i), ListID: 7}, fresh: true})
	}
	for i := 0; i < 400; i += 2 {
		e := maps.Entry{Prefix: host(i), ListID: 7}
		if i%10 == 0 {
			e.ExpiresNS = far
		}
		first = append(first, item{e: e, fresh: true})
	}
	if err := write(first); err != nil {
		t.Fatal(err)
	}
	for _, it := range first {
		want[it.e.Prefix] = it.e
	}
	check("after the first write")

	// 100 new hosts and 5 new prefixes beside 3 hosts and 2 prefixes the
	// list holds (one host and one prefix with an expiry), in order.
	var next []item
	for i := 1; i < 200; i += 2 {
		if i == 1 || i == 101 || i == 199 { // beside the even 0 (expiry), 100 (expiry) and 198
			next = append(next, item{e: maps.Entry{Prefix: host(i - 1), ListID: 8}})
		}
		next = append(next, item{e: maps.Entry{Prefix: host(i), ListID: 8}, fresh: true})
	}
	for i := range 7 {
		next = append(next, item{e: maps.Entry{Prefix: net(2*i + 1), ListID: 8}, fresh: true})
		if i < 2 {
			next = append(next, item{e: maps.Entry{Prefix: net(2*i + 2), ListID: 8}})
		}
	}
	if err := write(next); err != nil {
		t.Fatal(err)
	}
	for _, it := range next {
		want[it.e.Prefix] = it.e
	}
	check("after a write of new entries beside entries over held prefixes")

	// No room: the write fails and leaves the list as it was.
	held := len(want) - 17 // the hosts
	var full []item
	for i := range 5 {
		full = append(full, item{e: maps.Entry{Prefix: host(2 * i), ListID: 9, ExpiresNS: far}})
	}
	for i := range room - held + 10 {
		full = append(full, item{e: maps.Entry{Prefix: host(1000 + i), ListID: 9}, fresh: true})
	}
	full = append(full, item{e: maps.Entry{Prefix: net(100), ListID: 9}, fresh: true},
		item{e: maps.Entry{Prefix: net(1), ListID: 9}})
	var fe *maps.FullError
	if err := write(full); !errors.As(err, &fe) {
		t.Fatalf("a write of %d hosts (5 held) into a map of %d holding %d: %v, want a FullError", len(full)-2, room, held, err)
	}
	check("after a failed write")

	// A datapath over the same pinned maps (another process) writes a
	// host; this list, told it is new, does not look it up.
	if err := load().Maps.Allow.Add([]maps.Entry{{Prefix: host(1001), ListID: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := write([]item{{e: maps.Entry{Prefix: host(1001), ListID: 9}, fresh: true}}); err != nil {
		t.Fatal(err)
	}
	if c := l.Count(0); c.IPv4 != len(want)+1 {
		t.Errorf("after a write over another process's entry taken to be new the list counts %d IPv4 entries, want %d",
			c.IPv4, len(want)+1)
	}
}
