package maps

import (
	"testing"

	"github.com/cilium/ebpf"

	"github.com/bulwark-filter/bulwark/bpf"
)

// Masks reads the list's length masks: the non-zero slot masks by slot
// (IPv4, IPv6, IPv6 mid), and the short masks.
func (l *List) Masks() (v4 map[uint32]uint32, v6 map[uint32]uint64, mid map[uint32]uint64, short4 uint32, short6 uint64, err error) {
	if v4, err = nonZero[uint32](l.slots4); err != nil {
		return
	}
	if v6, err = nonZero[uint64](l.slots6); err != nil {
		return
	}
	if mid, err = nonZero[uint64](l.mid6); err != nil {
		return
	}
	var sh bpf.BulwarkListShort
	err = l.short.Lookup(uint32(0), &sh)
	return v4, v6, mid, sh.V4, sh.V6, err
}

// nonZero is an array's non-zero elements by index.
func nonZero[V uint32 | uint64](m *ebpf.Map) (map[uint32]V, error) {
	out := map[uint32]V{}
	var k uint32
	var v V
	it := m.Iterate()
	for it.Next(&k, &v) {
		if v != 0 {
			out[k] = v
		}
	}
	return out, it.Err()
}

// CapVerdictFilter caps at bits bits (a power of two, 512 or more) the
// verdict filters first built during t.
func CapVerdictFilter(t *testing.T, bits uint64) {
	old := filterMaxBits
	filterMaxBits = bits
	t.Cleanup(func() { filterMaxBits = old })
}
