package bench

import (
	"math/rand"
	"net/netip"
	"os"
	"testing"

	"github.com/bulwark-filter/bulwark/maps"
)

// TestRotator checks that each run through the rotator reaches Bulwark
// from the next address in turn: addresses alternately on the block list
// and not give drop, pass, drop, pass...; and that Benchmark advances the
// position by its repeat count.
func TestRotator(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (BPF)")
	}
	b := &Bench{}
	defer b.Close()
	d, err := b.load(sizes(1024, 1024, 1<<16), maps.Policy{Default: maps.Limit{PPS: 1_000_000_000, Burst: 1_000_000_000}})
	if err != nil {
		t.Fatal(err)
	}
	blocked := []netip.Addr{netip.MustParseAddr("198.18.9.1"), netip.MustParseAddr("198.18.9.3")}
	addrs := []netip.Addr{blocked[0], netip.MustParseAddr("198.18.9.2"), blocked[1], netip.MustParseAddr("198.18.9.4")}
	if err := d.Maps.Block.Add([]maps.Entry{{Prefix: netip.PrefixFrom(blocked[0], 32), ListID: 1}, {Prefix: netip.PrefixFrom(blocked[1], 32), ListID: 1}}); err != nil {
		t.Fatal(err)
	}
	rot, err := loadRotator(addrs, d.Program())
	if err != nil {
		t.Fatal(err)
	}
	defer rot.Close()
	// The frame's own source is blocked: only the rotation makes a pass.
	frame := udp4(blocked[0])
	for i, want := range []uint32{xdpDrop, xdpPass, xdpDrop, xdpPass, xdpDrop, xdpPass} {
		got, _, err := rot.Rotate.Benchmark(frame, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("run %d (address %v): verdict %d, want %d", i, addrs[i%4], got, want)
		}
	}
	var pos uint32
	if err := rot.RotatePos.Get(&pos); err != nil {
		t.Fatal(err)
	}
	if _, _, err := rot.Rotate.Benchmark(frame, 1000, nil); err != nil {
		t.Fatal(err)
	}
	var after uint32
	if err := rot.RotatePos.Get(&after); err != nil {
		t.Fatal(err)
	}
	if pos != 6 || after != 1006 {
		t.Fatalf("position %d after 6 runs and %d after 1000 more, want 6 and 1006", pos, after)
	}
	if _, err := loadRotator(addrs[:3], d.Program()); err == nil {
		t.Fatal("3 addresses (no power of two) loaded")
	}
}

// TestDistinctHits checks the rotated cases' addresses against the list by
// arithmetic: host hits are host entries, prefix hits are inside a prefix
// entry of their family and no host entry, distinct.
func TestDistinctHits(t *testing.T) {
	entries, _ := feed(1000, 7)
	hosts := map[netip.Addr]bool{}
	var nets []netip.Prefix
	for _, e := range entries {
		if e.Prefix.IsSingleIP() {
			hosts[e.Prefix.Addr()] = true
		} else {
			nets = append(nets, e.Prefix)
		}
	}
	rng := rand.New(rand.NewSource(1))
	for _, kind := range []hitKind{hitHost4, hitNet4, hitHost6, hitNet6} {
		addrs, distinct, err := distinctHits(entries, kind, 1024, rng)
		if err != nil {
			t.Fatal(err)
		}
		v4 := kind == hitHost4 || kind == hitNet4
		seen := map[netip.Addr]bool{}
		for _, a := range addrs {
			seen[a] = true
			if a.Is4() != v4 {
				t.Fatalf("kind %d: %v of the other family", kind, a)
			}
			if kind == hitHost4 || kind == hitHost6 {
				if !hosts[a] {
					t.Fatalf("kind %d: %v is no host entry", kind, a)
				}
				continue
			}
			in := false
			for _, p := range nets {
				in = in || p.Contains(a)
			}
			if !in || hosts[a] {
				t.Fatalf("kind %d: %v inside a prefix %v, a host entry %v", kind, a, in, hosts[a])
			}
		}
		// 1000 entries: 450 hosts of each family, each used; 1024
		// distinct prefix hits.
		want := 1024
		if kind == hitHost4 || kind == hitHost6 {
			want = 450
		}
		if len(addrs) != 1024 || distinct != want || len(seen) != want {
			t.Fatalf("kind %d: %d addresses, %d distinct (%d said), want 1024 and %d", kind, len(addrs), len(seen), distinct, want)
		}
	}
}
