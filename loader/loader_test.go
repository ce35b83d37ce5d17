package loader_test

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bulwark-filter/bulwark/loader"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

func pinDir(t *testing.T) string {
	t.Helper()
	return filepath.Join(testutil.PinRoot(t), "lo")
}

// TestAdoptPins loads with a pin directory, writes state, drops every
// handle, and loads again: the second load adopts the same maps.
func TestAdoptPins(t *testing.T) {
	testutil.RequireRoot(t)
	dir := pinDir(t)
	opts := loader.Options{Sizes: testutil.SmallSizes(), PinDir: dir}
	d, err := loader.Load(opts)
	if err != nil {
		t.Fatal(err)
	}
	entry := maps.Entry{Prefix: netip.MustParsePrefix("198.18.66.0/24"), ListID: 7}
	if err := d.Maps.ApplyPolicy(&maps.Policy{Mode: maps.ModeMonitor, IPv6Prefix: 56}); err != nil {
		t.Fatal(err)
	}
	if err := d.Maps.Block.Add([]maps.Entry{entry}); err != nil {
		t.Fatal(err)
	}
	ttl := netip.MustParsePrefix("198.18.67.1/32")
	if err := d.Maps.Allow.Add([]maps.Entry{{Prefix: ttl, ExpiresNS: 5}}); err != nil {
		t.Fatal(err)
	}
	d.Close()

	d2, err := loader.Load(opts)
	if err != nil {
		t.Fatalf("adopt: %v", err)
	}
	defer d2.Close()
	es, err := d2.Maps.Block.Entries()
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || es[0].Prefix != entry.Prefix || es[0].ListID != 7 {
		t.Errorf("adopted block list %v, want [%v]", es, entry)
	}
	// The adopted Set counts what the maps hold, TTLs included.
	if got := d2.Maps.ListCounts(4); got["allow"] != (maps.ListCount{IPv4: 1}) || got["block"] != (maps.ListCount{IPv4: 1}) {
		t.Errorf("adopted list counts %v, want one IPv4 entry in each", got)
	}
	if got := d2.Maps.Allow.Count(5); got != (maps.ListCount{}) {
		t.Errorf("allow list count once its entry expired: %+v, want none", got)
	}
	if got := d2.Maps.Allow.Expired(5); len(got) != 1 || got[0] != ttl {
		t.Errorf("expired entries %v, want [%v]", got, ttl)
	}
	if got := d2.Maps.IPv6Prefix(); got != 56 {
		t.Errorf("adopted settings: IPv6 prefix %d, want 56", got)
	}
	if err := loader.Detach(dir); err != nil {
		t.Fatalf("detach: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("pin directory still there after detach: %v", err)
	}
}

// TestIncompatiblePins: pins made with other map sizes are refused with an
// error naming each map and what differs, and nothing is changed.
func TestIncompatiblePins(t *testing.T) {
	testutil.RequireRoot(t)
	dir := pinDir(t)
	small := testutil.SmallSizes()
	d, err := loader.Load(loader.Options{Sizes: small, PinDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	t.Cleanup(func() { loader.Detach(dir) })

	other := small
	other.Sources *= 2
	other.BlockHosts *= 2
	_, err = loader.Load(loader.Options{Sizes: other, PinDir: dir})
	if err == nil {
		t.Fatal("load over incompatible pins succeeded")
	}
	// The pinned size first, then what the new sizes want.
	for _, want := range []string{"sources (4096 entries, want 8192)", "block_hosts4 (1024 entries, want 2048)", "a size in the config's maps block", "bulwark detach --interface lo"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	// The old pins are intact: the original sizes still load.
	d, err = loader.Load(loader.Options{Sizes: small, PinDir: dir})
	if err != nil {
		t.Fatalf("reload with the original sizes: %v", err)
	}
	d.Close()
	// FromPins takes the pinned sizes (what the agent does for the sizes a config leaves unset), so they load; with
	// nothing pinned it changes nothing.
	if got := other.FromPins(dir); got != small {
		t.Errorf("FromPins = %+v, want the pinned sizes %+v", got, small)
	}
	if got := other.FromPins(filepath.Join(dir, "nothing-here")); got != other {
		t.Errorf("FromPins of an empty directory = %+v, want %+v unchanged", got, other)
	}
}

// TestIncompatibleLayout: a pinned map whose value size is not this
// build's (an upgrade that grew the sources map's value) is refused by
// name, with the cause and the exact detach command, and left as it was.
func TestIncompatibleLayout(t *testing.T) {
	testutil.RequireRoot(t)
	dir := pinDir(t)
	small := testutil.SmallSizes()
	oldSize := testutil.PinOldSources(t, dir, small)
	t.Cleanup(func() { loader.Detach(dir) })

	_, err := loader.Load(loader.Options{Sizes: small, PinDir: dir})
	if err == nil {
		t.Fatal("load over a sources map of another layout succeeded")
	}
	t.Logf("error: %v", err)
	want := []string{
		fmt.Sprintf("%s (value size %d, want %d)", maps.MapSources, oldSize, oldSize+80),
		"an upgrade across a change of the map's key or value",
		fmt.Sprintf("`bulwark detach --interface lo --pin-dir %s`", filepath.Dir(dir)),
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	if strings.Contains(err.Error(), "maps block") {
		t.Errorf("error %q blames the config's sizes: only the layout differs", err)
	}
	// Nothing changed: the old map is still pinned, and no other map was.
	p, err := ebpf.LoadPinnedMap(filepath.Join(dir, maps.MapSources), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.ValueSize() != oldSize {
		t.Errorf("pinned sources value size %d, want the old %d", p.ValueSize(), oldSize)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("%d pins in %s, want the old sources map only", len(ents), dir)
	}
}

// TestOldListCachePin: a list cache pinned by a build that laid it out
// differently (here without BPF_F_MMAPABLE) is replaced by an empty one,
// not refused: it holds only answers the datapath makes again. The other
// pins are adopted as usual.
func TestOldListCachePin(t *testing.T) {
	testutil.RequireRoot(t)
	dir := pinDir(t)
	small := testutil.SmallSizes()
	t.Cleanup(func() { loader.Detach(dir) })
	spec, err := loader.SizedSpec(small)
	if err != nil {
		t.Fatal(err)
	}
	old := spec.Maps[maps.MapBlockCache].Copy()
	if old.Flags&unix.BPF_F_MMAPABLE == 0 {
		t.Fatalf("%s flags %#x: this build's cache is not mmapable, the test pins nothing older", maps.MapBlockCache, old.Flags)
	}
	old.Flags &^= unix.BPF_F_MMAPABLE
	testutil.PinMap(t, dir, old)

	d, err := loader.Load(loader.Options{Sizes: small, PinDir: dir})
	if err != nil {
		t.Fatalf("load over an old list cache pin: %v", err)
	}
	defer d.Close()
	p, err := ebpf.LoadPinnedMap(filepath.Join(dir, maps.MapBlockCache), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	info, err := p.Info()
	if err != nil {
		t.Fatal(err)
	}
	if info.Flags&unix.BPF_F_MMAPABLE == 0 {
		t.Errorf("pinned %s flags %#x: still the old map", maps.MapBlockCache, info.Flags)
	}
	// The datapath answers from the maps it pinned.
	if err := d.Maps.Block.Add([]maps.Entry{{Prefix: netip.MustParsePrefix("198.18.67.0/24"), ListID: 4}}); err != nil {
		t.Fatal(err)
	}
	if v, err := d.Run(testutil.UDP4(t, "198.18.67.9", "198.18.1.1", 53, 20)); err != nil || v != 1 {
		t.Errorf("listed source: XDP verdict %d (%v), want 1 (drop)", v, err)
	}
}

// TestRunner: the lean test-run path agrees with Program.Run frame after
// frame (the kernel writes sizes back into the attributes it reuses).
func TestRunner(t *testing.T) {
	d := testutil.Load(t, testutil.Setup{Block: []maps.Entry{{Prefix: netip.MustParsePrefix("198.18.66.0/24"), ListID: 3}}})
	r := d.NewRunner()
	frames := [][]byte{
		testutil.UDP4(t, "198.18.66.1", "198.18.1.1", 53, 20),
		testutil.UDP4(t, "198.18.2.1", "198.18.1.1", 53, 200),
		testutil.TCP4(t, "198.18.66.9", "198.18.1.1", 80, 0x02),
		make([]byte, 14), // non-IP
	}
	for round := 0; round < 3; round++ {
		for i, f := range frames {
			want, err := d.Run(f)
			if err != nil {
				t.Fatal(err)
			}
			got, err := r.Run(f)
			if err != nil || got != want {
				t.Errorf("round %d frame %d: runner %d (%v), Program.Run %d", round, i, got, err, want)
			}
		}
	}
	if _, err := r.Run(nil); err == nil {
		t.Error("an empty frame ran")
	}
}
