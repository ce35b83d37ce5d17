package maps

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/cilium/ebpf"

	"github.com/bulwark-filter/bulwark/bpf"
)

// The datapath finds a list prefix by probing only the lengths that can
// hold it (bpf/lists.h): a slot mask per IPv4 /slot4 or IPv6 /slot6 for the
// lengths from the slot's own to the longest prefix, and a list-wide short
// mask for the shorter ones. Bits stand for lengths longest first.
const (
	slot4 = int(bpf.BulwarkLimitsLIST_SLOT4)
	slot6 = int(bpf.BulwarkLimitsLIST_SLOT6)
)

// maskKey names one mask: a slot's (short false) or the list's short mask
// of a family (slot 0).
type maskKey struct {
	v6, short bool
	slot      uint64 // IPv4: the first two address bytes; IPv6: the first 8 bytes, little-endian
}

// lenKey is one length of one mask.
type lenKey struct {
	mask maskKey
	bits uint8
}

// lenOf is the mask and length of a normalised prefix that is no host.
func lenOf(p netip.Prefix) lenKey {
	a := p.Addr().AsSlice()
	k := lenKey{bits: uint8(p.Bits())}
	k.mask.v6 = len(a) == 16
	switch {
	case !k.mask.v6 && p.Bits() >= slot4:
		k.mask.slot = uint64(a[0])<<8 | uint64(a[1])
	case k.mask.v6 && p.Bits() >= slot6:
		k.mask.slot = binary.LittleEndian.Uint64(a[:8])
	default:
		k.mask.short = true
	}
	return k
}

// bit is the length's bit in its mask: the mask's longest length is bit 0.
func (k lenKey) bit() uint64 {
	top := 31
	switch {
	case k.mask.short && k.mask.v6:
		top = slot6 - 1
	case k.mask.short:
		top = slot4 - 1
	case k.mask.v6:
		top = 127
	}
	return 1 << (top - int(k.bits))
}

// span is the lengths a mask covers.
func (m maskKey) span() (lo, hi int) {
	switch {
	case m.short && m.v6:
		return 0, slot6 - 1
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
	return bits
}

// writeMasks writes the masks named in ms from l.lens, with the lengths of
// extra set too. set.mu must be held.
func (l *List) writeMasks(ms map[maskKey]bool, extra map[lenKey]bool) error {
	short := false
	for m := range ms {
		if m.short {
			short = true
			continue
		}
		bits := l.maskOf(m, extra)
		var err error
		switch {
		case !m.v6:
			err = l.slots4.Put(uint32(m.slot), uint32(bits))
		case bits == 0:
			if err = l.slots6.Delete(m.slot); errors.Is(err, ebpf.ErrKeyNotExist) {
				err = nil
			}
		default:
			err = l.slots6.Put(m.slot, bits)
			if errors.Is(err, syscall.E2BIG) {
				// A new slot means a new prefix, and the slots hold as many
				// as the prefixes: the prefixes have no room either.
				return &FullError{Map: mapName(l.nets6), Max: l.nets6.MaxEntries(), Err: err}
			}
		}
		if err != nil {
			return fmt.Errorf("%s list: write length mask: %w", l.name, err)
		}
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
	ms := map[maskKey]bool{{short: true}: true}
	keys := make([]uint32, 1<<slot4)
	vals := make([]uint32, 1<<slot4)
	for i := range keys {
		keys[i] = uint32(i)
	}
	for k := range l.lens {
		switch {
		case k.mask.short:
		case k.mask.v6:
			ms[k.mask] = true
		default:
			vals[k.mask.slot] |= uint32(k.bit())
		}
	}
	if _, err := l.slots4.BatchUpdate(keys, vals, nil); err != nil {
		return fmt.Errorf("%s list: write IPv4 length masks: %w", l.name, err)
	}
	var slot, bits uint64
	it := l.slots6.Iterate()
	for it.Next(&slot, &bits) {
		ms[maskKey{v6: true, slot: slot}] = true // of no length: deleted
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("%s list: read IPv6 length masks: %w", l.name, err)
	}
	return l.writeMasks(ms, nil)
}
