package maps_test

import (
	"encoding/binary"
	"maps"
	"net/netip"
	"testing"

	bmaps "github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// wantMasks is the length masks the layout in bpf/maps.h gives these
// entries: IPv4 /16-/31 in their /16's slot (bit 31-len), IPv6 /64-/127 in
// their /64's hash slot (bit 127-len), IPv6 /32-/63 in their /32's hash
// slot (bit 63-len), shorter ones in the short masks (bit 15-len, 31-len);
// hosts as bit 31 of their /16's slot (IPv4) and bit 63 of their /32's
// hash slot (IPv6).
func wantMasks(es map[netip.Prefix]bool) (v4 map[uint32]uint32, v6 map[uint32]uint64, mid map[uint32]uint64, s4 uint32, s6 uint64) {
	v4, v6, mid = map[uint32]uint32{}, map[uint32]uint64{}, map[uint32]uint64{}
	midOf := func(a []byte) uint32 {
		// The first 4 bytes (little-endian) times 2^64/phi, top 16 bits,
		// as bpf/lists.h mid6.
		return uint32(uint64(binary.LittleEndian.Uint32(a[:4])) * 0x9e3779b97f4a7c15 >> 48)
	}
	for p := range es {
		n, a := p.Bits(), p.Addr().AsSlice()
		switch {
		case p.IsSingleIP() && p.Addr().Is4():
			v4[uint32(a[0])<<8|uint32(a[1])] |= 1 << 31
		case p.IsSingleIP():
			mid[midOf(a)] |= 1 << 63
		case p.Addr().Is4() && n >= 16:
			v4[uint32(a[0])<<8|uint32(a[1])] |= 1 << (31 - n)
		case p.Addr().Is4():
			s4 |= 1 << (15 - n)
		case n >= 64:
			// The top 16 bits of the first 8 bytes (little-endian) times
			// 2^64/phi, as bpf/lists.h slot6.
			v6[uint32(binary.LittleEndian.Uint64(a[:8])*0x9e3779b97f4a7c15>>48)] |= 1 << (127 - n)
		case n >= 32:
			mid[midOf(a)] |= 1 << (63 - n)
		default:
			s6 |= 1 << (31 - n)
		}
	}
	return
}

// TestLengthMasks adds and deletes prefixes of both families and checks
// the masks the datapath probes by after each step: a bit is set while
// an entry of its length is in its slot, cleared when the last one goes,
// and a refused Add leaves the masks as they were.
func TestLengthMasks(t *testing.T) {
	sizes := testutil.SmallSizes()
	sizes.BlockPrefixes = 8
	d := testutil.Load(t, testutil.Setup{Sizes: sizes})
	l := d.Maps.Block
	held := map[netip.Prefix]bool{}
	check := func(step string) {
		t.Helper()
		v4, v6, mid, s4, s6, err := l.Masks()
		if err != nil {
			t.Fatalf("%s: read masks: %v", step, err)
		}
		w4, w6, wm, ws4, ws6 := wantMasks(held)
		if !maps.Equal(v4, w4) || !maps.Equal(v6, w6) || !maps.Equal(mid, wm) || s4 != ws4 || s6 != ws6 {
			t.Fatalf("%s: masks v4 %x v6 %x mid %x short %x %x; want %x %x %x %x %x", step, v4, v6, mid, s4, s6, w4, w6, wm, ws4, ws6)
		}
	}
	add := func(ss ...string) {
		t.Helper()
		var es []bmaps.Entry
		for _, s := range ss {
			p := netip.MustParsePrefix(s)
			es = append(es, bmaps.Entry{Prefix: p, ListID: 1})
			held[p] = true
		}
		if err := l.Add(es); err != nil {
			t.Fatalf("add %v: %v", ss, err)
		}
		check("add " + ss[0])
	}
	del := func(ss ...string) {
		t.Helper()
		ps := prefixes(ss...)
		for _, p := range ps {
			delete(held, p)
		}
		if err := l.Delete(ps); err != nil {
			t.Fatalf("delete %v: %v", ss, err)
		}
		check("delete " + ss[0])
	}
	check("empty")
	add("198.18.0.0/24", "198.18.1.0/24", "198.18.0.0/16", "198.0.0.0/8", "198.18.0.7/32")
	add("2001:2::/64", "2001:2::/100", "2001:2::/48", "2001:2:0:1::/64", "2001:2::7/128", "2001:2::/40", "2001::/16")
	add("198.18.0.0/24") // again: no new entry
	del("198.18.0.0/24") // its /24 bit stays: 198.18.1.0/24 is in the slot
	del("198.18.1.0/24")
	del("198.0.0.0/8", "2001:2::/48", "2001:2::/64", "2001::/16")
	del("2001:2::/40")
	del("2001:2::/100", "2001:2:0:1::/64", "203.0.113.0/24") // the last one was never there
	add("198.18.0.8/32", "2001:2::8/128")                    // hosts bits stay: 198.18.0.7 and 2001:2::7 are in their slots
	del("198.18.0.7/32", "2001:2::7/128")
	del("198.18.0.8/32", "2001:2::8/128") // the last hosts of their slots: the bits go
	// Room for 8 IPv6 prefixes, none left: 9 do not fit.
	var es []bmaps.Entry
	for i := 0; i < 9; i++ {
		es = append(es, bmaps.Entry{Prefix: netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 0, 0, 0, byte(i)}), 64+i)})
	}
	if err := l.Add(es); err == nil {
		t.Fatal("an Add of 9 IPv6 prefixes into room for 8 succeeded")
	}
	check("refused add")
}
