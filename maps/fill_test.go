package maps_test

import (
	"net/netip"
	"path/filepath"
	"slices"
	"testing"

	"github.com/bulwark-filter/bulwark/loader"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// TestListFill adds, rewrites and deletes hosts and prefixes of both
// families and checks each list map's fill against what was written; then
// adopts the pinned maps in a new Set, which counts them again from the
// maps, and checks it finds the same.
func TestListFill(t *testing.T) {
	testutil.RequireRoot(t)
	root := testutil.PinRoot(t)
	sizes := testutil.SmallSizes()
	sizes.BlockHosts, sizes.BlockPrefixes = 512, 256
	opts := loader.Options{Sizes: sizes, PinDir: filepath.Join(root, "lo")}
	d, err := loader.Load(opts)
	if err != nil {
		t.Fatal(err)
	}
	b := d.Maps.Block
	add := func(ps ...string) {
		t.Helper()
		var es []maps.Entry
		for _, p := range ps {
			es = append(es, maps.Entry{Prefix: netip.MustParsePrefix(p), ExpiresNS: 1})
		}
		if err := b.Add(es); err != nil {
			t.Fatal(err)
		}
	}
	add("198.18.0.1/32", "198.18.0.2/32", "198.18.0.3/32", "198.18.1.0/24", "2001:2::1/128", "2001:2:1::/48", "2001:2:2::/48")
	add("198.18.0.1/32", "2001:2:1::/48") // rewritten: not counted twice
	if err := b.Delete([]netip.Prefix{netip.MustParsePrefix("198.18.0.2/32"), netip.MustParsePrefix("2001:2:2::/48"),
		netip.MustParsePrefix("198.18.9.0/24")}); err != nil { // the last is not there
		t.Fatal(err)
	}
	// Expired entries (ExpiresNS 1) still hold their slots.
	want := []maps.MapFill{
		{Map: "allow_hosts4", Max: 1024}, {Map: "allow_nets4", Max: 1024},
		{Map: "allow_hosts6", Max: 1024}, {Map: "allow_nets6", Max: 1024},
		{Map: "block_hosts4", Entries: 2, Max: 512}, {Map: "block_nets4", Entries: 1, Max: 256},
		{Map: "block_hosts6", Entries: 1, Max: 512}, {Map: "block_nets6", Entries: 1, Max: 256},
	}
	if got := d.Maps.ListFill(); !slices.Equal(got, want) {
		t.Errorf("ListFill = %+v\nwant       %+v", got, want)
	}
	if d.Maps.MaxSources() != int(sizes.Sources) || d.Maps.MaxVerdicts() != int(sizes.Verdicts) {
		t.Errorf("MaxSources %d, MaxVerdicts %d, want %d, %d", d.Maps.MaxSources(), d.Maps.MaxVerdicts(), sizes.Sources, sizes.Verdicts)
	}
	d.Close()

	d2, err := loader.Load(opts)
	if err != nil {
		t.Fatalf("adopt: %v", err)
	}
	defer d2.Close()
	if got := d2.Maps.ListFill(); !slices.Equal(got, want) {
		t.Errorf("ListFill after adopting the pins = %+v\nwant                             %+v", got, want)
	}
}
