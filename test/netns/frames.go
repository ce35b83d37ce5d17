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

// ChecksumAdd adds b, as big-endian 16-bit words, to an Internet checksum
// sum (RFC 1071); an odd last byte is padded with zero.
func ChecksumAdd(sum uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	return sum
}

// ChecksumFold folds sum to 16 bits and complements it: the checksum.
func ChecksumFold(sum uint32) uint16 {
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

// udpDatagram is a UDP header and payload with the checksum over the
// pseudo-header of addresses src and dst (4 or 16 bytes each).
func udpDatagram(src, dst []byte, sport, dport uint16, payload []byte) []byte {
	u := udpHeader(sport, dport, payload)
	ps := ChecksumAdd(ChecksumAdd(0, src), dst) + 17 + uint32(len(u))
	c := ChecksumFold(ChecksumAdd(ps, u))
	if c == 0 {
		c = 0xffff // zero means no checksum in UDP
	}
	binary.BigEndian.PutUint16(u[6:], c)
	return u
}

// UDP4 is an Ethernet/IPv4/UDP frame with valid checksums.
func UDP4(dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	s, d := src.As4(), dst.As4()
	u := udpDatagram(s[:], d[:], sport, dport, payload)
	return IPv4(dstMAC, srcMAC, src, dst, 17, u)
}

// IPv4 is an Ethernet/IPv4 frame of protocol proto whose payload is l4,
// copied as it is: no L4 checksum or length is filled in, so it can carry
// an upper layer the datapath must refuse (e.g. a TCP header cut short).
// The IPv4 header is 20 bytes with a valid checksum.
func IPv4(dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, proto uint8, l4 []byte) []byte {
	s, d := src.As4(), dst.As4()
	ip := make([]byte, 20)
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
	ip[8] = 64
	ip[9] = proto
	copy(ip[12:16], s[:])
	copy(ip[16:20], d[:])
	binary.BigEndian.PutUint16(ip[10:], ChecksumFold(ChecksumAdd(0, ip)))

	f := ether(dstMAC, srcMAC, 0x0800)
	f = append(f, ip...)
	return append(f, l4...)
}

// VLAN tag protocol identifiers for Tagged.
const (
	TPID8021Q  uint16 = 0x8100 // IEEE 802.1Q (customer tag)
	TPID8021AD uint16 = 0x88a8 // IEEE 802.1ad (service tag, QinQ)
)

// Tagged is a copy of the Ethernet frame with a VLAN tag for each of tpids
// inserted after the MAC addresses, outermost first; the tags get VLAN ids
// 100, 101, ... and priority 0, and the last is followed by the frame's
// own EtherType.
func Tagged(frame []byte, tpids ...uint16) []byte {
	f := make([]byte, 0, len(frame)+4*len(tpids))
	f = append(f, frame[:12]...)
	for i, tpid := range tpids {
		f = binary.BigEndian.AppendUint16(f, tpid)
		f = binary.BigEndian.AppendUint16(f, uint16(100+i))
	}
	return append(f, frame[12:]...)
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
	s, d := src.As16(), dst.As16()
	u := udpDatagram(s[:], d[:], sport, dport, payload)

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
