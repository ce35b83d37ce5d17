package maps

import "github.com/bulwark-filter/bulwark/bpf"

// Masks reads the list's length masks: the non-zero slot masks by slot,
// and the short masks.
func (l *List) Masks() (v4 map[uint32]uint32, v6 map[uint32]uint64, short4 uint32, short6 uint64, err error) {
	v4, v6 = map[uint32]uint32{}, map[uint32]uint64{}
	var k4, m4 uint32
	it := l.slots4.Iterate()
	for it.Next(&k4, &m4) {
		if m4 != 0 {
			v4[k4] = m4
		}
	}
	if err = it.Err(); err != nil {
		return
	}
	var m6 uint64
	it = l.slots6.Iterate()
	for it.Next(&k4, &m6) {
		if m6 != 0 {
			v6[k4] = m6
		}
	}
	if err = it.Err(); err != nil {
		return
	}
	var sh bpf.BulwarkListShort
	err = l.short.Lookup(uint32(0), &sh)
	return v4, v6, sh.V4, sh.V6, err
}
