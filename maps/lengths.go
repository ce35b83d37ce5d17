package maps

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/bulwark-filter/bulwark/bpf"
)

// The datapath finds a list prefix by probing only the lengths that can
// hold it (bpf/lists.h): a slot mask per IPv4 /slot4 (or per hash of an
// IPv6 /slot6) for the lengths from the slot's own to the longest prefix,
// for IPv6 a mid mask per hash of a /mid6 for the lengths from mid6 to
// slot6 - 1, and a list-wide short mask for the shorter ones. Bits stand
// for lengths longest first. Hosts are counted as lengths too (32, 128):
// in the IPv4 slot mask's and the IPv6 mid mask's hosts bit, without
// which the datapath skips the host hash.
const (
	slot4     = int(bpf.BulwarkLimitsLIST_SLOT4)
	slot6     = int(bpf.BulwarkLimitsLIST_SLOT6)
	mid6      = int(bpf.BulwarkLimitsLIST_MID6)
	slot6Bits = int(bpf.BulwarkLimitsLIST_SLOT6HASH_BITS)
	// The hosts bits, as SLOT4_HOSTS and MID6_HOSTS in bpf/lists.h.
	slot4Hosts = uint64(1) << 31
	mid6Hosts  = uint64(1) << 63
)

// slot6Of is the IPv6 slot of an address: its first 8 bytes, as the datapath
// loads them (little-endian), by Fibonacci hashing to slot6Bits bits, as
// slot6 in bpf/lists.h.
func slot6Of(a [16]byte) uint32 {
	return uint32(binary.LittleEndian.Uint64(a[:8]) * 0x9e3779b97f4a7c15 >> (64 - slot6Bits))
}

// mid6Of is the IPv6 mid slot of an address: the same hash of its first 4
// bytes, as mid6 in bpf/lists.h.
func mid6Of(a [16]byte) uint32 {
	return uint32(uint64(binary.LittleEndian.Uint32(a[:4])) * 0x9e3779b97f4a7c15 >> (64 - slot6Bits))
}

// maskKey names one mask: a slot's (short and mid false), an IPv6 mid
// slot's (mid), or the list's short mask of a family (slot 0).
type maskKey struct {
	v6, short, mid bool
	slot           uint32 // IPv4: the first two address bytes; IPv6: slot6Of or mid6Of
}

// lenKey is one length of one mask.
type lenKey struct {
	mask maskKey
	bits uint8
}

// lenOf is the mask and length of a normalised prefix (a host's length is
// its family's address length).
func lenOf(p netip.Prefix) lenKey {
	a := p.Addr().AsSlice()
	k := lenKey{bits: uint8(p.Bits())}
	k.mask.v6 = len(a) == 16
	switch {
	case k.mask.v6 && p.Bits() == 128:
		k.mask.mid, k.mask.slot = true, mid6Of(p.Addr().As16())
	case !k.mask.v6 && p.Bits() >= slot4:
		k.mask.slot = uint32(a[0])<<8 | uint32(a[1])
	case k.mask.v6 && p.Bits() >= slot6:
		k.mask.slot = slot6Of(p.Addr().As16())
	case k.mask.v6 && p.Bits() >= mid6:
		k.mask.mid, k.mask.slot = true, mid6Of(p.Addr().As16())
	default:
		k.mask.short = true
	}
	return k
}

// bit is the length's bit in its mask: the mask's longest length is bit 0,
// a host's is the hosts bit.
func (k lenKey) bit() uint64 {
	top := 31
	switch {
	case k.host():
		if k.mask.v6 {
			return mid6Hosts
		}
		return slot4Hosts
	case k.mask.short && k.mask.v6:
		top = mid6 - 1
	case k.mask.mid:
		top = slot6 - 1
	case k.mask.short:
		top = slot4 - 1
	case k.mask.v6:
		top = 127
	}
	return 1 << (top - int(k.bits))
}

// host tells whether the length is a host's.
func (k lenKey) host() bool { return int(k.bits) == 128 || !k.mask.v6 && k.bits == 32 }

// hostsIn is the host length whose bit mask m holds (32 or 128), or 0 if
// it holds none.
func (m maskKey) hostsIn() int {
	switch {
	case m.mid:
		return 128
	case !m.v6 && !m.short:
		return 32
	}
	return 0
}

// span is the lengths a mask covers (without its hosts bit).
func (m maskKey) span() (lo, hi int) {
	switch {
	case m.short && m.v6:
		return 0, mid6 - 1
	case m.mid:
		return mid6, slot6 - 1
	case m.short:
		return 0, slot4 - 1
	case m.v6:
		return slot6, 127
	default:
		return slot4, 31
	}
}

// maskOf is mask m as l.lens counts it, with the lengths of extra set too.
// set.mu must be held.
func (l *List) maskOf(m maskKey, extra map[lenKey]bool) uint64 {
	var bits uint64
	lo, hi := m.span()
	for n := lo; n <= hi; n++ {
		k := lenKey{m, uint8(n)}
		if l.lens[k] > 0 || extra[k] {
			bits |= k.bit()
		}
	}
	if h := m.hostsIn(); h != 0 {
		if k := (lenKey{m, uint8(h)}); l.lens[k] > 0 || extra[k] {
			bits |= k.bit()
		}
	}
	return bits
}

// writeMasks writes the masks named in ms from l.lens, with the lengths of
// extra set too. set.mu must be held.
func (l *List) writeMasks(ms map[maskKey]bool, extra map[lenKey]bool) error {
	short := false
	var k4, k6, km []uint32
	var v4 []uint32
	var v6, vm []uint64
	for m := range ms {
		switch {
		case m.short:
			short = true
		case m.mid:
			km, vm = append(km, m.slot), append(vm, l.maskOf(m, extra))
		case m.v6:
			k6, v6 = append(k6, m.slot), append(v6, l.maskOf(m, extra))
		default:
			k4, v4 = append(k4, m.slot), append(v4, uint32(l.maskOf(m, extra)))
		}
	}
	if err := batchPut(l.slots4, k4, v4); err != nil {
		return fmt.Errorf("%s list: write IPv4 length masks: %w", l.name, err)
	}
	if err := batchPut(l.slots6, k6, v6); err != nil {
		return fmt.Errorf("%s list: write IPv6 length masks: %w", l.name, err)
	}
	if err := batchPut(l.mid6, km, vm); err != nil {
		return fmt.Errorf("%s list: write IPv6 mid length masks: %w", l.name, err)
	}
	if !short {
		return nil
	}
	v := bpf.BulwarkListShort{
		V4: uint32(l.maskOf(maskKey{short: true}, extra)),
		V6: l.maskOf(maskKey{v6: true, short: true}, extra),
	}
	if err := l.short.Put(uint32(0), &v); err != nil {
		return fmt.Errorf("%s list: write short length mask: %w", l.name, err)
	}
	return nil
}

// rewriteMasks writes every mask from l.lens, clearing those of no length
// (a Set made over maps that may hold entries and stale masks).
func (l *List) rewriteMasks() error {
	v4 := make([]uint32, 1<<slot4)
	v6 := make([]uint64, 1<<slot6Bits)
	vm := make([]uint64, 1<<slot6Bits)
	for k := range l.lens {
		switch {
		case k.mask.short:
		case k.mask.mid:
			vm[k.mask.slot] |= k.bit()
		case k.mask.v6:
			v6[k.mask.slot] |= k.bit()
		default:
			v4[k.mask.slot] |= uint32(k.bit())
		}
	}
	if err := batchPut(l.slots4, seq(len(v4)), v4); err != nil {
		return fmt.Errorf("%s list: write IPv4 length masks: %w", l.name, err)
	}
	if err := batchPut(l.slots6, seq(len(v6)), v6); err != nil {
		return fmt.Errorf("%s list: write IPv6 length masks: %w", l.name, err)
	}
	if err := batchPut(l.mid6, seq(len(vm)), vm); err != nil {
		return fmt.Errorf("%s list: write IPv6 mid length masks: %w", l.name, err)
	}
	return l.writeMasks(map[maskKey]bool{{short: true}: true}, nil)
}

// seq is the array indexes 0 to n-1.
func seq(n int) []uint32 {
	out := make([]uint32, n)
	for i := range out {
		out[i] = uint32(i)
	}
	return out
}
