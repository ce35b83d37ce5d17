package netns

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// Magic starts every payload the Receiver counts, so stray traffic (e.g.
// neighbour discovery) is never mistaken for test traffic.
var Magic = [8]byte{'B', 'W', 'K', '-', 'E', '2', 'E', 0}

// Payload is Magic followed by a sequence number and padding to size bytes
// (at least 16).
func Payload(seq uint64, size int) []byte {
	if size < 16 {
		size = 16
	}
	p := make([]byte, size)
	copy(p, Magic[:])
	binary.BigEndian.PutUint64(p[8:], seq)
	return p
}

func csumAdd(sum uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	return sum
}

func csumFold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = (sum >> 16) + (sum & 0xffff)
	}
	return ^uint16(sum)
}

func ether(dst, src net.HardwareAddr, typ uint16) []byte {
	h := make([]byte, 14)
	copy(h[0:6], dst)
	copy(h[6:12], src)
	binary.BigEndian.PutUint16(h[12:], typ)
	return h
}

func udpHeader(sport, dport uint16, payload []byte) []byte {
	u := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(payload)))
	return append(u, payload...)
}

// UDP4 is an Ethernet/IPv4/UDP frame with valid checksums.
func UDP4(dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	u := udpHeader(sport, dport, payload)
	s, d := src.As4(), dst.As4()
	ps := csumAdd(0, s[:])
	ps = csumAdd(ps, d[:])
	ps += 17 + uint32(len(u))
	c := csumFold(csumAdd(ps, u))
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:], c)

	ip := make([]byte, 20)
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(u)))
	ip[8] = 64
	ip[9] = 17
	copy(ip[12:16], s[:])
	copy(ip[16:20], d[:])
	binary.BigEndian.PutUint16(ip[10:], csumFold(csumAdd(0, ip)))

	f := ether(dstMAC, srcMAC, 0x0800)
	f = append(f, ip...)
	return append(f, u...)
}

// ExtHeader is an IPv6 extension header for UDP6: protocol number 0
// (hop-by-hop), 43 (routing) or 60 (destination options); each is 8 bytes
// of padding options.
type ExtHeader uint8

// IPv6 extension header numbers.
const (
	ExtHopByHop ExtHeader = 0
	ExtRouting  ExtHeader = 43
	ExtDestOpts ExtHeader = 60
)

// UDP6 is an Ethernet/IPv6/[extension headers]/UDP frame with a valid UDP
// checksum.
func UDP6(dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, sport, dport uint16, payload []byte, ext ...ExtHeader) []byte {
	u := udpHeader(sport, dport, payload)
	s, d := src.As16(), dst.As16()
	ps := csumAdd(0, s[:])
	ps = csumAdd(ps, d[:])
	ps += 17 + uint32(len(u))
	c := csumFold(csumAdd(ps, u))
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:], c)

	var exts []byte
	for i, e := range ext {
		next := byte(17)
		if i+1 < len(ext) {
			next = byte(ext[i+1])
		}
		h := make([]byte, 8)
		h[0] = next
		h[1] = 0 // length in 8-byte units beyond the first
		if e == ExtRouting {
			// Type 4 (segment routing) with segments left 0: skipped.
			h[2], h[3] = 4, 0
		} else {
			// A PadN option filling the 6 bytes.
			h[2], h[3] = 1, 4
		}
		exts = append(exts, h...)
	}
	ip := make([]byte, 40)
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(len(exts)+len(u)))
	ip[6] = 17
	if len(ext) > 0 {
		ip[6] = byte(ext[0])
	}
	ip[7] = 64
	copy(ip[8:24], s[:])
	copy(ip[24:40], d[:])

	f := ether(dstMAC, srcMAC, 0x86dd)
	f = append(f, ip...)
	f = append(f, exts...)
	return append(f, u...)
}
