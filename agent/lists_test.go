package agent

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/bulwark-filter/bulwark/agent/desired"
	"github.com/bulwark-filter/bulwark/agent/listset"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// TestReconcileList reconciles a real block list that holds entries of
// every owner with a wanted set, and checks the kernel's entries after it
// and the counts it returns: wanted entries already in place are not
// written again, a config entry on another id or with an expiry is
// rewritten, a run-time entry on a wanted prefix is replaced, stale config
// entries go, and run-time, fleet and feed entries stay.
func TestReconcileList(t *testing.T) {
	p := netip.MustParsePrefix
	file := uint32(maps.FirstFileList)
	feed := uint32(maps.FirstFeedList)
	before := []maps.Entry{
		{Prefix: p("198.18.1.0/24"), ListID: desired.ListConfigBlock},  // wanted as it is
		{Prefix: p("198.18.2.1/32"), ListID: file},                     // wanted as it is
		{Prefix: p("2001:2::/48"), ListID: file},                       // wanted on file+1: rewritten
		{Prefix: p("198.18.3.3/32"), ListID: file, ExpiresNS: 1 << 62}, // wanted without expiry: rewritten
		{Prefix: p("198.18.4.4/32"), ListID: desired.ListRuntimeBlock}, // wanted: replaced by the config's
		{Prefix: p("198.18.5.5/32"), ListID: desired.ListRuntimeBlock}, // not wanted, run-time: stays
		{Prefix: p("198.18.6.0/24"), ListID: desired.ListFleetBlock},   // fleet: stays
		{Prefix: p("198.18.7.0/24"), ListID: feed},                     // feed: stays
		{Prefix: p("198.18.8.8/32"), ListID: desired.ListConfigBlock},  // stale: deleted
		{Prefix: p("2001:2:0:1::/64"), ListID: file + 1},               // stale: deleted
		{Prefix: p("2001:2::9/128"), ListID: file},                     // stale: deleted
	}
	d := testutil.Load(t, testutil.Setup{Block: before})
	wantIDs := map[netip.Prefix]uint32{
		p("198.18.1.0/24"):   desired.ListConfigBlock,
		p("198.18.2.1/32"):   file,
		p("2001:2::/48"):     file + 1,
		p("198.18.3.3/32"):   file,
		p("198.18.4.4/32"):   file,
		p("198.18.9.0/25"):   file,     // new
		p("2001:2:5::5/128"): file + 1, // new
	}
	var es []listset.Entry
	for pfx, id := range wantIDs {
		es = append(es, listset.Entry{Key: listset.KeyOf(pfx), ID: id})
	}
	added, removed, err := reconcileList(d.Maps.Block, listset.Build(es))
	if err != nil {
		t.Fatal(err)
	}
	// Written: the 7 wanted less the 2 in place; removed: the 3 stale.
	if added != 5 || removed != 3 {
		t.Errorf("added %d, removed %d; want 5 and 3", added, removed)
	}
	after := map[netip.Prefix]maps.Entry{}
	got, err := d.Maps.Block.Entries()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range got {
		after[e.Prefix] = e
	}
	want := map[netip.Prefix]maps.Entry{}
	for pfx, id := range wantIDs {
		want[pfx] = maps.Entry{Prefix: pfx, ListID: id}
	}
	for _, e := range before[5:8] {
		want[e.Prefix] = e
	}
	if len(after) != len(want) {
		t.Errorf("the list holds %d entries, want %d: %v", len(after), len(want), got)
	}
	for pfx, w := range want {
		if g, ok := after[pfx]; !ok || g != w {
			t.Errorf("%s: %+v (%v), want %+v", pfx, g, ok, w)
		}
	}

	// A second reconcile with the same set writes and removes nothing.
	if added, removed, err := reconcileList(d.Maps.Block, listset.Build(es)); err != nil || added != 0 || removed != 0 {
		t.Errorf("again: added %d, removed %d (%v); want nothing", added, removed, err)
	}
}

// syncSet is a listset.Set of prefixes on list ids.
func syncSet(ids map[netip.Prefix]uint32) listset.Set {
	var es []listset.Entry
	for p, id := range ids {
		es = append(es, listset.Entry{Key: listset.KeyOf(p), ID: id})
	}
	return listset.Build(es)
}

// listEntries is the list's entries by prefix.
func listEntries(t *testing.T, l *maps.List) map[netip.Prefix]maps.Entry {
	t.Helper()
	es, err := l.Entries()
	if err != nil {
		t.Fatal(err)
	}
	out := map[netip.Prefix]maps.Entry{}
	for _, e := range es {
		out[e.Prefix] = e
	}
	return out
}

// TestSyncListFromImage syncs a block list from the agent's image: after a
// first sync (against the kernel), other writers of the agent write over
// and delete config entries, and a second sync with a changed config
// writes the change and repairs what they touched as a reconcile against
// the kernel would (a run-time entry over a prefix the config drops
// stays), with counts from the change alone. An entry written by another
// process (a second datapath over the same pinned maps) is not seen by
// the image's sync, and is by a sync without an image.
func TestSyncListFromImage(t *testing.T) {
	p := netip.MustParsePrefix
	file := uint32(maps.FirstFileList)
	load := testutil.PinnedLoader(t)
	d := load()
	l := d.Maps.Block
	first := map[netip.Prefix]uint32{}
	for i := range 200 {
		first[netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 1, byte(i)}), 32)] = file
	}
	first[p("198.18.2.0/24")] = desired.ListConfigBlock
	first[p("2001:2::/48")] = file
	var img listImage
	if added, removed, err := syncList(l, &img, syncSet(first)); err != nil || added != 202 || removed != 0 {
		t.Fatalf("first sync: added %d, removed %d (%v); want 202 and 0", added, removed, err)
	}
	// Other writers of the agent: the CLI over a kept and over a dropped
	// config entry, a delete of a kept one.
	if err := l.Add([]maps.Entry{{Prefix: p("198.18.1.1/32"), ListID: desired.ListRuntimeBlock},
		{Prefix: p("198.18.1.2/32"), ListID: desired.ListRuntimeBlock}}); err != nil {
		t.Fatal(err)
	}
	if err := l.Delete([]netip.Prefix{p("198.18.1.3/32")}); err != nil {
		t.Fatal(err)
	}
	// Another process writes a config entry the agent never wrote.
	if err := load().Maps.Block.Add([]maps.Entry{{Prefix: p("198.18.9.9/32"), ListID: file}}); err != nil {
		t.Fatal(err)
	}
	second := map[netip.Prefix]uint32{}
	for pfx, id := range first {
		second[pfx] = id
	}
	delete(second, p("198.18.1.2/32"))  // dropped, but the CLI's now: stays
	delete(second, p("198.18.1.4/32"))  // dropped: deleted
	delete(second, p("198.18.2.0/24"))  // dropped: deleted
	second[p("2001:2::/48")] = file + 1 // moved to another file: rewritten
	second[p("198.18.3.0/25")] = file   // new
	// Written: the moved and the new one, 198.18.1.1 (the CLI's, kept by
	// the config) and 198.18.1.3 (deleted, kept by the config).
	if added, removed, err := syncList(l, &img, syncSet(second)); err != nil || added != 4 || removed != 2 {
		t.Fatalf("second sync: added %d, removed %d (%v); want 4 and 2", added, removed, err)
	}
	want := map[netip.Prefix]maps.Entry{
		p("198.18.1.2/32"): {Prefix: p("198.18.1.2/32"), ListID: desired.ListRuntimeBlock},
		p("198.18.9.9/32"): {Prefix: p("198.18.9.9/32"), ListID: file},
	}
	for pfx, id := range second {
		want[pfx] = maps.Entry{Prefix: pfx, ListID: id}
	}
	got := listEntries(t, l)
	if len(got) != len(want) {
		t.Errorf("the list holds %d entries, want %d", len(got), len(want))
	}
	for pfx, w := range want {
		if g, ok := got[pfx]; !ok || g != w {
			t.Errorf("%s: %+v (%v), want %+v", pfx, g, ok, w)
		}
	}
	// The tally is this process's: the other process's entry is not in it.
	if c := l.Count(0); c.IPv4+c.IPv6 != len(want)-1 {
		t.Errorf("the list counts %+v entries, want %d", c, len(want)-1)
	}
	// Without an image the sync reads the kernel and finds the other
	// process's entry.
	img.known = false
	if added, removed, err := syncList(l, &img, syncSet(second)); err != nil || added != 0 || removed != 1 {
		t.Fatalf("sync without an image: added %d, removed %d (%v); want 0 and 1", added, removed, err)
	}
	if _, ok := listEntries(t, l)[p("198.18.9.9/32")]; ok {
		t.Error("198.18.9.9/32, written by another process, is still in the list")
	}
}

// TestSyncListFailedWrite syncs a config that does not fit beside a
// run-time entry: the write fails with a FullError, the list holds what it
// held before, the image is dropped, and a sync of the running config
// (as a failed reload restores it) reads the kernel and succeeds.
func TestSyncListFailedWrite(t *testing.T) {
	d := testutil.Load(t, testutil.Setup{})
	l := d.Maps.Block
	room := int(testutil.SmallSizes().BlockHosts)
	host := func(i int) netip.Prefix {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 32)
	}
	file := uint32(maps.FirstFileList)
	running := map[netip.Prefix]uint32{}
	for i := range room - 1 {
		running[host(i)] = file
	}
	var img listImage
	if _, _, err := syncList(l, &img, syncSet(running)); err != nil {
		t.Fatal(err)
	}
	if err := l.Add([]maps.Entry{{Prefix: netip.MustParsePrefix("198.19.0.1/32"), ListID: desired.ListRuntimeBlock}}); err != nil {
		t.Fatal(err)
	}
	before := listEntries(t, l)
	// Half the hosts replaced: the new ones are written before the old go,
	// and the map has no room for them.
	next := map[netip.Prefix]uint32{}
	for i := room / 2; i < room/2+room-1; i++ {
		next[host(i)] = file
	}
	_, _, err := syncList(l, &img, syncSet(next))
	var fe *maps.FullError
	if !errors.As(err, &fe) {
		t.Fatalf("sync of a config that does not fit: %v, want a FullError", err)
	}
	if img.known {
		t.Error("the image is still known after a failed write")
	}
	after := listEntries(t, l)
	if len(after) != len(before) {
		t.Errorf("after the failed sync the list holds %d entries, want the %d it held", len(after), len(before))
	}
	for pfx, e := range before {
		if after[pfx] != e {
			t.Errorf("%s: %+v after the failed sync, want %+v", pfx, after[pfx], e)
		}
	}
	if c := l.Count(0); c.IPv4 != len(before) {
		t.Errorf("after the failed sync the list counts %d IPv4 entries, want the %d it held", c.IPv4, len(before))
	}
	if added, removed, err := syncList(l, &img, syncSet(running)); err != nil || added != 0 || removed != 0 || !img.known {
		t.Fatalf("sync of the running config: added %d, removed %d (%v), image known %v; want 0, 0, known", added, removed, err, img.known)
	}
}

// TestSyncListOthers syncs from the image a block list that holds only the
// config's entries (new entries are then written without a lookup each),
// then one that also holds a run-time entry written before the last sync,
// on a prefix the next config names: the counts stay exact (the run-time
// entry is replaced, not counted twice) and the list holds the config.
func TestSyncListOthers(t *testing.T) {
	d := testutil.Load(t, testutil.Setup{})
	l := d.Maps.Block
	host := func(i int) netip.Prefix {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 32)
	}
	file := uint32(maps.FirstFileList)
	cfg := map[netip.Prefix]uint32{}
	for i := range 200 {
		cfg[host(i)] = file
	}
	cfg[netip.MustParsePrefix("198.19.0.0/24")] = file
	var img listImage
	sync := func(when string, wantAdded, wantRemoved, extra int) {
		t.Helper()
		added, removed, err := syncList(l, &img, syncSet(cfg))
		if err != nil || added != wantAdded || removed != wantRemoved {
			t.Fatalf("%s: added %d, removed %d (%v); want %d and %d", when, added, removed, err, wantAdded, wantRemoved)
		}
		got := listEntries(t, l)
		if len(got) != len(cfg)+extra {
			t.Errorf("%s: the list holds %d entries, want %d", when, len(got), len(cfg)+extra)
		}
		for pfx, id := range cfg {
			if e, ok := got[pfx]; !ok || e.ListID != id {
				t.Errorf("%s: %s is %+v (%v), want it on list %d", when, pfx, e, ok, id)
			}
		}
		if c := l.Count(0); c.IPv4 != len(got) {
			t.Errorf("%s: the list counts %d IPv4 entries, want the %d it holds", when, c.IPv4, len(got))
		}
	}
	sync("first sync", 201, 0, 0)
	// 50 new hosts (and a prefix), 20 dropped: nothing else in the list.
	for i := range 20 {
		delete(cfg, host(i))
	}
	for i := 200; i < 250; i++ {
		cfg[host(i)] = file
	}
	cfg[netip.MustParsePrefix("198.19.1.0/24")] = file
	sync("a sync with only config entries in the list", 51, 20, 0)
	// A run-time entry, then a sync that does not name it: it stays.
	runtime := host(300)
	if err := l.Add([]maps.Entry{{Prefix: runtime, ListID: desired.ListRuntimeBlock}}); err != nil {
		t.Fatal(err)
	}
	sync("a sync beside a run-time entry", 0, 0, 1)
	// The next config names it, and 10 new hosts: it is replaced.
	for i := 301; i <= 310; i++ {
		cfg[host(i)] = file
	}
	cfg[runtime] = file
	sync("a sync over a run-time entry written before the last", 11, 0, 0)
}
