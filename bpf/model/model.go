package model

import (
	"fmt"
	"net/netip"

	"github.com/bulwark-filter/bulwark/maps"
)

// Decision is the outcome for one frame.
type Decision struct {
	Action maps.Action
	Reason maps.Reason
	Rule   int    // the rule over its limit (ReasonRatelimit), 0 = default
	ListID uint32 // the list that matched (ReasonAllowlist, ReasonBlocklist)
}

// Verdict is a dynamic verdict on a source.
type Verdict struct {
	Action    maps.VerdictAction
	ExpiresNS uint64
}

type bucketPair struct{ pps, bps uint64 }

type ruleKey struct {
	src  [16]byte
	rule int
}

// Model holds a policy, its lists and verdicts, and the per-source buckets,
// and decides frames the way the datapath does. Not safe for concurrent use.
type Model struct {
	policy     maps.Policy
	ports      *maps.PortTables
	allow      prefixSet
	block      prefixSet
	classes    []classEntry
	verdicts   map[[16]byte]Verdict
	sources    map[[16]byte]*bucketPair
	ruleBkts   map[ruleKey]*bucketPair
	aggBkts    map[[16]byte]*bucketPair
	newSources bucketPair
}

type classEntry struct {
	prefix netip.Prefix
	pm     uint32
}

// New builds a model of the datapath with this policy and these lists.
func New(p maps.Policy, allow, block []maps.Entry) (*Model, error) {
	pt, err := p.Compile()
	if err != nil {
		return nil, fmt.Errorf("compile policy: %w", err)
	}
	m := &Model{
		policy:   p,
		ports:    pt,
		allow:    newPrefixSet(allow),
		block:    newPrefixSet(block),
		verdicts: map[[16]byte]Verdict{},
		sources:  map[[16]byte]*bucketPair{},
		ruleBkts: map[ruleKey]*bucketPair{},
		aggBkts:  map[[16]byte]*bucketPair{},
	}
	for _, c := range p.Classes {
		for _, pfx := range c.CIDRs {
			m.classes = append(m.classes, classEntry{pfx.Masked(), maps.Permille(c.Multiplier)})
		}
	}
	return m, nil
}

// SetVerdict puts a verdict on the source that addr belongs to.
func (m *Model) SetVerdict(addr netip.Addr, v Verdict) {
	m.verdicts[maps.SourceKey(addr, m.policy.SourcePrefix())] = v
}

// Decide runs one frame through the decision order at time now (ns on the
// datapath's clock) and updates the buckets as the datapath would.
func (m *Model) Decide(frame []byte, now uint64) Decision {
	d := m.decide(frame, now)
	if d.Action == maps.ActionDrop && m.policy.Mode == maps.ModeMonitor {
		d.Action = maps.ActionWouldDrop
	}
	return d
}

func (m *Model) decide(frame []byte, now uint64) Decision {
	p, r := Parse(frame)
	switch r {
	case ParseNonIP:
		return Decision{Action: maps.ActionPass, Reason: maps.ReasonNonIP}
	case ParseMalformed:
		if p.Family != 0 {
			// The datapath tracks the source of a malformed packet whose
			// IP header parsed (its malformed count), under the same
			// ceiling on new sources.
			m.track(sourceKey(&p, m.policy.SourcePrefix()), now)
		}
		if m.policy.MalformedPass {
			return Decision{Action: maps.ActionPass, Reason: maps.ReasonMalformed}
		}
		return Decision{Action: maps.ActionDrop, Reason: maps.ReasonMalformed}
	}

	if id, ok := m.allow.lookup(p.Src, now); ok {
		return Decision{Action: maps.ActionPass, Reason: maps.ReasonAllowlist, ListID: id}
	}
	if id, ok := m.block.lookup(p.Src, now); ok {
		return Decision{Action: maps.ActionDrop, Reason: maps.ReasonBlocklist, ListID: id}
	}

	key := sourceKey(&p, m.policy.SourcePrefix())
	mult := uint64(1000)
	if v, ok := m.verdicts[key]; ok {
		if v.ExpiresNS > now {
			switch v.Action {
			case maps.VerdictBlock:
				return Decision{Action: maps.ActionDrop, Reason: maps.ReasonVerdict}
			case maps.VerdictThrottle:
				mult = uint64(m.policy.ThrottlePermille())
			}
		} else {
			delete(m.verdicts, key)
		}
	}

	src := m.track(key, now)
	if src == nil {
		return Decision{Action: maps.ActionDrop, Reason: maps.ReasonRatelimit, Rule: maps.RuleNewSources}
	}
	cmult := uint64(m.classMult(p.Src))
	mult = mult * cmult / 1000
	if mult == 0 {
		mult = 1
	}
	length := uint64(len(frame))

	var ruleA, ruleB int
	if !p.NonFirstFrag {
		switch {
		case p.Proto == ProtoTCP:
			ruleA = int(m.ports.Table[maps.TableTCP][p.DPort])
			if p.SYNOnly() {
				ruleB = int(m.ports.Table[maps.TableTCPSYN][p.DPort])
			}
		case p.Proto == ProtoUDP:
			ruleA = int(m.ports.Table[maps.TableUDP][p.DPort])
		case p.Proto == ProtoICMP && p.Family == 4:
			ruleB = int(m.ports.ICMPRule)
		case p.Proto == ProtoICMPv6 && p.Family == 6:
			ruleB = int(m.ports.ICMPv6Rule)
		}
	}
	for _, id := range []int{ruleA, ruleB} {
		if id == 0 {
			continue
		}
		rk := ruleKey{key, id}
		b := m.ruleBkts[rk]
		if b == nil {
			b = &bucketPair{}
			m.ruleBkts[rk] = b
		}
		if !take(m.policy.Rules[id-1].Limit, b, now, length, mult) {
			return Decision{Action: maps.ActionDrop, Reason: maps.ReasonRatelimit, Rule: id}
		}
	}
	if m.policy.Default.Active() && !take(m.policy.Default, src, now, length, mult) {
		return Decision{Action: maps.ActionDrop, Reason: maps.ReasonRatelimit, Rule: 0}
	}
	if m.policy.Aggregate.Active() {
		// Scaled by the class, not by a throttle verdict.
		p4, p6 := m.policy.AggregatePrefixes()
		bits := p6
		if p.Family == 4 {
			bits = p4
		}
		pfx, _ := p.Src.Prefix(bits)
		k := pfx.Addr().As16()
		if p.Family == 4 {
			k = maps.SourceKey(pfx.Addr(), 128)
		}
		b := m.aggBkts[k]
		if b == nil {
			b = &bucketPair{}
			m.aggBkts[k] = b
		}
		if !take(m.policy.Aggregate, b, now, length, cmult) {
			return Decision{Action: maps.ActionDrop, Reason: maps.ReasonRatelimit, Rule: maps.RuleAggregate}
		}
	}
	return Decision{Action: maps.ActionPass, Reason: maps.ReasonPassed}
}

// sourceKey is the datapath's tracking key: by the packet's family, so an
// IPv6 source of the form ::ffff:a.b.c.d stays an IPv6 source.
func sourceKey(p *Packet, v6prefix int) [16]byte {
	if p.Family == 4 {
		return maps.SourceKey(p.Src, v6prefix)
	}
	pfx, _ := p.Src.Prefix(v6prefix)
	return pfx.Addr().As16()
}

// track returns the source's state, created if new; a new source first
// takes a token from the ceiling on new sources, and over it nothing is
// created (nil).
func (m *Model) track(key [16]byte, now uint64) *bucketPair {
	if src := m.sources[key]; src != nil {
		return src
	}
	if l := m.policy.NewSources; l.PPS > 0 &&
		!gcraTake(&m.newSources.pps, now, Interval(1, l.PPS, 1000), maps.Depth(l.Burst, l.PPS)) {
		return nil
	}
	src := &bucketPair{}
	m.sources[key] = src
	return src
}

func (m *Model) classMult(a netip.Addr) uint32 {
	best, bits := uint32(0), -1
	for _, c := range m.classes {
		if c.prefix.Contains(a) && c.prefix.Bits() > bits {
			best, bits = c.pm, c.prefix.Bits()
		}
	}
	if best == 0 {
		return 1000
	}
	return best
}

// take is ratelimit.h's take_rule: the packet bucket, then the byte bucket.
func take(l maps.Limit, b *bucketPair, now, length, mult uint64) bool {
	if l.PPS > 0 && !gcraTake(&b.pps, now, Interval(1, l.PPS, mult), maps.Depth(l.Burst, l.PPS)) {
		return false
	}
	if l.BytesPerSec > 0 && !gcraTake(&b.bps, now, Interval(length, l.BytesPerSec, mult), maps.Depth(l.ByteBurst, l.BytesPerSec)) {
		return false
	}
	return true
}

func gcraTake(tat *uint64, now, interval, depth uint64) bool {
	base := max(*tat, now)
	next := base + interval
	if next-now > depth {
		return false
	}
	*tat = next
	return true
}

// Interval is the time cost units take to refill at rate per second scaled
// by multPM/1000, as the datapath computes it.
func Interval(cost, rate, multPM uint64) uint64 {
	div := rate * multPM
	if div == 0 {
		return 0
	}
	return cost * 1_000_000_000 * 1000 / div
}

// prefixSet mirrors a list: hosts in a hash, prefixes in a trie. As in the
// kernel, the trie answers with its longest match; when that entry has
// expired the lookup is repeated above it, at most lpmExpiredRetries times.
type prefixSet struct {
	hosts map[netip.Addr]maps.Entry
	nets  []maps.Entry
}

func newPrefixSet(es []maps.Entry) prefixSet {
	s := prefixSet{hosts: map[netip.Addr]maps.Entry{}}
	for _, e := range es {
		if e.Prefix.IsSingleIP() {
			s.hosts[e.Prefix.Addr()] = e
		} else {
			s.nets = append(s.nets, e)
		}
	}
	return s
}

func (s prefixSet) lookup(a netip.Addr, now uint64) (uint32, bool) {
	live := func(e maps.Entry) bool { return e.ExpiresNS == 0 || e.ExpiresNS > now }
	if e, ok := s.hosts[a]; ok && live(e) {
		return e.ListID, true
	}
	limit := a.BitLen()
	for try := 0; try <= lpmExpiredRetries; try++ {
		var best *maps.Entry
		for i := range s.nets {
			e := &s.nets[i]
			if e.Prefix.Bits() <= limit && e.Prefix.Contains(a) && (best == nil || e.Prefix.Bits() > best.Prefix.Bits()) {
				best = e
			}
		}
		if best == nil {
			return 0, false
		}
		if live(*best) {
			return best.ListID, true
		}
		if best.Prefix.Bits() == 0 {
			return 0, false
		}
		limit = best.Prefix.Bits() - 1
	}
	return 0, false
}

// lpmExpiredRetries is LPM_EXPIRED_RETRIES of bpf/common.h.
const lpmExpiredRetries = 4
