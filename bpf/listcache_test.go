package bpf_test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bulwark-filter/bulwark/bpf"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// TestListCache: the per-CPU list cache (bpf/lists.h) is on for lists of
// maps.CacheFrom entries and more; it answers from a result it made only
// while the list's generation is the one it was made under, and a cached
// hit holds only until its entry's expiry. On one CPU, so that every run
// meets the cache the run before it filled.
func TestListCache(t *testing.T) {
	pinToOneCPU(t)
	sizes := testutil.SmallSizes()
	sizes.BlockHosts = 2 * maps.CacheFrom
	d := testutil.Load(t, testutil.Setup{Sizes: sizes})
	x, y := "198.18.40.7", "198.18.40.8" // one /16: y's entry sets the slot's hosts bit for x
	fx := testutil.UDP4(t, x, d4, 53, 16)
	// step sends fx twice (the second from the cache the first filled):
	// each must be decided as want, and counted for list id on a list hit.
	step := func(what string, want maps.Action, reason maps.Reason, id uint32) {
		t.Helper()
		for k := 0; k < 2; k++ {
			_, before, _ := counters(t, d.Maps)
			_, act, why := run(t, d, fx)
			_, after, _ := counters(t, d.Maps)
			if act != want || why != reason {
				t.Fatalf("%s (send %d): %s/%s; want %s/%s", what, k, act, why, want, reason)
			}
			if reason != maps.ReasonPassed && after[id]-before[id] != 1 {
				t.Fatalf("%s (send %d): list %d counted %d hits, want 1", what, k, id, after[id]-before[id])
			}
		}
	}
	add := func(es ...maps.Entry) {
		t.Helper()
		if err := d.Maps.Block.Add(es); err != nil {
			t.Fatal(err)
		}
	}
	del := func(ps ...string) {
		t.Helper()
		var out []netip.Prefix
		for _, p := range ps {
			out = append(out, netip.MustParsePrefix(p))
		}
		if err := d.Maps.Block.Delete(out); err != nil {
			t.Fatal(err)
		}
	}
	pass, drop := maps.ActionPass, maps.ActionDrop
	passed, blocked := maps.ReasonPassed, maps.ReasonBlocklist

	add(host(y, 1))
	step("x not listed", pass, passed, 0)

	// A list below maps.CacheFrom entries has no cache: an entry written
	// behind its back (no generation advance) answers at once.
	hosts4 := mapByName(t, d.Program(), maps.MapBlockHosts4)
	key := netip.MustParseAddr(x).As4()
	if err := hosts4.Put(key, bpf.BulwarkListValue{ListId: 3, Prefixlen: 32}); err != nil {
		t.Fatal(err)
	}
	step("small list, x written without an advance", drop, blocked, 3)
	if err := hosts4.Delete(key); err != nil {
		t.Fatal(err)
	}
	step("small list, x deleted without an advance", pass, passed, 0)

	// From maps.CacheFrom entries on (hosts of 198.19.0.0/16) ...
	var many []maps.Entry
	for i := 0; i < maps.CacheFrom; i++ {
		many = append(many, maps.Entry{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}), 32), ListID: 1})
	}
	add(many...)
	step("large list, x not listed", pass, passed, 0)
	// ... the cached miss still answers after a write behind the cache's
	// back, which shows the cache is in use ...
	if err := hosts4.Put(key, bpf.BulwarkListValue{ListId: 2, Prefixlen: 32}); err != nil {
		t.Fatal(err)
	}
	step("x written without an advance", pass, passed, 0)
	// ... and any write to the list ends it.
	add(host("198.18.99.1", 1))
	step("after a write to the list", drop, blocked, 2)

	del(x + "/32")
	step("x deleted", pass, passed, 0)
	add(entry("198.18.40.0/24", 4, 0))
	step("x's /24 added", drop, blocked, 4)

	// A host entry that expires in 300 ms hides the /24 until then; its
	// cached hit does not outlive it.
	exp := coarseNow(t) + uint64(300*time.Millisecond)
	add(entry(x+"/32", 5, exp))
	step("x's host entry live", drop, blocked, 5)
	for i := 0; i < 100 && coarseNow(t) <= exp+uint64(20*time.Millisecond); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	step("x's host entry expired", drop, blocked, 4)
	del("198.18.40.0/24")
	step("the /24 deleted", pass, passed, 0)

	// Each family has its own answers: x's cached IPv4 hit does not answer
	// for the IPv6 source ::ffff:x, whose key bytes are x's. An IPv6 entry
	// lets IPv6 sources reach the block list's cache.
	add(host(x, 9), host("2001:2::99", 8))
	step("x listed again", drop, blocked, 9)
	// The frame's source rewritten to ::ffff:x (testutil builds frames
	// from the test ranges only; the datapath checks no checksum).
	mapped := patched(testutil.UDP6(t, "2001:2::7", d6, 53, 16), func(b []byte) {
		src := netip.MustParseAddr("::ffff:" + x).As16()
		copy(b[14+8:], src[:])
	})
	for k := 0; k < 2; k++ {
		if _, act, why := run(t, d, mapped); act != pass || why != passed {
			t.Fatalf("IPv6 source ::ffff:%s (send %d): %s/%s; want pass/passed (IPv4 entries hold IPv4 sources only)", x, k, act, why)
		}
	}
	step("x after ::ffff:x", drop, blocked, 9)

	// The allow list, small, has no cache and answers first.
	if err := d.Maps.Allow.Add([]maps.Entry{host(x, 7)}); err != nil {
		t.Fatal(err)
	}
	step("x allowed", pass, maps.ReasonAllowlist, 7)
}

// mapByName is the map called name that prog uses.
func mapByName(t *testing.T, prog *ebpf.Program, name string) *ebpf.Map {
	t.Helper()
	info, err := prog.Info()
	if err != nil {
		t.Fatal(err)
	}
	ids, _ := info.MapIDs()
	for _, id := range ids {
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			t.Fatal(err)
		}
		if mi, err := m.Info(); err == nil && mi.Name == name {
			t.Cleanup(func() { m.Close() })
			return m
		}
		m.Close()
	}
	t.Fatalf("map %s not found", name)
	return nil
}

// coarseNow reads the clock the datapath reads (bpf_ktime_get_coarse_ns).
func coarseNow(t *testing.T) uint64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC_COARSE, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Nano())
}

// TestListCacheSpread: the cache keeps the answers of sources that differ
// only in a few bytes, as a flood's sources often do (one /16 of IPv4, one
// /112 of IPv6, IPv6 sources that differ in one byte of the interface id).
// Each pattern's hosts are listed, sent once (which fills the cache), then
// deleted from the host map behind the cache's back (no generation
// advance) and sent again: a source still dropped was answered by the
// cache. With one entry per source hashed at random into S sets of two
// entries, the sources that find no room are those past the second in a
// set: for n = S/4 sources (Poisson, mean 1/4 per set) about 0.9 % of
// them, so at least 90 % must still be answered. A set index drawn from
// bytes the pattern leaves fixed puts them all in a few sets.
func TestListCacheSpread(t *testing.T) {
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	patterns := []struct {
		name  string
		v6    bool
		addr  func(i int) string
		hosts string
	}{
		{"IPv4, one /16", false, func(i int) string { return fmt.Sprintf("198.18.%d.%d", i>>5&255, i&31*8) }, maps.MapBlockHosts4},
		{"IPv6, one /112", true, func(i int) string { return fmt.Sprintf("2001:2::%x", i*8) }, maps.MapBlockHosts6},
		{"IPv6, interface id's first byte and last", true, func(i int) string { return fmt.Sprintf("2001:2::%x00:0:0:%x", i>>8&255, i&255) }, maps.MapBlockHosts6},
	}
	for _, pt := range patterns {
		t.Run(pt.name, func(t *testing.T) {
			pinToOneCPU(t) // the subtest's own goroutine
			sizes := testutil.SmallSizes()
			sizes.BlockHosts = 1 << 14
			d := testutil.Load(t, testutil.Setup{Sizes: sizes})
			sets := int(mapByName(t, d.Program(), maps.MapBlockCache).MaxEntries()) / cpus
			n := min(8192, sets/4)
			if n < maps.CacheFrom {
				t.Fatalf("the cache has %d sets per CPU: too few to hold %d sources at a quarter each", sets, maps.CacheFrom)
			}
			frames := make([][]byte, n)
			entries := make([]maps.Entry, n)
			var keys []netip.Addr
			for i := range n {
				a := netip.MustParseAddr(pt.addr(i))
				entries[i] = host(a.String(), 1)
				keys = append(keys, a)
				if pt.v6 {
					frames[i] = testutil.UDP6(t, a.String(), d6, 53, 16)
				} else {
					frames[i] = testutil.UDP4(t, a.String(), d4, 53, 16)
				}
			}
			if err := d.Maps.Block.Add(entries); err != nil {
				t.Fatal(err)
			}
			for i, f := range frames {
				if _, act, _ := run(t, d, f); act != maps.ActionDrop {
					t.Fatalf("%s: %s, want drop (listed)", keys[i], act)
				}
			}
			hosts := mapByName(t, d.Program(), pt.hosts)
			for _, a := range keys {
				var err error
				if pt.v6 {
					err = hosts.Delete(a.As16())
				} else {
					err = hosts.Delete(a.As4())
				}
				if err != nil {
					t.Fatalf("delete %s behind the cache: %v", a, err)
				}
			}
			cached := 0
			for _, f := range frames {
				if _, act, _ := run(t, d, f); act == maps.ActionDrop {
					cached++
				}
			}
			if cached < n*9/10 {
				t.Fatalf("%d of %d sources answered by the cache (%d sets per CPU), want at least 90 %%", cached, n, sets)
			}
			t.Logf("%d of %d sources answered by the cache (%d sets per CPU)", cached, n, sets)
		})
	}
}
