package testutil

import (
	"encoding/binary"
	"net/netip"
)

// ScanSketch is what bpf/scans.h should hold for a set of connection
// attempts, worked out again from its description for tests: ports hashed
// into 128 bits by the top 7 bits of murmur3's 32-bit finaliser, addresses
// into 64 bits by the top 6 of the finaliser of the address (IPv4: its
// 32-bit word as the CPU loads it, little endian; IPv6: its four words
// folded as a polynomial in 0x9e3779b1).
type ScanSketch struct {
	Ports [2]uint64
	Addrs uint64
}

// Port records an attempt on port p.
func (s *ScanSketch) Port(p uint16) {
	h := fmix32(uint32(p)) >> 25
	s.Ports[h>>6] |= 1 << (h & 63)
}

// Addr records an attempt to a.
func (s *ScanSketch) Addr(a netip.Addr) {
	var x uint32
	if a.Is4() {
		b := a.As4()
		x = binary.LittleEndian.Uint32(b[:])
	} else {
		b := a.As16()
		for i := 0; i < 16; i += 4 {
			x = x*0x9e3779b1 + binary.LittleEndian.Uint32(b[i:])
		}
	}
	s.Addrs |= 1 << (fmix32(x) >> 26)
}

// Or is the union of s and o.
func (s ScanSketch) Or(o ScanSketch) ScanSketch {
	return ScanSketch{[2]uint64{s.Ports[0] | o.Ports[0], s.Ports[1] | o.Ports[1]}, s.Addrs | o.Addrs}
}

// fmix32 is murmur3's 32-bit finaliser.
func fmix32(x uint32) uint32 {
	x ^= x >> 16
	x *= 0x85ebca6b
	x ^= x >> 13
	x *= 0xc2b2ae35
	x ^= x >> 16
	return x
}
