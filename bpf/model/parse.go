// Package model is Bulwark's decision procedure written a second time, in
// pure Go and its own way: the same parse rules, decision order and bucket
// rounding as bpf/bulwark.c specifies, but a linear scan of the configured
// rules instead of the compiled port tables, and exact integer arithmetic
// instead of the datapath's 64-bit words. It shares only the policy and
// packet types with the loader. The differential tests run every packet
// through both and require the same action and reason.
package model

import (
	"encoding/binary"
	"net/netip"
)

// ParseResult is the outcome of parsing a frame.
type ParseResult int

// Parse results, as in bpf/parse.h.
const (
	ParseOK ParseResult = iota
	ParseNonIP
	ParseMalformed
)

// Protocol numbers the datapath looks at.
const (
	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58
)

const (
	maxVLANTags = 3
	maxIPv6Ext  = 8
	tcpSYN      = 0x02
	tcpACK      = 0x10
)

// Packet is what the decision needs from a frame.
type Packet struct {
	Family       int        // 4 or 6 once the IP header parsed, else 0
	Src          netip.Addr // IPv4 or IPv6 source
	Proto        uint8      // L4 protocol, after IPv6 extension headers
	NonFirstFrag bool       // no L4 header: L3 decisions only
	FirstFrag    bool       // offset 0, more to come: lengths reach past it
	TCPFlags     uint8
	DPort        uint16
	L3Off, L4Off int // where the IP and L4 headers start in the frame
}

// tinyTCPFragment reports a TCP fragment at offset 8 bytes (one unit),
// which the datapath calls malformed by choice (RFC 1858): it can only
// complete a datagram whose first fragment held under 20 bytes of TCP.
func tinyTCPFragment(proto uint8, offsetUnits uint16) bool {
	return proto == ProtoTCP && offsetUnits == 1
}

// SYNOnly reports a TCP segment with SYN set and ACK clear.
func (p *Packet) SYNOnly() bool {
	return p.Proto == ProtoTCP && !p.NonFirstFrag && p.TCPFlags&(tcpSYN|tcpACK) == tcpSYN
}

// Parse parses an Ethernet frame exactly as the XDP program does.
func Parse(frame []byte) (Packet, ParseResult) {
	var p Packet
	if len(frame) < 14 {
		return p, ParseMalformed
	}
	ethertype := binary.BigEndian.Uint16(frame[12:14])
	off := 14
	for i := 0; i < maxVLANTags; i++ {
		if ethertype != 0x8100 && ethertype != 0x88a8 {
			break
		}
		if off+4 > len(frame) {
			return p, ParseMalformed
		}
		ethertype = binary.BigEndian.Uint16(frame[off+2 : off+4])
		off += 4
	}
	if ethertype == 0x8100 || ethertype == 0x88a8 {
		return p, ParseMalformed
	}

	var rem int
	var r ParseResult
	p.L3Off = off
	switch ethertype {
	case 0x0800:
		off, rem, r = parseIPv4(frame, off, &p)
	case 0x86dd:
		off, rem, r = parseIPv6(frame, off, &p)
	default:
		return p, ParseNonIP
	}
	if r != ParseOK {
		return p, r
	}
	p.L4Off = off
	return p, parseL4(frame, off, rem, &p)
}

func parseIPv4(frame []byte, off int, p *Packet) (int, int, ParseResult) {
	if off+20 > len(frame) {
		return off, 0, ParseMalformed
	}
	h := frame[off:]
	if h[0]>>4 != 4 || h[0]&0x0f < 5 {
		return off, 0, ParseMalformed
	}
	hlen := int(h[0]&0x0f) * 4
	tot := int(binary.BigEndian.Uint16(h[2:4]))
	avail := len(frame) - off
	if hlen > avail || tot < hlen || tot > avail {
		return off, 0, ParseMalformed
	}
	p.Family = 4
	p.Src = netip.AddrFrom4([4]byte(h[12:16]))
	p.Proto = h[9]
	flags := binary.BigEndian.Uint16(h[6:8])
	offset, more := flags&0x1fff, flags&0x2000 != 0
	p.NonFirstFrag = offset != 0
	p.FirstFrag = offset == 0 && more
	if tinyTCPFragment(p.Proto, offset) {
		return off, 0, ParseMalformed
	}
	return off + hlen, tot - hlen, ParseOK
}

func parseIPv6(frame []byte, off int, p *Packet) (int, int, ParseResult) {
	if off+40 > len(frame) {
		return off, 0, ParseMalformed
	}
	h := frame[off:]
	if h[0]>>4 != 6 {
		return off, 0, ParseMalformed
	}
	off += 40
	avail := len(frame) - off
	plen := int(binary.BigEndian.Uint16(h[4:6]))
	if plen > avail {
		return off, 0, ParseMalformed
	}
	if plen == 0 && h[6] == 0 { // a jumbogram (RFC 2675): the rest of the frame
		plen = avail
	}
	p.Family = 6
	p.Src = netip.AddrFrom16([16]byte(h[8:24]))
	nh := h[6]

	for i := 0; i < maxIPv6Ext+1; i++ {
		switch nh {
		case 0, 43, 60, 44, 51:
		default:
			p.Proto = nh
			return off, plen, ParseOK
		}
		if i == maxIPv6Ext {
			return off, 0, ParseMalformed
		}
		if off+4 > len(frame) || plen < 8 {
			return off, 0, ParseMalformed
		}
		ext := frame[off:]
		var l int
		switch nh {
		case 44:
			l = 8
		case 51:
			l = (int(ext[1]) + 2) * 4
		default:
			l = (int(ext[1]) + 1) * 8
		}
		if l > plen {
			return off, 0, ParseMalformed
		}
		if nh == 44 {
			fo := binary.BigEndian.Uint16(ext[2:4])
			if offset := fo >> 3; offset != 0 {
				p.NonFirstFrag = true
				p.Proto = ext[0]
				if tinyTCPFragment(p.Proto, offset) {
					return off, 0, ParseMalformed
				}
				return off, 0, ParseOK
			}
			p.FirstFrag = fo&1 != 0 // else an atomic fragment: a whole packet
		}
		nh = ext[0]
		plen -= l
		off += l
	}
	p.Proto = nh
	return off, plen, ParseOK
}

func parseL4(frame []byte, off, rem int, p *Packet) ParseResult {
	if p.NonFirstFrag {
		return ParseOK
	}
	// What the header must hold, and the most its own length may claim:
	// in a first fragment that length runs on into the later fragments.
	limit := rem
	if p.FirstFrag {
		limit = 1 << 16
	}
	switch p.Proto {
	case ProtoTCP:
		if off+20 > len(frame) || rem < 20 {
			return ParseMalformed
		}
		hlen := int(frame[off+12]>>4) * 4
		if hlen < 20 || hlen > limit {
			return ParseMalformed
		}
		p.DPort = binary.BigEndian.Uint16(frame[off+2 : off+4])
		p.TCPFlags = frame[off+13]
	case ProtoUDP:
		if off+8 > len(frame) || rem < 8 {
			return ParseMalformed
		}
		switch ulen := int(binary.BigEndian.Uint16(frame[off+4 : off+6])); {
		case ulen == 0 && p.Family == 6: // the rest of the payload (RFC 2675; Linux)
		case ulen < 8, ulen > limit:
			return ParseMalformed
		}
		p.DPort = binary.BigEndian.Uint16(frame[off+2 : off+4])
	case ProtoICMP, ProtoICMPv6:
		if off+8 > len(frame) || rem < 8 {
			return ParseMalformed
		}
	}
	return ParseOK
}
