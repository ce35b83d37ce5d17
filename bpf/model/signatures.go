package model

import (
	"bytes"
	"encoding/binary"
	"math/big"

	"github.com/bulwark-filter/bulwark/maps"
)

// sigSlot is one slot of the model's signature table: the rule and its
// aggregate bucket (exact, like every bucket of the model).
type sigSlot struct {
	sig    maps.Signature
	bucket big.Int
	set    bool
}

// SigCounter is what a signature matched and dropped in the model.
type SigCounter struct{ Matched, Dropped uint64 }

// SetSignature puts sig into slot (0 to maps.MaxSignatures-1) with a full
// bucket and zeroed counters, as the agent writes a slot.
func (m *Model) SetSignature(slot int, sig maps.Signature) {
	m.sigs[slot] = sigSlot{sig: sig, set: true}
	m.sigCounts[slot] = SigCounter{}
}

// DeleteSignature empties slot.
func (m *Model) DeleteSignature(slot int) { m.sigs[slot] = sigSlot{} }

// SignatureCounter is what slot matched and dropped since it was set.
func (m *Model) SignatureCounter(slot int) SigCounter { return m.sigCounts[slot] }

// SigFields are a packet's header fields as signatures see them, each
// present only where the packet has it. Detection (agent/sigdetect) reads
// its samples with FieldsOf and tries signatures with Matches.
type SigFields struct {
	proto, ttl   uint8
	iplen        uint16
	v4           bool
	df, ipidZero bool
	ports        bool // TCP or UDP with its header here
	sport, dport uint16
	tcp          bool // TCP with its header here
	flags        uint8
	window       uint16
	optlen       uint8
	icmp         bool // ICMP or ICMPv6 with its header here
	icmpType     uint8
	data         []byte // up to maps.SigData bytes after the fixed L4 header
}

// FieldsOf parses frame and reads its fields; false when it is not an IP
// packet the datapath parses.
func FieldsOf(frame []byte) (SigFields, bool) {
	p, r := Parse(frame)
	if r != ParseOK {
		return SigFields{}, false
	}
	return fieldsOf(frame, &p), true
}

// fieldsOf reads the fields of a frame that parsed as p.
func fieldsOf(frame []byte, p *Packet) SigFields {
	ip := frame[p.L3Off:]
	f := SigFields{proto: p.Proto}
	if p.Family == 4 {
		f.v4 = true
		f.iplen = binary.BigEndian.Uint16(ip[2:4])
		f.ipidZero = binary.BigEndian.Uint16(ip[4:6]) == 0
		f.df = ip[6]&0x40 != 0
		f.ttl = ip[8]
	} else {
		f.iplen = binary.BigEndian.Uint16(ip[4:6]) + 40
		f.ttl = ip[7]
	}
	if p.NonFirstFrag {
		return f
	}
	l4 := frame[p.L4Off:]
	fixed := 0
	switch p.Proto {
	case ProtoTCP:
		f.ports, f.tcp, fixed = true, true, 20
		f.optlen = l4[12]>>4*4 - 20
		f.flags = l4[13]
		f.window = binary.BigEndian.Uint16(l4[14:16])
	case ProtoUDP:
		f.ports, fixed = true, 8
	case ProtoICMP, ProtoICMPv6:
		f.icmp, fixed = true, 8
		f.icmpType = l4[0]
	default:
		return f
	}
	if f.ports {
		f.sport = binary.BigEndian.Uint16(l4[0:2])
		f.dport = binary.BigEndian.Uint16(l4[2:4])
	}
	if len(l4) > fixed {
		f.data = append([]byte(nil), l4[fixed:min(len(l4), fixed+maps.SigData)]...)
	}
	return f
}

func within(v uint16, r maps.Range) bool { return r.Lo <= v && v <= r.Hi }

// Matches checks every field the signature names; a field the packet does
// not have fails.
func (f *SigFields) Matches(s *maps.Signature) bool {
	checks := []struct {
		field maps.SigField
		ok    func() bool
	}{
		{maps.SigProto, func() bool { return f.proto == s.Proto }},
		{maps.SigTTL, func() bool { return within(uint16(f.ttl), s.TTL) }},
		{maps.SigIPLen, func() bool { return within(f.iplen, s.IPLen) }},
		{maps.SigDF, func() bool { return f.v4 && f.df == s.DF }},
		{maps.SigIPID, func() bool { return f.v4 && f.ipidZero == s.IPIDZero }},
		{maps.SigDPort, func() bool { return f.ports && within(f.dport, s.DPort) }},
		{maps.SigSPort, func() bool { return f.ports && within(f.sport, s.SPort) }},
		{maps.SigTCPFlags, func() bool { return f.tcp && f.flags&s.TCPMask == s.TCPValue }},
		{maps.SigWindow, func() bool { return f.tcp && within(f.window, s.Window) }},
		{maps.SigTCPOptLen, func() bool { return f.tcp && f.optlen == s.TCPOptLen }},
		{maps.SigICMPType, func() bool { return f.icmp && f.icmpType == s.ICMPType }},
		{maps.SigDataPrefix, func() bool {
			if (!f.ports && !f.tcp && !f.icmp) || len(f.data) < len(s.Data) {
				return false
			}
			for i := range s.Data {
				if (f.data[i]^s.Data[i])&s.DataMask[i] != 0 {
					return false
				}
			}
			return true
		}},
	}
	for _, c := range checks {
		if s.Fields&c.field != 0 && !c.ok() {
			return false
		}
	}
	return true
}

// signature runs the signature step: the slot that drops the packet, or
// -1 when it goes on. Count-only slots are counted and passed over; the
// first enforcing match decides.
func (m *Model) signature(frame []byte, p *Packet, now uint64) int {
	var f *SigFields
	for slot := range m.sigs {
		sl := &m.sigs[slot]
		if !sl.set || (sl.sig.ExpiresNS != 0 && sl.sig.ExpiresNS <= now) {
			continue
		}
		if f == nil {
			ff := fieldsOf(frame, p)
			f = &ff
		}
		if !f.Matches(&sl.sig) {
			continue
		}
		m.sigCounts[slot].Matched++
		switch sl.sig.Action {
		case maps.SigCount:
			continue
		case maps.SigLimit:
			d := m.depthsOf(maps.Limit{PPS: sl.sig.PPS, Burst: sl.sig.Burst})
			if gcraTake(&sl.bucket, now, interval(1, sl.sig.PPS, 1000), &d.pps) {
				return -1
			}
		}
		m.sigCounts[slot].Dropped++
		return slot
	}
	return -1
}

// Exact is the signature that names every field the packet has, each at
// the packet's value (ranges of one value; data under a full mask).
func (f *SigFields) Exact() maps.Signature {
	one := func(v uint16) maps.Range { return maps.Range{Lo: v, Hi: v} }
	s := maps.Signature{Fields: maps.SigProto | maps.SigTTL | maps.SigIPLen, Proto: f.proto, TTL: one(uint16(f.ttl)),
		IPLen: one(f.iplen)}
	if f.v4 {
		s.Fields |= maps.SigDF | maps.SigIPID
		s.DF, s.IPIDZero = f.df, f.ipidZero
	}
	if f.ports {
		s.Fields |= maps.SigDPort | maps.SigSPort
		s.DPort, s.SPort = one(f.dport), one(f.sport)
	}
	if f.tcp {
		s.Fields |= maps.SigTCPFlags | maps.SigWindow | maps.SigTCPOptLen
		s.TCPMask, s.TCPValue, s.Window, s.TCPOptLen = 0xff, f.flags, one(f.window), f.optlen
	}
	if f.icmp {
		s.Fields |= maps.SigICMPType
		s.ICMPType = f.icmpType
	}
	if len(f.data) > 0 {
		s.Fields |= maps.SigDataPrefix
		s.Data = f.data
		s.DataMask = bytes.Repeat([]byte{0xff}, len(f.data))
	}
	return s
}
