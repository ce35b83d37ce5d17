// Package maps holds typed access to every map of Bulwark's XDP datapath and
// the desired-state types (Policy) written into them. Nothing outside this
// package touches an *ebpf.Map.
package maps

import (
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/bulwark-filter/bulwark/bpf"
)

// Action is what happened to a packet.
type Action uint8

// Actions: bpf/common.h enum action.
const (
	ActionPass      = Action(bpf.BulwarkActionACTION_PASS)
	ActionDrop      = Action(bpf.BulwarkActionACTION_DROP)
	ActionWouldDrop = Action(bpf.BulwarkActionACTION_WOULD_DROP)
	numActions      = int(bpf.BulwarkActionACTION_MAX)
)

// Actions lists every action in index order.
var Actions = []Action{ActionPass, ActionDrop, ActionWouldDrop}

func (a Action) String() string {
	switch a {
	case ActionPass:
		return "pass"
	case ActionDrop:
		return "drop"
	case ActionWouldDrop:
		return "would_drop"
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// Reason is the step of the decision order that decided a packet.
type Reason uint8

// Reasons: bpf/common.h enum reason.
const (
	ReasonPassed    = Reason(bpf.BulwarkReasonREASON_PASSED)
	ReasonAllowlist = Reason(bpf.BulwarkReasonREASON_ALLOWLIST)
	ReasonBlocklist = Reason(bpf.BulwarkReasonREASON_BLOCKLIST)
	ReasonVerdict   = Reason(bpf.BulwarkReasonREASON_VERDICT)
	ReasonRatelimit = Reason(bpf.BulwarkReasonREASON_RATELIMIT)
	ReasonMalformed = Reason(bpf.BulwarkReasonREASON_MALFORMED)
	ReasonNonIP     = Reason(bpf.BulwarkReasonREASON_NON_IP)
	ReasonSignature = Reason(bpf.BulwarkReasonREASON_SIGNATURE)
	numReasons      = int(bpf.BulwarkReasonREASON_MAX)
)

// Reasons lists every reason in index order.
var Reasons = []Reason{ReasonPassed, ReasonAllowlist, ReasonBlocklist, ReasonVerdict,
	ReasonRatelimit, ReasonMalformed, ReasonNonIP, ReasonSignature}

func (r Reason) String() string {
	switch r {
	case ReasonPassed:
		return "passed"
	case ReasonAllowlist:
		return "allowlist"
	case ReasonBlocklist:
		return "blocklist"
	case ReasonVerdict:
		return "verdict"
	case ReasonRatelimit:
		return "ratelimit"
	case ReasonMalformed:
		return "malformed"
	case ReasonNonIP:
		return "non_ip"
	case ReasonSignature:
		return "signature"
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Mode is enforce or monitor (dry run: drops are counted as would_drop).
type Mode uint32

// Modes: bpf/common.h enum mode.
const (
	ModeEnforce = Mode(bpf.BulwarkModeMODE_ENFORCE)
	ModeMonitor = Mode(bpf.BulwarkModeMODE_MONITOR)
)

// VerdictAction is what a dynamic verdict does to its source.
type VerdictAction uint32

// Verdict actions: bpf/common.h enum verdict_action.
const (
	VerdictBlock    = VerdictAction(bpf.BulwarkVerdictActionVERDICT_BLOCK)
	VerdictThrottle = VerdictAction(bpf.BulwarkVerdictActionVERDICT_THROTTLE)
)

func (v VerdictAction) String() string {
	switch v {
	case VerdictBlock:
		return "block"
	case VerdictThrottle:
		return "throttle"
	}
	return fmt.Sprintf("verdict(%d)", uint32(v))
}

// Protocol a rule matches.
type Protocol string

// Protocols a rule can match.
const (
	ProtoTCP    Protocol = "tcp"
	ProtoUDP    Protocol = "udp"
	ProtoICMP   Protocol = "icmp"
	ProtoICMPv6 Protocol = "icmpv6"
)

// Limit is a packet rate and a byte rate, each with its burst. A zero rate
// means no limit of that kind.
type Limit struct {
	PPS         uint64 // packets per second
	Burst       uint64 // packets
	BytesPerSec uint64 // bytes per second
	ByteBurst   uint64 // bytes
}

// Active reports whether the limit limits anything.
func (l Limit) Active() bool { return l.PPS > 0 || l.BytesPerSec > 0 }

// PortRange is an inclusive range of destination ports.
type PortRange struct{ Lo, Hi uint16 }

// Rule is a limit that applies, in its own per-source bucket, to the packets
// it matches: a protocol, optionally destination ports, optionally only TCP
// SYN without ACK.
type Rule struct {
	Name     string
	Protocol Protocol
	Ports    []PortRange // empty: every port (tcp and udp only)
	SYN      bool        // tcp only: SYN set, ACK clear
	Limit    Limit
}

// Class scales the limits of the sources in its CIDRs.
type Class struct {
	Name       string
	CIDRs      []netip.Prefix
	Multiplier float64 // > 0; rates and bursts times this
}

// Policy is the datapath's configuration, everything but the list entries
// and the verdicts: what the settings, rules, port_rules and classes maps
// hold. Rules get ids 1..len(Rules) in order; id 0 is Default.
type Policy struct {
	Mode               Mode
	MalformedPass      bool
	IPv6Prefix         int     // 1..128; 0 means 64
	ThrottleMultiplier float64 // 0 means 0.1
	SampleEvery        uint32  // 1 in N drops go to the event ring; 0 = off
	SampleMaxPerSec    uint32
	Default            Limit
	Rules              []Rule
	Classes            []Class
	// Aggregate limits every IPv4 /AggregatePrefix4 and IPv6
	// /AggregatePrefix6 (0 means 24 and 48) as one source, so a limit holds
	// when a flood of sources evicts per-source state. Zero: off.
	Aggregate        Limit
	AggregatePrefix4 int
	AggregatePrefix6 int
	// NewSources is a global ceiling on packets that would create
	// per-source state (sources not tracked yet); over it they are dropped
	// and nothing is created. Packets per second only; zero: off.
	NewSources Limit
	// ScanWindow is the epoch of the scan sketches (bpf/scans.h), rounded
	// down to a power of two nanoseconds by ScanShift; 0 means
	// DefaultScanWindow.
	ScanWindow time.Duration
}

// The layout of list ids (the list_hits map): 0-3 are the run-time and
// config lists, 4 the fleet's prefix blocks, 5 CrowdSec's range
// decisions, each list file of the config
// takes one id from FirstFileList, each block feed one from FirstFeedList
// up to the map's size.
const (
	FirstFileList = 6
	FirstFeedList = 512
)

// Rule ids of the limits that hold when per-source state does not
// (bpf/common.h enum limits).
const (
	RuleAggregate  = int(bpf.BulwarkLimitsRULE_AGGREGATE)
	RuleNewSources = int(bpf.BulwarkLimitsRULE_NEW_SOURCES)
)

// MaxRules is how many rules a policy may have besides the default: the
// ids between the default (0) and the aggregate.
const MaxRules = RuleAggregate - 1

// AggregatePrefixes are the aggregate limit's prefix lengths, defaulted.
func (p *Policy) AggregatePrefixes() (int, int) {
	p4, p6 := p.AggregatePrefix4, p.AggregatePrefix6
	if p4 == 0 {
		p4 = 24
	}
	if p6 == 0 {
		p6 = 48
	}
	return p4, p6
}

// Permille converts a multiplier to the datapath's integer per-mille form,
// at least 1.
func Permille(m float64) uint32 {
	pm := uint32(m*1000 + 0.5)
	if pm == 0 {
		pm = 1
	}
	return pm
}

// ThrottlePermille is the throttle tier's multiplier in per mille.
func (p *Policy) ThrottlePermille() uint32 {
	if p.ThrottleMultiplier == 0 {
		return Permille(0.1)
	}
	return Permille(p.ThrottleMultiplier)
}

// SourcePrefix is the IPv6 aggregation prefix length, defaulted.
func (p *Policy) SourcePrefix() int {
	if p.IPv6Prefix == 0 {
		return 64
	}
	return p.IPv6Prefix
}

// RuleIDs are the ids the datapath counts the policy's limits under: the
// default (0), each rule, the aggregate limit and the ceiling on new sources
// (all of them also when off, so their series never come and go).
func (p *Policy) RuleIDs() []int {
	ids := make([]int, 0, len(p.Rules)+3)
	for id := 0; id <= len(p.Rules); id++ {
		ids = append(ids, id)
	}
	return append(ids, RuleAggregate, RuleNewSources)
}

// RuleName returns the name of rule id (0 is "default").
func (p *Policy) RuleName(id int) string {
	switch id {
	case 0:
		return "default"
	case RuleAggregate:
		return "aggregate"
	case RuleNewSources:
		return "new_sources"
	}
	if id-1 < len(p.Rules) {
		return p.Rules[id-1].Name
	}
	return fmt.Sprintf("rule%d", id)
}

// PortTables is the compiled form of the rules: which rule id matches each
// (table, port), and the ICMP rule ids.
type PortTables struct {
	Table      [numTables][65536]uint8 // tcp, udp, tcp-syn
	ICMPRule   uint8
	ICMPv6Rule uint8
	Any        bool // some port entry is set
}

// Port table indexes: bpf/common.h enum port_table.
const (
	TableTCP    = int(bpf.BulwarkPortTablePORT_TABLE_TCP)
	TableUDP    = int(bpf.BulwarkPortTablePORT_TABLE_UDP)
	TableTCPSYN = int(bpf.BulwarkPortTablePORT_TABLE_TCP_SYN)
	numTables   = int(bpf.BulwarkPortTablePORT_TABLES)
)

// Compile checks the rules for overlaps and builds the port tables. Two
// rules may not match the same (table, port), nor both be the ICMP rule.
func (p *Policy) Compile() (*PortTables, error) {
	if len(p.Rules) > MaxRules {
		return nil, fmt.Errorf("%d rules: at most %d are supported", len(p.Rules), MaxRules)
	}
	pt := &PortTables{}
	for i, r := range p.Rules {
		id := uint8(i + 1)
		if !r.Limit.Active() {
			return nil, fmt.Errorf("rule %q: no rate set", r.Name)
		}
		var table int
		switch {
		case r.Protocol == ProtoICMP || r.Protocol == ProtoICMPv6:
			if len(r.Ports) > 0 || r.SYN {
				return nil, fmt.Errorf("rule %q: ports and tcp flags need protocol tcp or udp", r.Name)
			}
			slot := &pt.ICMPRule
			if r.Protocol == ProtoICMPv6 {
				slot = &pt.ICMPv6Rule
			}
			if *slot != 0 {
				return nil, fmt.Errorf("rule %q overlaps rule %q on %s", r.Name, p.Rules[*slot-1].Name, r.Protocol)
			}
			*slot = id
			continue
		case r.Protocol == ProtoTCP && r.SYN:
			table = TableTCPSYN
		case r.Protocol == ProtoTCP:
			table = TableTCP
		case r.Protocol == ProtoUDP && !r.SYN:
			table = TableUDP
		default:
			return nil, fmt.Errorf("rule %q: unsupported protocol %q with syn=%v", r.Name, r.Protocol, r.SYN)
		}
		ranges := r.Ports
		if len(ranges) == 0 {
			ranges = []PortRange{{0, 65535}}
		}
		for _, pr := range ranges {
			if pr.Lo > pr.Hi {
				return nil, fmt.Errorf("rule %q: port range %d-%d is reversed", r.Name, pr.Lo, pr.Hi)
			}
			for port := int(pr.Lo); port <= int(pr.Hi); port++ {
				if prev := pt.Table[table][port]; prev != 0 && prev != id {
					return nil, fmt.Errorf("rule %q overlaps rule %q on %s port %d", r.Name, p.Rules[prev-1].Name, r.Protocol, port)
				}
				pt.Table[table][port] = id
				pt.Any = true
			}
		}
	}
	return pt, nil
}

// Origin says who put a list entry or verdict in place.
type Origin uint16

// Origins of entries and verdicts.
const (
	OriginConfig Origin = 0
	OriginCLI    Origin = 1
	OriginScorer Origin = 2
	OriginFeed   Origin = 3
	OriginFleet  Origin = 4
	// OriginCrowdSec is a decision of a CrowdSec local API.
	OriginCrowdSec Origin = 5
)

func (o Origin) String() string {
	switch o {
	case OriginConfig:
		return "config"
	case OriginCLI:
		return "cli"
	case OriginScorer:
		return "scorer"
	case OriginFeed:
		return "feed"
	case OriginFleet:
		return "fleet"
	case OriginCrowdSec:
		return "crowdsec"
	}
	return fmt.Sprintf("origin(%d)", uint16(o))
}

// Entry is one allow or block list entry.
type Entry struct {
	Prefix    netip.Prefix // masked; IPv4 for IPv4 (never 4-in-6)
	ListID    uint32
	ExpiresNS uint64 // CLOCK_MONOTONIC; 0 = never
}

// SortEntries orders entries by prefix, for stable listings.
func SortEntries(es []Entry) {
	sort.Slice(es, func(i, j int) bool {
		a, b := es[i].Prefix, es[j].Prefix
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c < 0
		}
		return a.Bits() < b.Bits()
	})
}

// SourceKey returns the datapath's key for a source address: IPv4 as
// ::ffff:a.b.c.d, IPv6 masked to prefix bits.
func SourceKey(addr netip.Addr, v6prefix int) [16]byte {
	if addr.Is4() || addr.Is4In6() {
		return netip.AddrFrom4(addr.Unmap().As4()).As16()
	}
	p, _ := addr.Prefix(v6prefix)
	return p.Addr().As16()
}

// SourceFromKey is the inverse of SourceKey: an IPv4 host, or the IPv6
// prefix of length v6prefix.
func SourceFromKey(k [16]byte, v6prefix int) netip.Prefix {
	a := netip.AddrFrom16(k)
	if a.Is4In6() {
		return netip.PrefixFrom(a.Unmap(), 32)
	}
	return netip.PrefixFrom(a, v6prefix)
}
