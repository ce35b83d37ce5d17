package maps

import (
	"errors"
	"fmt"
	"math/bits"
	"net/netip"

	"github.com/cilium/ebpf"

	"github.com/bulwark-filter/bulwark/bpf"
)

// Probe is a packet to trace through the datapath's decision (Set.Trace).
type Probe struct {
	Src   netip.Addr
	Proto Protocol // tcp, udp, icmp (icmpv6 for an IPv6 source); "": a packet no rule of a protocol matches
	Port  uint16   // destination port, tcp and udp
	SYN   bool     // tcp: SYN set, ACK clear (the first packet of a connection)
	Len   uint32   // the frame's length in bytes, for byte limits
}

// Bucket is one limit a traced packet meets, with its bucket's state now.
type Bucket struct {
	Rule       int          // rule id: 0 the default, RuleAggregate, RuleNewSources or a configured rule
	Key        netip.Prefix // whose bucket: the source or its aggregate prefix; invalid for the global new-sources ceiling
	Exists     bool         // the bucket has state (a missing one is full)
	Limit      Limit        // the limit as configured, before any multiplier
	MultPM     uint64       // the multiplier of its rates, per mille (class and throttle)
	Tokens     float64      // packets the bucket admits now; -1: no packet rate
	ByteTokens float64      // bytes the bucket admits now; -1: no byte rate
	Conforms   bool         // the probe fits in the bucket now
	Reached    bool         // the datapath takes from it for this packet (an earlier exceeded limit stops it)
}

// Trace is the decision the datapath would make now for a Probe, step by
// step in its order (bpf/bulwark.c), read from the maps without changing
// them: nothing is paid from a bucket and no state is created.
type Trace struct {
	Monitor     bool          // monitor mode: a drop is counted as would_drop and the packet passes
	Allow       *Entry        // the live allow-list entry that matches, nil for none
	Block       *Entry        // the live block-list entry that matches
	Verdict     *VerdictEntry // the live verdict on the source
	Tracked     bool          // the source has per-source state
	ClassID     uint32        // the source's class (1-based, as in Policy.Classes); 0: none
	ClassMultPM uint32        // the class's multiplier per mille (1000 outside every class)
	Limits      []Bucket      // in the order the datapath takes from them
	Decision    Decision
}

// Trace tells which step of the decision would decide p now, at monotonic
// time now, and the state of each step. It reads the maps only.
func (s *Set) Trace(p Probe, now uint64) (*Trace, error) {
	if !p.Src.IsValid() || p.Src.Zone() != "" {
		return nil, fmt.Errorf("trace: invalid source %v", p.Src)
	}
	p.Src = p.Src.Unmap()
	// The settings as the datapath reads them, from the map.
	var st bpf.BulwarkDpSettings
	if err := s.m.Settings.Lookup(uint32(0), &st); err != nil {
		return nil, fmt.Errorf("read settings: %w", err)
	}
	t := &Trace{Monitor: Mode(st.Mode) == ModeMonitor, ClassMultPM: 1000}
	decide := func(a Action, r Reason, detail uint32) (*Trace, error) {
		if a == ActionDrop && t.Monitor {
			a = ActionWouldDrop
		}
		t.Decision = Decision{Action: a, Reason: r, Detail: detail}
		return t, nil
	}
	var err error
	// 1. allow list, 2. block list
	if t.Allow, err = s.Allow.match(p.Src, now); err != nil {
		return nil, err
	}
	if t.Allow != nil {
		return decide(ActionPass, ReasonAllowlist, t.Allow.ListID)
	}
	if t.Block, err = s.Block.match(p.Src, now); err != nil {
		return nil, err
	}
	if t.Block != nil {
		return decide(ActionDrop, ReasonBlocklist, t.Block.ListID)
	}

	// 3. dynamic verdicts
	prefix := int(st.Ipv6Prefix)
	if prefix == 0 {
		prefix = 64
	}
	key := bpf.BulwarkSrcKey{Addr: SourceKey(p.Src, prefix)}
	srcPfx := SourceFromKey(key.Addr, prefix)
	multPM := uint64(1000)
	if st.Present&presentVerdicts != 0 {
		if t.Verdict, err = s.liveVerdict(key, srcPfx, now); err != nil {
			return nil, err
		}
	}
	if t.Verdict != nil && t.Verdict.Action == VerdictBlock {
		return decide(ActionDrop, ReasonVerdict, 0)
	}
	if t.Verdict != nil && t.Verdict.Action == VerdictThrottle {
		multPM = uint64(st.ThrottlePm)
	}

	// 4. per-source state, under the ceiling on new sources
	var src bpf.BulwarkSrcState
	if err := s.m.Sources.Lookup(key, &src); err == nil {
		t.Tracked = true
	} else if !errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil, fmt.Errorf("read source %s: %w", srcPfx, err)
	}
	if !t.Tracked {
		nr, err := s.rule(RuleNewSources)
		if err != nil {
			return nil, err
		}
		if nr.Pps != 0 {
			var g bpf.BulwarkRuleState
			if err := s.m.NewSources.Lookup(uint32(0), &g); err != nil {
				return nil, fmt.Errorf("read the new-sources bucket: %w", err)
			}
			b := bucket(RuleNewSources, netip.Prefix{}, true, nr, g.TatPps, 0, now, 1, 1000)
			b.Reached = true
			t.Limits = append(t.Limits, b)
			if !b.Conforms {
				return decide(ActionDrop, ReasonRatelimit, uint32(RuleNewSources))
			}
		}
	}

	// the class multiplier, then the rules, the default and the aggregate
	if t.ClassID, t.ClassMultPM, err = s.class(st.Present, p.Src); err != nil {
		return nil, err
	}
	cmult := uint64(t.ClassMultPM)
	multPM = max(multPM*cmult/1000, 1)
	ruleA, ruleB, err := s.rulesFor(&st, p)
	if err != nil {
		return nil, err
	}
	reached := true
	over := -1
	take := func(b Bucket) {
		b.Reached = reached
		t.Limits = append(t.Limits, b)
		if reached && !b.Conforms {
			over, reached = b.Rule, false
		}
	}
	for _, id := range []uint32{ruleA, ruleB} {
		if id == 0 {
			continue
		}
		r, err := s.rule(int(id))
		if err != nil {
			return nil, err
		}
		var rs bpf.BulwarkRuleState
		err = s.m.RuleBuckets.Lookup(bpf.BulwarkRuleKey{Src: key, Rule: id}, &rs)
		if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil, fmt.Errorf("read the bucket of rule %d for %s: %w", id, srcPfx, err)
		}
		take(bucket(int(id), srcPfx, err == nil, r, rs.TatPps, rs.TatBps, now, p.Len, multPM))
	}
	def, err := s.rule(0)
	if err != nil {
		return nil, err
	}
	if def.Pps != 0 || def.Bps != 0 {
		take(bucket(0, srcPfx, t.Tracked, def, src.TatPps, src.TatBps, now, p.Len, multPM))
	}
	if st.Present&presentAggregate != 0 {
		agg, err := s.rule(RuleAggregate)
		if err != nil {
			return nil, err
		}
		ak := aggregateKey(&st, p.Src)
		var rs bpf.BulwarkRuleState
		err = s.m.AggBuckets.Lookup(ak, &rs)
		if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil, fmt.Errorf("read the aggregate bucket of %s: %w", srcPfx, err)
		}
		aggPfx := aggregatePrefix(&st, p.Src)
		take(bucket(RuleAggregate, aggPfx, err == nil, agg, rs.TatPps, rs.TatBps, now, p.Len, max(cmult, 1)))
	}
	if over >= 0 {
		return decide(ActionDrop, ReasonRatelimit, uint32(over))
	}
	return decide(ActionPass, ReasonPassed, 0)
}

// LiveVerdict is the verdict in force on addr's source at now, nil for none.
func (s *Set) LiveVerdict(addr netip.Addr, now uint64) (*VerdictEntry, error) {
	prefix := s.IPv6Prefix()
	key := bpf.BulwarkSrcKey{Addr: SourceKey(addr, prefix)}
	return s.liveVerdict(key, SourceFromKey(key.Addr, prefix), now)
}

func (s *Set) liveVerdict(key bpf.BulwarkSrcKey, src netip.Prefix, now uint64) (*VerdictEntry, error) {
	var v bpf.BulwarkVerdict
	err := s.m.Verdicts.Lookup(key, &v)
	if errors.Is(err, ebpf.ErrKeyNotExist) || (err == nil && v.ExpiresNs <= now) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the verdict of %s: %w", src, err)
	}
	return &VerdictEntry{src, VerdictAction(v.Action), v.ExpiresNs, Origin(v.Origin), v.Score}, nil
}

// rule reads rule id from the rules map.
func (s *Set) rule(id int) (bpf.BulwarkRule, error) {
	var r bpf.BulwarkRule
	if err := s.m.Rules.Lookup(uint32(id), &r); err != nil {
		return r, fmt.Errorf("read rule %d: %w", id, err)
	}
	return r, nil
}

// bucket is the state of a GCRA bucket of rule r whose theoretical arrival
// times are tatPPS and tatBPS, for a packet of size bytes at now, with the
// rates at multPM per mille (bpf/ratelimit.h take_rule).
func bucket(id int, key netip.Prefix, exists bool, r bpf.BulwarkRule, tatPPS, tatBPS, now uint64, size uint32, multPM uint64) Bucket {
	b := Bucket{Rule: id, Key: key, Exists: exists, MultPM: multPM, Tokens: -1, ByteTokens: -1, Conforms: true,
		Limit: Limit{PPS: r.Pps, Burst: burstOf(r.PpsDepthNs, r.Pps), BytesPerSec: r.Bps, ByteBurst: burstOf(r.BpsDepthNs, r.Bps)}}
	if r.Pps != 0 {
		var ok bool
		b.Tokens, ok = gcraState(tatPPS, now, 1, r.Pps, r.PpsDepthNs, multPM)
		b.Conforms = b.Conforms && ok
	}
	if r.Bps != 0 {
		var ok bool
		b.ByteTokens, ok = gcraState(tatBPS, now, uint64(size), r.Bps, r.BpsDepthNs, multPM)
		b.Conforms = b.Conforms && ok
	}
	return b
}

// gcraState is what a bucket (tat, rate per second at multPM per mille,
// depth in ns) holds at now, in units of the rate, and whether cost fits:
// the test of bpf/ratelimit.h gcra_take, without paying.
func gcraState(tat, now, cost, rate, depth, multPM uint64) (float64, bool) {
	base := max(tat, now)
	fits := base+gcraInterval(cost, rate, multPM)-now <= depth
	unitNS := 1e12 / (float64(rate) * float64(multPM)) // ns one unit takes to refill
	return (float64(depth) - float64(base-now)) / unitNS, fits
}

// gcraInterval is bpf/ratelimit.h gcra_interval.
func gcraInterval(cost, rate, multPM uint64) uint64 {
	div := rate * multPM
	if div == 0 {
		return 0
	}
	return cost * 1_000_000_000 * 1000 / div
}

// burstOf is the burst of a depth in ns at rate per second (Depth's inverse).
func burstOf(depth, rate uint64) uint64 {
	if rate == 0 {
		return 0
	}
	return uint64(float64(depth)*float64(rate)/1e9 + 0.5)
}

// aggregateKey is the aggregate bucket's key of src (bpf/ratelimit.h
// limit_aggregate).
func aggregateKey(st *bpf.BulwarkDpSettings, src netip.Addr) bpf.BulwarkSrcKey {
	return bpf.BulwarkSrcKey{Addr: aggregatePrefix(st, src).Addr().As16()}
}

// aggregatePrefix is the prefix of src whose aggregate bucket it takes from.
func aggregatePrefix(st *bpf.BulwarkDpSettings, src netip.Addr) netip.Prefix {
	if src.Is4() {
		return prefixOfMask(src, uint64(st.Agg4Mask), 0, 32)
	}
	return prefixOfMask(src, st.Agg6MaskHi, st.Agg6MaskLo, 128)
}

// prefixOfMask masks a with the mask words (the datapath's memory order)
// and returns it with the mask's length.
func prefixOfMask(a netip.Addr, hi, lo uint64, bitLen int) netip.Prefix {
	n := bits.OnesCount64(hi) + bits.OnesCount64(lo)
	return netip.PrefixFrom(a, min(n, bitLen)).Masked()
}

// class is the class of src and its multiplier per mille (bpf/ratelimit.h
// class_mult).
func (s *Set) class(present uint32, src netip.Addr) (uint32, uint32, error) {
	var cv bpf.BulwarkClassValue
	var err error
	switch {
	case src.Is4() && present&presentClasses4 != 0:
		err = s.m.Classes4.Lookup(lpm4(netip.PrefixFrom(src, 32)), &cv)
	case src.Is6() && present&presentClasses6 != 0:
		err = s.m.Classes6.Lookup(lpm6(netip.PrefixFrom(src, 128)), &cv)
	default:
		return 0, 1000, nil
	}
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return 0, 1000, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("read the class of %s: %w", src, err)
	}
	if cv.MultPm == 0 {
		return cv.ClassId, 1000, nil
	}
	return cv.ClassId, cv.MultPm, nil
}

// rulesFor is bpf/sources.h rules_for: the rule of the packet's protocol
// and port, and that of its SYN table or ICMP.
func (s *Set) rulesFor(st *bpf.BulwarkDpSettings, p Probe) (a, b uint32, err error) {
	ports := st.Present&presentPortRules != 0
	switch {
	case p.Proto == ProtoTCP && ports:
		if a, err = s.portRule(TableTCP, p.Port); err != nil || !p.SYN {
			return a, 0, err
		}
		b, err = s.portRule(TableTCPSYN, p.Port)
		return a, b, err
	case p.Proto == ProtoUDP && ports:
		a, err = s.portRule(TableUDP, p.Port)
		return a, 0, err
	case p.Proto == ProtoICMP && p.Src.Is4():
		return 0, st.IcmpRule, nil
	case (p.Proto == ProtoICMPv6 || p.Proto == ProtoICMP) && p.Src.Is6():
		return 0, st.Icmp6Rule, nil
	}
	return 0, 0, nil
}

// portRule is the rule id of port in port table table, 0 for none.
func (s *Set) portRule(table int, port uint16) (uint32, error) {
	idx := uint32((table*65536 + int(port)) / portsPerSlot)
	var slot bpf.BulwarkPortSlot
	if err := s.m.PortRules.Lookup(idx, &slot); err != nil {
		return 0, fmt.Errorf("read port rules: %w", err)
	}
	return uint32(slot.Rule[int(port)%portsPerSlot]), nil
}

// match is the live entry of the list that matches src at now, as the
// datapath finds it (bpf/lists.h): the host, else the longest live prefix.
// It asks every length, longest first, by exact lookups: a diagnostic, so
// it does not rely on the length masks the datapath reads.
func (l *List) match(src netip.Addr, now uint64) (*Entry, error) {
	for bits := src.BitLen(); bits >= 0; bits-- {
		p, err := src.Prefix(bits)
		if err != nil {
			return nil, fmt.Errorf("%s list: %s/%d: %w", l.name, src, bits, err)
		}
		e, ok, err := l.Lookup(p)
		if err != nil {
			return nil, err
		}
		if ok && (e.ExpiresNS == 0 || e.ExpiresNS > now) {
			return &e, nil
		}
	}
	return nil, nil
}
