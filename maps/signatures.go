package maps

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/bulwark-filter/bulwark/bpf"
)

// Map names of the signature table (bpf/maps.h).
const (
	MapSignatures = "signatures"
	MapSigBuckets = "sig_buckets"
	MapSigStats   = "sig_stats"
)

// MaxSignatures is how many slots the datapath's signature table has.
const MaxSignatures = int(bpf.BulwarkLimitsMAX_SIGNATURES)

// SigData is how many bytes after the fixed L4 header a signature can match.
const SigData = int(bpf.BulwarkLimitsSIG_DATA)

const presentSignatures = uint32(bpf.BulwarkPresentBitsPRESENT_SIGNATURES)

// SigField is a set of the header fields a signature matches
// (bpf/common.h enum sig_fields).
type SigField uint32

// The fields; docs/datapath.md ("Attack signatures") defines each.
const (
	SigProto      = SigField(bpf.BulwarkSigFieldsSIG_PROTO)
	SigDPort      = SigField(bpf.BulwarkSigFieldsSIG_DPORT)
	SigSPort      = SigField(bpf.BulwarkSigFieldsSIG_SPORT)
	SigTTL        = SigField(bpf.BulwarkSigFieldsSIG_TTL)
	SigIPLen      = SigField(bpf.BulwarkSigFieldsSIG_IPLEN)
	SigDF         = SigField(bpf.BulwarkSigFieldsSIG_DF)
	SigIPID       = SigField(bpf.BulwarkSigFieldsSIG_IPID)
	SigTCPFlags   = SigField(bpf.BulwarkSigFieldsSIG_TCP_FLAGS)
	SigWindow     = SigField(bpf.BulwarkSigFieldsSIG_WINDOW)
	SigTCPOptLen  = SigField(bpf.BulwarkSigFieldsSIG_TCP_OPTLEN)
	SigICMPType   = SigField(bpf.BulwarkSigFieldsSIG_ICMP_TYPE)
	SigDataPrefix = SigField(bpf.BulwarkSigFieldsSIG_DATA_PREFIX)
	sigFieldsAll  = SigField(bpf.BulwarkSigFieldsSIG_FIELDS_ALL)
)

// SigAction is what a matching signature does (enum sig_action).
type SigAction uint32

// Signature actions.
const (
	SigCount = SigAction(bpf.BulwarkSigActionSIG_ACTION_COUNT) // counted only (shadow)
	SigDrop  = SigAction(bpf.BulwarkSigActionSIG_ACTION_DROP)
	SigLimit = SigAction(bpf.BulwarkSigActionSIG_ACTION_LIMIT) // one aggregate bucket
)

func (a SigAction) String() string {
	switch a {
	case SigCount:
		return "count"
	case SigDrop:
		return "drop"
	case SigLimit:
		return "limit"
	}
	return fmt.Sprintf("sig_action(%d)", uint32(a))
}

// Range is an inclusive range of a header field.
type Range struct{ Lo, Hi uint16 }

// Signature is one masked-header rule of the datapath's signature table.
// Only the fields named in Fields are compared.
type Signature struct {
	Fields    SigField
	Action    SigAction
	PPS       uint64 // SigLimit: packets per second of the aggregate bucket
	Burst     uint64 // SigLimit: its depth in packets
	ExpiresNS uint64 // CLOCK_MONOTONIC; 0 = never

	Proto     uint8
	DPort     Range
	SPort     Range
	TTL       Range // at most 255
	IPLen     Range
	Window    Range
	DF        bool
	IPIDZero  bool
	TCPMask   uint8
	TCPValue  uint8
	TCPOptLen uint8
	ICMPType  uint8
	Data      []byte // at most SigData bytes that must be present ...
	DataMask  []byte // ... compared under this mask (same length)
}

// Validate refuses a signature the datapath cannot hold or that can never
// match.
func (s *Signature) Validate() error {
	if s.Fields == 0 {
		return errors.New("a signature needs at least one field")
	}
	if s.Fields&^sigFieldsAll != 0 {
		return fmt.Errorf("unknown signature fields %#x", uint32(s.Fields&^sigFieldsAll))
	}
	switch s.Action {
	case SigCount, SigDrop:
	case SigLimit:
		if s.PPS == 0 || s.Burst == 0 {
			return errors.New("a limiting signature needs pps and burst above 0")
		}
	default:
		return fmt.Errorf("signature action %d", uint32(s.Action))
	}
	for _, r := range []struct {
		f    SigField
		name string
		r    Range
		max  uint16
	}{{SigDPort, "dst port", s.DPort, 65535}, {SigSPort, "src port", s.SPort, 65535},
		{SigTTL, "ttl", s.TTL, 255}, {SigIPLen, "ip length", s.IPLen, 65535}, {SigWindow, "window", s.Window, 65535}} {
		if s.Fields&r.f != 0 && (r.r.Lo > r.r.Hi || r.r.Hi > r.max) {
			return fmt.Errorf("%s range %d-%d (at most %d)", r.name, r.r.Lo, r.r.Hi, r.max)
		}
	}
	if s.Fields&SigTCPFlags != 0 && s.TCPValue&^s.TCPMask != 0 {
		return fmt.Errorf("tcp flags value %#x has bits outside mask %#x", s.TCPValue, s.TCPMask)
	}
	if s.Fields&SigTCPOptLen != 0 && (s.TCPOptLen > 40 || s.TCPOptLen%4 != 0) {
		return fmt.Errorf("tcp options length %d: a multiple of 4 up to 40", s.TCPOptLen)
	}
	if s.Fields&SigDataPrefix != 0 {
		if len(s.Data) == 0 || len(s.Data) > SigData || len(s.DataMask) != len(s.Data) {
			return fmt.Errorf("data prefix of %d bytes with a %d-byte mask: want 1-%d bytes and a mask as long",
				len(s.Data), len(s.DataMask), SigData)
		}
	}
	return nil
}

// String lists the signature's match in the words agent/sigspec reads.
func (s *Signature) String() string {
	var parts []string
	add := func(f SigField, format string, a ...any) {
		if s.Fields&f != 0 {
			parts = append(parts, fmt.Sprintf(format, a...))
		}
	}
	rng := func(r Range) string {
		if r.Lo == r.Hi {
			return fmt.Sprint(r.Lo)
		}
		return fmt.Sprintf("%d-%d", r.Lo, r.Hi)
	}
	proto := fmt.Sprint(s.Proto)
	if name, ok := map[uint8]string{1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6"}[s.Proto]; ok {
		proto = name
	}
	add(SigProto, "protocol=%s", proto)
	add(SigDPort, "dst_port=%s", rng(s.DPort))
	add(SigSPort, "src_port=%s", rng(s.SPort))
	add(SigTTL, "ttl=%s", rng(s.TTL))
	add(SigIPLen, "ip_length=%s", rng(s.IPLen))
	add(SigDF, "df=%t", s.DF)
	add(SigIPID, "ip_id_zero=%t", s.IPIDZero)
	add(SigTCPFlags, "tcp_flags=%#02x/%#02x", s.TCPValue, s.TCPMask)
	add(SigWindow, "window=%s", rng(s.Window))
	add(SigTCPOptLen, "tcp_options_length=%d", s.TCPOptLen)
	add(SigICMPType, "icmp_type=%d", s.ICMPType)
	add(SigDataPrefix, "data=%x/%x", s.Data, s.DataMask)
	return strings.Join(parts, " ")
}

func sigValue(s *Signature) bpf.BulwarkSigRule {
	v := bpf.BulwarkSigRule{
		Fields: uint32(s.Fields), Action: uint32(s.Action), ExpiresNs: s.ExpiresNS,
		DportLo: s.DPort.Lo, DportHi: s.DPort.Hi, SportLo: s.SPort.Lo, SportHi: s.SPort.Hi,
		LenLo: s.IPLen.Lo, LenHi: s.IPLen.Hi, WinLo: s.Window.Lo, WinHi: s.Window.Hi,
		Proto: s.Proto, TtlLo: uint8(s.TTL.Lo), TtlHi: uint8(s.TTL.Hi),
		Df: uint8(b2u(s.DF)), IpidZero: uint8(b2u(s.IPIDZero)),
		TcpMask: s.TCPMask, TcpValue: s.TCPValue, Optlen: s.TCPOptLen, IcmpType: s.ICMPType,
		DataLen: uint8(len(s.Data)),
	}
	if s.Action == SigLimit {
		v.Pps, v.DepthNs = s.PPS, Depth(s.Burst, s.PPS)
	}
	copy(v.Data[:], s.Data)
	copy(v.DataMask[:], s.DataMask)
	return v
}

// PutSignature writes sig into slot, its bucket full and its counters
// zeroed. A slot is checked in order: a lower slot decides first.
func (s *Set) PutSignature(slot int, sig Signature) error {
	if slot < 0 || slot >= MaxSignatures {
		return fmt.Errorf("signature slot %d out of range 0-%d", slot, MaxSignatures-1)
	}
	if err := sig.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.setPresentLocked(presentSignatures); err != nil {
		return err
	}
	// Empty the slot first, so no packet sees the new rule with the old
	// rule's bucket or counters.
	if err := s.m.Signatures.Put(uint32(slot), bpf.BulwarkSigRule{}); err != nil {
		return fmt.Errorf("clear signature %d: %w", slot, err)
	}
	if err := s.m.SigBuckets.Put(uint32(slot), uint64(0)); err != nil {
		return fmt.Errorf("reset signature bucket %d: %w", slot, err)
	}
	zero := make([]bpf.BulwarkRuleCounter, ebpf.MustPossibleCPU())
	if err := s.m.SigStats.Put(uint32(slot), zero); err != nil {
		return fmt.Errorf("reset signature counters %d: %w", slot, err)
	}
	if err := s.m.Signatures.Put(uint32(slot), sigValue(&sig)); err != nil {
		return fmt.Errorf("write signature %d: %w", slot, err)
	}
	return nil
}

// DeleteSignature empties slot.
func (s *Set) DeleteSignature(slot int) error {
	if slot < 0 || slot >= MaxSignatures {
		return fmt.Errorf("signature slot %d out of range 0-%d", slot, MaxSignatures-1)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.m.Signatures.Put(uint32(slot), bpf.BulwarkSigRule{}); err != nil {
		return fmt.Errorf("delete signature %d: %w", slot, err)
	}
	var v bpf.BulwarkSigRule
	for i := 0; i < MaxSignatures; i++ {
		if err := s.m.Signatures.Lookup(uint32(i), &v); err != nil {
			return fmt.Errorf("read signature %d: %w", i, err)
		}
		if v.Fields != 0 {
			return nil
		}
	}
	s.settings.Present &^= presentSignatures
	return s.writeSettingsLocked()
}

// SignatureCounter returns the packets slot matched and dropped (or would
// drop), summed over CPUs, since its signature was written.
func (s *Set) SignatureCounter(slot int) (RuleCounter, error) {
	c, err := sumCounter(s.m.SigStats, uint32(slot))
	if err != nil {
		return c, fmt.Errorf("read signature counters %d: %w", slot, err)
	}
	return c, nil
}
