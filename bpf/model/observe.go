package model

import "encoding/binary"

// UDPShape is the shape the datapath compares between a source's successive
// UDP datagrams (bpf/sources.h, observe): destination port, frame length
// and the payload word at offset 32 (at 0 in a datagram too short for that;
// none in one of under 4 bytes or whose payload starts past byte 1024),
// mixed as the datapath mixes them. ok is
// false for a packet that is not counted (not UDP, or a fragment after the
// first).
func UDPShape(p *Packet, frame []byte) (shape uint32, ok bool) {
	if p.Proto != ProtoUDP || p.NonFirstFrag {
		return 0, false
	}
	var word uint32
	off := p.L4Off + 8
	if off+36 <= len(frame) {
		off += 32
	}
	if p.L4Off+8 <= 1024 && off+4 <= len(frame) {
		word = binary.LittleEndian.Uint32(frame[off:])
	}
	return (uint32(p.DPort)<<16 | uint32(len(frame))&0xffff) ^ word*2654435761, true
}
