package model

import (
	"fmt"
	"math/big"
	"net/netip"
	"strconv"

	"github.com/bulwark-filter/bulwark/maps"
)

// Decision is the outcome for one frame.
type Decision struct {
	Action maps.Action
	Reason maps.Reason
	Rule   int    // the rule over its limit (ReasonRatelimit), 0 = default
	ListID uint32 // the list that matched (ReasonAllowlist, ReasonBlocklist)
	Slot   int    // the signature that dropped it (ReasonSignature)
}

// Verdict is a dynamic verdict on a source.
type Verdict struct {
	Action    maps.VerdictAction
	ExpiresNS uint64
}

// bucketPair is a packet bucket and a byte bucket, each its theoretical
// arrival time in ns, kept exactly (never wraps).
type bucketPair struct{ pps, bps big.Int }

type ruleKey struct {
	src  [16]byte
	rule int
}

// Model holds a policy, its lists and verdicts, and the per-source buckets,
// and decides frames the way the datapath is specified to. It shares only
// the policy and packet types with the code it checks: rules are found by a
// linear scan of the configured rules (not the loader's compiled port
// tables), source keys, per-mille multipliers and bucket depths are computed
// here, and every bucket is kept in exact integer arithmetic (math/big), so
// an overflow or a wrong rounding in the datapath or the loader shows as a
// divergence. Not safe for concurrent use.
type Model struct {
	policy     maps.Policy
	v6prefix   int
	throttlePM uint64
	depths     map[maps.Limit]depths
	allow      prefixSet
	block      prefixSet
	classes    []classEntry
	verdicts   map[[16]byte]Verdict
	sources    map[[16]byte]*bucketPair
	ruleBkts   map[ruleKey]*bucketPair
	aggBkts    map[[16]byte]*bucketPair
	newSources bucketPair
	sigs       [maps.MaxSignatures]sigSlot
	sigCounts  [maps.MaxSignatures]SigCounter
}

type classEntry struct {
	prefix netip.Prefix
	pm     uint64
}

// depths are a limit's bucket depths in ns: burst/rate seconds, rounded
// down to a whole ns as the datapath specifies.
type depths struct{ pps, bps big.Int }

// maxRules is how many rules the datapath takes besides the default: rule
// ids are a byte, and 0, 254 and 255 are taken (default, aggregate, new
// sources).
const maxRules = 253

// New builds a model of the datapath with this policy and these lists. It
// refuses, by its own checks, a policy the datapath cannot hold.
func New(p maps.Policy, allow, block []maps.Entry) (*Model, error) {
	if err := checkRules(p.Rules); err != nil {
		return nil, err
	}
	m := &Model{
		policy:     p,
		v6prefix:   p.IPv6Prefix,
		throttlePM: permille(p.ThrottleMultiplier),
		depths:     map[maps.Limit]depths{},
		allow:      newPrefixSet(allow),
		block:      newPrefixSet(block),
		verdicts:   map[[16]byte]Verdict{},
		sources:    map[[16]byte]*bucketPair{},
		ruleBkts:   map[ruleKey]*bucketPair{},
		aggBkts:    map[[16]byte]*bucketPair{},
	}
	if m.v6prefix == 0 {
		m.v6prefix = 64
	}
	if p.ThrottleMultiplier == 0 {
		m.throttlePM = 100
	}
	for _, c := range p.Classes {
		for _, pfx := range c.CIDRs {
			m.classes = append(m.classes, classEntry{pfx.Masked(), permille(c.Multiplier)})
		}
	}
	return m, nil
}

// checkRules refuses what the datapath cannot hold: too many rules, a rule
// without a rate, ports or flags where they mean nothing, and two rules
// that both match some packet in the same slot (a port table or the ICMP
// rule of a family). Checked pairwise on the configured ranges.
func checkRules(rules []maps.Rule) error {
	if len(rules) > maxRules {
		return fmt.Errorf("%d rules: the datapath holds %d", len(rules), maxRules)
	}
	for i, r := range rules {
		if r.Limit.PPS == 0 && r.Limit.BytesPerSec == 0 {
			return fmt.Errorf("rule %q: no rate", r.Name)
		}
		switch r.Protocol {
		case maps.ProtoTCP:
		case maps.ProtoUDP, maps.ProtoICMP, maps.ProtoICMPv6:
			if r.SYN {
				return fmt.Errorf("rule %q: syn on %s", r.Name, r.Protocol)
			}
			if len(r.Ports) > 0 && r.Protocol != maps.ProtoUDP {
				return fmt.Errorf("rule %q: ports on %s", r.Name, r.Protocol)
			}
		default:
			return fmt.Errorf("rule %q: protocol %q", r.Name, r.Protocol)
		}
		for _, pr := range r.Ports {
			if pr.Lo > pr.Hi {
				return fmt.Errorf("rule %q: port range %d-%d", r.Name, pr.Lo, pr.Hi)
			}
		}
		for _, q := range rules[:i] {
			if q.Protocol == r.Protocol && q.SYN == r.SYN && portsMeet(q.Ports, r.Ports) {
				return fmt.Errorf("rules %q and %q overlap", q.Name, r.Name)
			}
		}
	}
	return nil
}

// portsMeet reports whether two rules' port sets share a port (no ranges:
// every port).
func portsMeet(a, b []maps.PortRange) bool {
	if len(a) == 0 || len(b) == 0 {
		return true
	}
	for _, x := range a {
		for _, y := range b {
			if x.Lo <= y.Hi && y.Lo <= x.Hi {
				return true
			}
		}
	}
	return false
}

// permille is a multiplier in whole thousandths, rounded half up from the
// decimal the float was written as, at least 1.
func permille(mult float64) uint64 {
	r, ok := new(big.Rat).SetString(strconv.FormatFloat(mult, 'f', -1, 64))
	if !ok {
		return 1
	}
	r.Mul(r, big.NewRat(1000, 1))
	r.Add(r, big.NewRat(1, 2))
	q := new(big.Int).Quo(r.Num(), r.Denom())
	if q.Sign() <= 0 {
		return 1
	}
	if !q.IsUint64() {
		return ^uint64(0)
	}
	return q.Uint64()
}

// SetVerdict puts a verdict on the source that addr belongs to.
func (m *Model) SetVerdict(addr netip.Addr, v Verdict) {
	if addr.Is4In6() {
		addr = addr.Unmap()
	}
	m.verdicts[m.key(addr)] = v
}

// key is the source's tracking key: an IPv4 source as the 16 bytes of
// ::ffff:a.b.c.d, an IPv6 source masked to the configured prefix, both in
// one key space (as the datapath keeps them).
func (m *Model) key(a netip.Addr) [16]byte {
	if a.Is4() {
		return a.As16()
	}
	p, _ := a.Prefix(m.v6prefix)
	return p.Addr().As16()
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
			m.track(m.key(p.Src), now)
		}
		if m.policy.MalformedPass {
			return Decision{Action: maps.ActionPass, Reason: maps.ReasonMalformed}
		}
		return Decision{Action: maps.ActionDrop, Reason: maps.ReasonMalformed}
	}

	if id, ok := m.allow.lookup(p.Src, now); ok {
		return Decision{Action: maps.ActionPass, Reason: maps.ReasonAllowlist, ListID: id}
	}
	if slot := m.signature(frame, &p, now); slot >= 0 {
		return Decision{Action: maps.ActionDrop, Reason: maps.ReasonSignature, Slot: slot}
	}
	if id, ok := m.block.lookup(p.Src, now); ok {
		return Decision{Action: maps.ActionDrop, Reason: maps.ReasonBlocklist, ListID: id}
	}

	key := m.key(p.Src)
	mult := uint64(1000)
	if v, ok := m.verdicts[key]; ok {
		if v.ExpiresNS > now {
			switch v.Action {
			case maps.VerdictBlock:
				return Decision{Action: maps.ActionDrop, Reason: maps.ReasonVerdict}
			case maps.VerdictThrottle:
				mult = m.throttlePM
			}
		} else {
			delete(m.verdicts, key)
		}
	}

	src := m.track(key, now)
	if src == nil {
		return Decision{Action: maps.ActionDrop, Reason: maps.ReasonRatelimit, Rule: maps.RuleNewSources}
	}
	cmult := m.classMult(p.Src)
	mult = max(mult*cmult/1000, 1)
	length := uint64(len(frame))

	for _, id := range m.rulesFor(&p) {
		rk := ruleKey{key, id}
		b := m.ruleBkts[rk]
		if b == nil {
			b = &bucketPair{}
			m.ruleBkts[rk] = b
		}
		if !m.take(m.policy.Rules[id-1].Limit, b, now, length, mult) {
			return Decision{Action: maps.ActionDrop, Reason: maps.ReasonRatelimit, Rule: id}
		}
	}
	if m.policy.Default.Active() && !m.take(m.policy.Default, src, now, length, mult) {
		return Decision{Action: maps.ActionDrop, Reason: maps.ReasonRatelimit, Rule: 0}
	}
	if m.policy.Aggregate.Active() {
		// Scaled by the class, not by a throttle verdict.
		bits := m.policy.AggregatePrefix6
		if bits == 0 {
			bits = 48
		}
		if p.Family == 4 {
			if bits = m.policy.AggregatePrefix4; bits == 0 {
				bits = 24
			}
		}
		pfx, _ := p.Src.Prefix(bits)
		k := pfx.Addr().As16()
		b := m.aggBkts[k]
		if b == nil {
			b = &bucketPair{}
			m.aggBkts[k] = b
		}
		if !m.take(m.policy.Aggregate, b, now, length, cmult) {
			return Decision{Action: maps.ActionDrop, Reason: maps.ReasonRatelimit, Rule: maps.RuleAggregate}
		}
	}
	return Decision{Action: maps.ActionPass, Reason: maps.ReasonPassed}
}

// rulesFor finds, by scanning the configured rules in order, the rules a
// packet takes from: first the rule for its protocol and port, then the
// rule for TCP SYN (SYN without ACK) on that port or for ICMP of its family.
// Non-first fragments carry no L4 header and match none.
func (m *Model) rulesFor(p *Packet) []int {
	if p.NonFirstFrag {
		return nil
	}
	var first, second int
	for i, r := range m.policy.Rules {
		id := i + 1
		switch {
		case p.Proto == ProtoTCP && r.Protocol == maps.ProtoTCP && !r.SYN && coversPort(r.Ports, p.DPort):
			first = pick(first, id)
		case p.Proto == ProtoUDP && r.Protocol == maps.ProtoUDP && coversPort(r.Ports, p.DPort):
			first = pick(first, id)
		case p.SYNOnly() && r.Protocol == maps.ProtoTCP && r.SYN && coversPort(r.Ports, p.DPort):
			second = pick(second, id)
		case p.Proto == ProtoICMP && p.Family == 4 && r.Protocol == maps.ProtoICMP:
			second = pick(second, id)
		case p.Proto == ProtoICMPv6 && p.Family == 6 && r.Protocol == maps.ProtoICMPv6:
			second = pick(second, id)
		}
	}
	var ids []int
	for _, id := range []int{first, second} {
		if id != 0 {
			ids = append(ids, id)
		}
	}
	return ids
}

// pick keeps the first match; New refused overlapping rules, so there is at
// most one.
func pick(have, id int) int {
	if have != 0 {
		return have
	}
	return id
}

func coversPort(ranges []maps.PortRange, port uint16) bool {
	if len(ranges) == 0 {
		return true
	}
	for _, r := range ranges {
		if r.Lo <= port && port <= r.Hi {
			return true
		}
	}
	return false
}

// track returns the source's state, created if new; a new source first
// takes a token from the ceiling on new sources, and over it nothing is
// created (nil).
func (m *Model) track(key [16]byte, now uint64) *bucketPair {
	if src := m.sources[key]; src != nil {
		return src
	}
	if l := m.policy.NewSources; l.PPS > 0 {
		d := m.depthsOf(maps.Limit{PPS: l.PPS, Burst: l.Burst})
		if !gcraTake(&m.newSources.pps, now, interval(1, l.PPS, 1000), &d.pps) {
			return nil
		}
	}
	src := &bucketPair{}
	m.sources[key] = src
	return src
}

func (m *Model) classMult(a netip.Addr) uint64 {
	best, bits := uint64(0), -1
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

// take takes one packet from a limit's packet bucket, then its length from
// the byte bucket, each scaled by mult per mille.
func (m *Model) take(l maps.Limit, b *bucketPair, now, length, mult uint64) bool {
	d := m.depthsOf(l)
	if l.PPS > 0 && !gcraTake(&b.pps, now, interval(1, l.PPS, mult), &d.pps) {
		return false
	}
	if l.BytesPerSec > 0 && !gcraTake(&b.bps, now, interval(length, l.BytesPerSec, mult), &d.bps) {
		return false
	}
	return true
}

// depthsOf is burst*1e9/rate ns for each of a limit's rates, rounded down.
func (m *Model) depthsOf(l maps.Limit) *depths {
	d, ok := m.depths[l]
	if !ok {
		div := func(z *big.Int, burst, rate uint64) {
			if rate == 0 {
				return
			}
			z.SetUint64(burst)
			z.Mul(z, big.NewInt(1_000_000_000))
			z.Quo(z, new(big.Int).SetUint64(rate))
		}
		div(&d.pps, l.Burst, l.PPS)
		div(&d.bps, l.ByteBurst, l.BytesPerSec)
		m.depths[l] = d
	}
	return &d
}

// interval is the time cost units take to refill at rate per second
// scaled by multPM/1000, in ns rounded down: cost*1e12/(rate*multPM).
func interval(cost, rate, multPM uint64) *big.Int {
	div := new(big.Int).Mul(new(big.Int).SetUint64(rate), new(big.Int).SetUint64(multPM))
	if div.Sign() == 0 {
		return div
	}
	n := new(big.Int).Mul(new(big.Int).SetUint64(cost), big.NewInt(1_000_000_000_000))
	return n.Quo(n, div)
}

// gcraTake is the bucket at *tat: the packet conforms when, after paying
// the interval from max(tat, now), the bucket is at most depth ahead of now.
func gcraTake(tat *big.Int, now uint64, iv, depth *big.Int) bool {
	n := new(big.Int).SetUint64(now)
	next := new(big.Int)
	if tat.Cmp(n) > 0 {
		next.Set(tat)
	} else {
		next.Set(n)
	}
	next.Add(next, iv)
	if new(big.Int).Sub(next, n).Cmp(depth) > 0 {
		return false
	}
	tat.Set(next)
	return true
}

// prefixSet mirrors a list by its meaning, not its maps: the live host
// entry, else the longest live prefix that holds the address (an expired
// prefix never hides a shorter live one). A prefix written twice keeps the
// last value, as an upsert does.
type prefixSet struct {
	hosts map[netip.Addr]maps.Entry
	nets  map[netip.Prefix]maps.Entry
}

func newPrefixSet(es []maps.Entry) prefixSet {
	s := prefixSet{hosts: map[netip.Addr]maps.Entry{}, nets: map[netip.Prefix]maps.Entry{}}
	for _, e := range es {
		if e.Prefix.IsSingleIP() {
			s.hosts[e.Prefix.Addr()] = e
		} else {
			s.nets[e.Prefix.Masked()] = e
		}
	}
	return s
}

func (s prefixSet) lookup(a netip.Addr, now uint64) (uint32, bool) {
	live := func(e maps.Entry) bool { return e.ExpiresNS == 0 || e.ExpiresNS > now }
	if e, ok := s.hosts[a]; ok && live(e) {
		return e.ListID, true
	}
	best := -1
	var id uint32
	for p, e := range s.nets {
		if p.Bits() > best && p.Contains(a) && live(e) {
			best, id = p.Bits(), e.ListID
		}
	}
	return id, best >= 0
}
