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
	TCPFlags     uint8
	DPort        uint16
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
	if binary.BigEndian.Uint16(h[6:8])&0x1fff != 0 {
		p.NonFirstFrag = true
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
	if plen == 0 {
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
		if nh == 44 && binary.BigEndian.Uint16(ext[2:4])&0xfff8 != 0 {
			p.NonFirstFrag = true
			p.Proto = ext[0]
			return off, 0, ParseOK
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
	switch p.Proto {
	case ProtoTCP:
		if off+20 > len(frame) || rem < 20 {
			return ParseMalformed
		}
		doff := int(frame[off+12] >> 4)
		if doff < 5 || doff*4 > rem {
			return ParseMalformed
		}
		p.DPort = binary.BigEndian.Uint16(frame[off+2 : off+4])
		p.TCPFlags = frame[off+13]
	case ProtoUDP:
		if off+8 > len(frame) || rem < 8 {
			return ParseMalformed
		}
		ulen := int(binary.BigEndian.Uint16(frame[off+4 : off+6]))
		if ulen < 8 || ulen > rem {
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
