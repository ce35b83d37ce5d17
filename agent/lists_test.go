package agent

import (
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
