package bpf_test

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/bulwark-filter/bulwark/bpf/model"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// step is one frame sent n times at replay time t0+at, and what each send
// must do.
type step struct {
	frame  []byte
	n      int    // sends; 0 means 1
	at     uint64 // replay clock, offset from t0
	action maps.Action
	reason maps.Reason
	rule   int    // ReasonRatelimit: the rule over its limit (0 = default)
	list   uint32 // ReasonAllowlist, ReasonBlocklist: the list that matched
}

func (s step) times(n int) step     { s.n = n; return s }
func (s step) after(ns uint64) step { s.at = ns; return s }
func (s step) sends() int           { return max(s.n, 1) }
func passed(f []byte) step          { return step{frame: f, action: maps.ActionPass, reason: maps.ReasonPassed} }
func nonIP(f []byte) step           { return step{frame: f, action: maps.ActionPass, reason: maps.ReasonNonIP} }
func malformed(f []byte) step {
	return step{frame: f, action: maps.ActionDrop, reason: maps.ReasonMalformed}
}
func allowed(f []byte, id int) step {
	return step{frame: f, action: maps.ActionPass, reason: maps.ReasonAllowlist, list: uint32(id)}
}
func blocked(f []byte, id int) step {
	return step{frame: f, action: maps.ActionDrop, reason: maps.ReasonBlocklist, list: uint32(id)}
}
func verdictDrop(f []byte) step {
	return step{frame: f, action: maps.ActionDrop, reason: maps.ReasonVerdict}
}
func limited(f []byte, rule int) step {
	return step{frame: f, action: maps.ActionDrop, reason: maps.ReasonRatelimit, rule: rule}
}

// monitor turns an enforce-mode drop into the would_drop monitor mode counts.
func (s step) monitor() step {
	if s.action == maps.ActionDrop {
		s.action = maps.ActionWouldDrop
	}
	return s
}

// passMalformed is a malformed frame under MalformedPass.
func (s step) passMalformed() step { s.action = maps.ActionPass; return s }

type verdictSpec struct {
	addr    string
	action  maps.VerdictAction
	expires uint64 // offset from t0
}

// dcase is one row of the decision table: a datapath set up from scratch,
// frames sent in order, then the counters and maps checked. Source
// observations are not listed per case: they follow from the steps (every
// packet that reaches the rate-limit step is observed; a malformed packet
// whose IP header parsed counts as malformed for its source; nothing else
// creates state), and checkSources derives and checks them.
type dcase struct {
	name         string
	policy       maps.Policy
	allow, block []maps.Entry
	verdicts     []verdictSpec
	steps        []step
	rules        map[int]maps.RuleCounter // rule id -> counters; missing ids must be zero
	lists        map[uint32]uint64        // list id -> hits; missing ids must be zero
	verdictsLeft int                      // verdicts in the map afterwards
}

// entry is a list entry; expires is an offset from the case's start time,
// 0 = never (shifted by at when the case runs).
func entry(prefix string, list int, expires uint64) maps.Entry {
	return maps.Entry{Prefix: netip.MustParsePrefix(prefix), ListID: uint32(list), ExpiresNS: expires}
}

// at returns the entries with their expiries moved to start at base.
func at(es []maps.Entry, base uint64) []maps.Entry {
	out := append([]maps.Entry(nil), es...)
	for i := range out {
		if out[i].ExpiresNS != 0 {
			out[i].ExpiresNS += base
		}
	}
	return out
}

func host(addr string, list int) maps.Entry {
	a := netip.MustParseAddr(addr)
	return maps.Entry{Prefix: netip.PrefixFrom(a, a.BitLen()), ListID: uint32(list)}
}

func rc(matched, dropped uint64) maps.RuleCounter {
	return maps.RuleCounter{Matched: matched, Dropped: dropped}
}

// Rule ids of rulesPolicy.
const (
	ruleUDP53    = 1
	ruleUDPRange = 2
	ruleTCP80    = 3
	ruleSYN80    = 4
	ruleICMP     = 5
	ruleICMPv6   = 6
)

// rulesPolicy has one rule of each kind and no default limit.
func rulesPolicy() maps.Policy {
	lim := func(burst uint64) maps.Limit { return maps.Limit{PPS: 10, Burst: burst} }
	return maps.Policy{Rules: []maps.Rule{
		{Name: "dns", Protocol: maps.ProtoUDP, Ports: []maps.PortRange{{Lo: 53, Hi: 53}}, Limit: lim(2)},
		{Name: "range", Protocol: maps.ProtoUDP, Ports: []maps.PortRange{{Lo: 1000, Hi: 2000}}, Limit: lim(100)},
		{Name: "web", Protocol: maps.ProtoTCP, Ports: []maps.PortRange{{Lo: 80, Hi: 80}}, Limit: lim(100)},
		{Name: "syn", Protocol: maps.ProtoTCP, SYN: true, Ports: []maps.PortRange{{Lo: 80, Hi: 80}}, Limit: lim(1)},
		{Name: "icmp", Protocol: maps.ProtoICMP, Limit: lim(1)},
		{Name: "icmpv6", Protocol: maps.ProtoICMPv6, Limit: lim(1)},
	}}
}

// defaultLimit is a policy whose only limit is the default: 10 pps, burst.
func defaultLimit(burst uint64) maps.Policy {
	return maps.Policy{Default: maps.Limit{PPS: 10, Burst: burst}}
}

// decideCases is the decision table. Frames are built on every call.
func decideCases(t testing.TB) []dcase {
	tu := testutil.UDP4
	u4 := func(src string, dport uint16, o ...testutil.Option) []byte { return tu(t, src, d4, dport, 16, o...) }
	u6 := func(src string, dport uint16, o ...testutil.Option) []byte {
		return testutil.UDP6(t, src, d6, dport, 16, o...)
	}
	t4 := func(src string, dport uint16, fl uint8, o ...testutil.Option) []byte {
		return testutil.TCP4(t, src, d4, dport, fl, o...)
	}
	t6 := func(src string, dport uint16, fl uint8, o ...testutil.Option) []byte {
		return testutil.TCP6(t, src, d6, dport, fl, o...)
	}
	i4 := func(src string, o ...testutil.Option) []byte { return testutil.ICMP4(t, src, d4, o...) }
	i6 := func(src string, o ...testutil.Option) []byte { return testutil.ICMP6(t, src, d6, o...) }
	ip := func(src string, proto uint8, n int, o ...testutil.Option) []byte {
		dst := d4
		if netip.MustParseAddr(src).Is6() {
			dst = d6
		}
		return testutil.IP(t, src, dst, proto, n, o...)
	}
	syn, synack, ack := testutil.FlagSYN, testutil.FlagSYN|testutil.FlagACK, testutil.FlagACK
	q, ad := testutil.TPID8021Q, testutil.TPID8021AD
	vlan := testutil.VLAN
	const l3 = 14        // IP header offset without VLAN tags
	const l4v4 = 14 + 20 // L4 offset of IPv4 without options

	var cs []dcase
	add := func(c ...dcase) { cs = append(cs, c...) }

	// Each protocol, no policy: everything passes and is observed.
	add(
		dcase{name: "udp4", steps: []step{passed(u4(a4, 53))}},
		dcase{name: "tcp4 syn", steps: []step{passed(t4(a4, 80, syn))}},
		dcase{name: "tcp4 syn-ack", steps: []step{passed(t4(a4, 80, synack))}},
		dcase{name: "icmp4", steps: []step{passed(i4(a4))}},
		dcase{name: "gre4", steps: []step{passed(ip(a4, testutil.ProtoGRE, 24))}},
		dcase{name: "esp4", steps: []step{passed(ip(a4, testutil.ProtoESP, 24))}},
		dcase{name: "udp6", steps: []step{passed(u6(a6, 53))}},
		dcase{name: "tcp6 syn", steps: []step{passed(t6(a6, 80, syn))}},
		dcase{name: "icmp6", steps: []step{passed(i6(a6))}},
		dcase{name: "gre6", steps: []step{passed(ip(a6, testutil.ProtoGRE, 24))}},
		dcase{name: "esp6 ends the walk", steps: []step{passed(ip(a6, testutil.ProtoESP, 3))}},
		dcase{name: "no-next-header6", steps: []step{passed(ip(a6, testutil.ProtoNoNext, 0))}},
		dcase{name: "icmp4 exactly 8 bytes", steps: []step{passed(ip(a4, testutil.ProtoICMPv4, 8))}},
		dcase{name: "icmp4 under 8 bytes", steps: []step{malformed(ip(a4, testutil.ProtoICMPv4, 7))}},
		dcase{name: "icmp6 under 8 bytes", steps: []step{malformed(ip(a6, testutil.ProtoICMPv6, 4))}},
		dcase{name: "icmpv6 number in ipv4 checked as icmp", steps: []step{malformed(ip(a4, testutil.ProtoICMPv6, 4))}},
	)

	// VLAN tags: up to three in any mix of TPIDs; a fourth is malformed.
	add(
		dcase{name: "vlan 1 tag", steps: []step{passed(u4(a4, 53, vlan(q)))}},
		dcase{name: "vlan 2 tags qinq", steps: []step{passed(u4(a4, 53, vlan(ad, q)))}},
		dcase{name: "vlan 2 tags ipv6", steps: []step{passed(u6(a6, 53, vlan(q, q)))}},
		dcase{name: "vlan 3 tags", steps: []step{passed(u4(a4, 53, vlan(q, ad, q)))}},
		dcase{name: "vlan 3 tags reach the port rule", policy: rulesPolicy(),
			steps: []step{passed(u4(a4, 53, vlan(ad, ad, q)))}, rules: map[int]maps.RuleCounter{ruleUDP53: rc(1, 0)}},
		dcase{name: "vlan 4 tags", steps: []step{malformed(u4(a4, 53, vlan(q, ad, q, ad)))}},
		dcase{name: "vlan 4 tags around arp", steps: []step{malformed(testutil.Ether(t, testutil.EtherARP, 28, vlan(q, q, q, q)))}},
		dcase{name: "vlan tag cut short", steps: []step{malformed(testutil.Ether(t, testutil.EtherARP, 28, vlan(q))[:16])}},
	)

	// Non-IP EtherTypes always pass, never limited, never state.
	add(
		dcase{name: "arp", steps: []step{nonIP(testutil.Ether(t, testutil.EtherARP, 28))}},
		dcase{name: "lldp", steps: []step{nonIP(testutil.Ether(t, testutil.EtherLLDP, 40))}},
		dcase{name: "mpls", steps: []step{nonIP(testutil.Ether(t, testutil.EtherMPLS, 40))}},
		dcase{name: "arp behind 3 tags", steps: []step{nonIP(testutil.Ether(t, testutil.EtherARP, 28, vlan(ad, q, q)))}},
		dcase{name: "non-ip with empty payload", steps: []step{nonIP(testutil.Ether(t, testutil.EtherLLDP, 0))}},
		dcase{name: "non-ip never limited", policy: defaultLimit(1),
			steps: []step{nonIP(testutil.Ether(t, testutil.EtherMPLS, 40)).times(5)}},
		dcase{name: "non-ip in monitor mode", policy: maps.Policy{Mode: maps.ModeMonitor},
			steps: []step{nonIP(testutil.Ether(t, testutil.EtherARP, 28))}},
	)

	// IPv4 header: options skipped by IHL (the port rule sees port 53
	// behind them), IHL < 5, lengths.
	for words := 1; words <= 10; words++ {
		add(dcase{name: fmt.Sprintf("ipv4 ihl %d", 5+words), policy: rulesPolicy(),
			steps: []step{passed(u4(a4, 53, testutil.IPv4Options(words)))},
			rules: map[int]maps.RuleCounter{ruleUDP53: rc(1, 0)}})
	}
	udp := u4(a4, 53)
	add(
		dcase{name: "ipv4 ihl 4", steps: []step{malformed(patched(udp, func(b []byte) { b[l3] = 0x44 }))}},
		dcase{name: "ipv4 ihl 0", steps: []step{malformed(patched(udp, func(b []byte) { b[l3] = 0x40 }))}},
		dcase{name: "ipv4 ethertype version 6", steps: []step{malformed(patched(udp, func(b []byte) { b[l3] = 0x65 }))}},
		dcase{name: "ipv4 ihl past frame", steps: []step{malformed(patched(ip(a4, testutil.ProtoGRE, 0), func(b []byte) { b[l3] = 0x46; put16(b, l3+2, 24) })[:l3+20])}},
		dcase{name: "ipv4 total length past frame", steps: []step{malformed(patched(udp, func(b []byte) { put16(b, l3+2, uint16(len(b)-l3+1)) }))}},
		dcase{name: "ipv4 total length under ihl", steps: []step{malformed(patched(udp, func(b []byte) { put16(b, l3+2, 19) }))}},
		dcase{name: "ipv4 ethernet padding after total length", steps: []step{passed(append(u4(a4, 53), make([]byte, 20)...))}},
		dcase{name: "ipv4 total length hides udp", steps: []step{malformed(patched(udp, func(b []byte) { put16(b, l3+2, 20+7) }))}},
	)

	// L4 headers.
	tcpOpts := patched(ip(a4, testutil.ProtoTCP, 32), func(b []byte) {
		put16(b, l4v4+2, 80)
		b[l4v4+12] = 8 << 4 // 32-byte header
		b[l4v4+13] = syn
	})
	add(
		dcase{name: "udp length 7", steps: []step{malformed(patched(udp, func(b []byte) { put16(b, l4v4+4, 7) }))}},
		dcase{name: "udp length 0", steps: []step{malformed(patched(udp, func(b []byte) { put16(b, l4v4+4, 0) }))}},
		dcase{name: "udp length past ip payload", steps: []step{malformed(patched(udp, func(b []byte) { put16(b, l4v4+4, uint16(len(b)-l4v4+1)) }))}},
		dcase{name: "udp length short of ip payload", steps: []step{passed(patched(udp, func(b []byte) { put16(b, l4v4+4, 8) }))}},
		dcase{name: "tcp doff 4", steps: []step{malformed(patched(t4(a4, 80, syn), func(b []byte) { b[l4v4+12] = 4 << 4 }))}},
		dcase{name: "tcp doff 0", steps: []step{malformed(patched(t4(a4, 80, syn), func(b []byte) { b[l4v4+12] = 0 }))}},
		dcase{name: "tcp doff past payload", steps: []step{malformed(patched(t4(a4, 80, syn), func(b []byte) { b[l4v4+12] = 6 << 4 }))}},
		dcase{name: "tcp doff 8 with options, flags read", policy: rulesPolicy(),
			steps: []step{passed(tcpOpts)}, rules: map[int]maps.RuleCounter{ruleTCP80: rc(1, 0), ruleSYN80: rc(1, 0)}},
		dcase{name: "udp header cut by ip length6", steps: []step{malformed(patched(u6(a6, 53), func(b []byte) { put16(b, l3+4, 7) }))}},
	)

	// IPv6 header and extension chains.
	u6x := u6(a6, 53, testutil.IPv6Ext(testutil.HopByHop()))
	kinds := []testutil.Ext{testutil.HopByHop(), testutil.DstOpts(1), testutil.Routing(),
		testutil.Fragment(0, true), testutil.AH(4), testutil.DstOpts(0), testutil.AH(1), testutil.Routing(), testutil.HopByHop()}
	for n := 1; n <= 8; n++ {
		add(dcase{name: fmt.Sprintf("ipv6 %d extension headers", n), policy: rulesPolicy(),
			steps: []step{passed(u6(a6, 53, testutil.IPv6Ext(kinds[:n]...)))},
			rules: map[int]maps.RuleCounter{ruleUDP53: rc(1, 0)}})
	}
	add(
		dcase{name: "ipv6 9 extension headers", policy: rulesPolicy(),
			steps: []step{malformed(u6(a6, 53, testutil.IPv6Ext(kinds...)))}},
		dcase{name: "ipv6 8 extension headers then esp", steps: []step{passed(ip(a6, testutil.ProtoESP, 16, testutil.IPv6Ext(kinds[:8]...)))}},
		dcase{name: "ipv6 ah 12 bytes (4-byte unit)", policy: rulesPolicy(),
			steps: []step{passed(u6(a6, 53, testutil.IPv6Ext(testutil.AH(1))))}, rules: map[int]maps.RuleCounter{ruleUDP53: rc(1, 0)}},
		dcase{name: "ipv6 ah 24 bytes then dstopts", policy: rulesPolicy(),
			steps: []step{passed(u6(a6, 53, testutil.IPv6Ext(testutil.AH(4), testutil.DstOpts(2))))}, rules: map[int]maps.RuleCounter{ruleUDP53: rc(1, 0)}},
		dcase{name: "ipv6 ah longer than payload", steps: []step{malformed(patched(u6(a6, 53, testutil.IPv6Ext(testutil.AH(4))), func(b []byte) { b[l3+40+1] = 200 }))}},
		dcase{name: "ipv6 dstopts longer than payload", steps: []step{malformed(patched(u6x, func(b []byte) { b[l3+40+1] = 50 }))}},
		dcase{name: "ipv6 payload length under extension", steps: []step{malformed(patched(u6x, func(b []byte) { put16(b, l3+4, 4) }))}},
		dcase{name: "ipv6 payload length past frame", steps: []step{malformed(patched(u6x, func(b []byte) { put16(b, l3+4, uint16(len(b)-l3-40+1)) }))}},
		dcase{name: "ipv6 payload length 0 (jumbo) uses frame", steps: []step{passed(patched(u6x, func(b []byte) { put16(b, l3+4, 0) }))}},
		dcase{name: "ipv6 version 4", steps: []step{malformed(patched(u6(a6, 53), func(b []byte) { b[l3] = 0x45 }))}},
		dcase{name: "ipv6 header cut short", steps: []step{malformed(u6(a6, 53)[:l3+39])}},
	)

	// Fragments: the first is parsed as usual; non-first ones get only L3
	// decisions (lists, verdicts, the default limit), never port rules, and
	// their L4 bytes are not read (the bytes after the IP header here look
	// like UDP to port 53, or are absent).
	f4 := testutil.Fragment4
	nf4 := u4(a4, 53, f4(185, false))
	nf6 := u6(a6, 53, testutil.IPv6Ext(testutil.Fragment(100, false)))
	add(
		dcase{name: "ipv4 first fragment gets port rules", policy: rulesPolicy(),
			steps: []step{passed(u4(a4, 53, f4(0, true))).times(2), limited(u4(a4, 53, f4(0, true)), ruleUDP53)},
			rules: map[int]maps.RuleCounter{ruleUDP53: rc(3, 1)}},
		dcase{name: "ipv4 non-first fragment skips port rules", policy: rulesPolicy(),
			steps: []step{passed(nf4).times(3), passed(u4(a4, 53, f4(185, true)))}},
		dcase{name: "ipv4 non-first fragment without l4 bytes", policy: rulesPolicy(),
			steps: []step{passed(ip(a4, testutil.ProtoTCP, 0, f4(2, true))), passed(ip(a4, testutil.ProtoICMPv4, 2, f4(1, false)))}},
		dcase{name: "ipv4 non-first fragment default limit", policy: defaultLimit(2),
			steps: []step{passed(nf4).times(2), limited(nf4, 0)}, rules: map[int]maps.RuleCounter{0: rc(3, 1)}},
		dcase{name: "ipv4 non-first fragment block list", block: []maps.Entry{host(a4, 5)},
			steps: []step{blocked(nf4, 5)}, lists: map[uint32]uint64{5: 1}},
		dcase{name: "ipv4 non-first fragment verdict", verdicts: []verdictSpec{{a4, maps.VerdictBlock, 1e9}},
			steps: []step{verdictDrop(nf4)}, verdictsLeft: 1},
		dcase{name: "ipv6 first fragment gets port rules", policy: rulesPolicy(),
			steps: []step{passed(u6(a6, 53, testutil.IPv6Ext(testutil.Fragment(0, true)))).times(2),
				limited(u6(a6, 53, testutil.IPv6Ext(testutil.Fragment(0, true))), ruleUDP53)},
			rules: map[int]maps.RuleCounter{ruleUDP53: rc(3, 1)}},
		dcase{name: "ipv6 non-first fragment skips port rules", policy: rulesPolicy(),
			steps: []step{passed(nf6).times(3)}},
		dcase{name: "ipv6 non-first fragment after other headers", policy: rulesPolicy(),
			steps: []step{passed(u6(a6, 53, testutil.IPv6Ext(testutil.HopByHop(), testutil.Fragment(3, true), testutil.DstOpts(0)))).times(3)}},
		dcase{name: "ipv6 non-first fragment without l4 bytes",
			steps: []step{passed(ip(a6, testutil.ProtoTCP, 0, testutil.IPv6Ext(testutil.Fragment(2, false))))}},
		dcase{name: "ipv6 non-first fragment block list", block: []maps.Entry{entry("2001:2:0:1::/64", 6, 0)},
			steps: []step{blocked(nf6, 6)}, lists: map[uint32]uint64{6: 1}},
		dcase{name: "ipv6 non-first fragment default limit", policy: defaultLimit(1),
			steps: []step{passed(nf6), limited(nf6, 0)}, rules: map[int]maps.RuleCounter{0: rc(2, 1)}},
	)

	// Allow and block lists.
	add(
		dcase{name: "allow host4", allow: []maps.Entry{host(a4, 1)},
			steps: []step{allowed(u4(a4, 53), 1)}, lists: map[uint32]uint64{1: 1}},
		dcase{name: "allow prefix6", allow: []maps.Entry{entry("2001:2:0:1::/64", 2, 0)},
			steps: []step{allowed(u6(a6b, 53), 2), passed(u6(b6, 53))}, lists: map[uint32]uint64{2: 1}},
		dcase{name: "allow beats block", allow: []maps.Entry{host(a4, 1)}, block: []maps.Entry{entry("198.18.0.0/24", 2, 0)},
			steps: []step{allowed(u4(a4, 53), 1), blocked(u4(b4, 53), 2)}, lists: map[uint32]uint64{1: 1, 2: 1}},
		dcase{name: "allow beats verdict and limits", policy: defaultLimit(1), allow: []maps.Entry{entry("198.18.0.0/30", 1, 0)},
			verdicts: []verdictSpec{{a4, maps.VerdictBlock, 1e9}},
			steps:    []step{allowed(u4(a4, 53), 1).times(5)}, lists: map[uint32]uint64{1: 5}, verdictsLeft: 1},
		dcase{name: "block host4", block: []maps.Entry{host(a4, 3)},
			steps: []step{blocked(u4(a4, 53), 3).times(2), passed(u4(b4, 53))}, lists: map[uint32]uint64{3: 2}},
		dcase{name: "block prefix4", block: []maps.Entry{entry("198.18.0.0/16", 4, 0)},
			steps: []step{blocked(u4(a4, 53), 4), blocked(t4(c4, 80, syn), 4), passed(u4(d4, 53))}, lists: map[uint32]uint64{4: 2}},
		dcase{name: "block host6", block: []maps.Entry{host(a6, 5)},
			steps: []step{blocked(u6(a6, 53), 5), passed(u6(a6b, 53))}, lists: map[uint32]uint64{5: 1}},
		dcase{name: "block prefix6", block: []maps.Entry{entry("2001:2:0:2::/64", 6, 0)},
			steps: []step{blocked(i6(b6), 6), passed(i6(a6))}, lists: map[uint32]uint64{6: 1}},
		dcase{name: "block beats verdict", block: []maps.Entry{host(a4, 1)},
			verdicts: []verdictSpec{{a4, maps.VerdictBlock, 1e9}, {b4, maps.VerdictBlock, 1e9}},
			steps:    []step{blocked(u4(a4, 53), 1), verdictDrop(u4(b4, 53))}, lists: map[uint32]uint64{1: 1}, verdictsLeft: 2},
		dcase{name: "hits per list id", block: []maps.Entry{host(a4, 3), entry("198.18.2.0/24", 7, 0), host(a6, 9)},
			steps: []step{blocked(u4(a4, 53), 3).times(2), blocked(u4(e4, 53), 7), blocked(i6(a6), 9).times(3)},
			lists: map[uint32]uint64{3: 2, 7: 1, 9: 3}},
		dcase{name: "longest prefix's list", block: []maps.Entry{entry("198.18.0.0/16", 1, 0), entry("198.18.0.0/24", 2, 0)},
			steps: []step{blocked(u4(a4, 53), 2), blocked(u4(e4, 53), 1)}, lists: map[uint32]uint64{1: 1, 2: 1}},
		dcase{name: "block entry expires", block: []maps.Entry{entry(a4+"/32", 1, 1000)},
			steps: []step{blocked(u4(a4, 53), 1), blocked(u4(a4, 53), 1).after(999), passed(u4(a4, 53)).after(1000)},
			lists: map[uint32]uint64{1: 2}},
		dcase{name: "block prefix6 expires", block: []maps.Entry{entry("2001:2:0:1::/64", 1, 1000)},
			steps: []step{blocked(u6(a6, 53), 1), passed(u6(a6, 53)).after(1000)}, lists: map[uint32]uint64{1: 1}},
		dcase{name: "expired host falls to live prefix", block: []maps.Entry{entry(a4+"/32", 1, 10), entry("198.18.0.0/24", 2, 0)},
			steps: []step{blocked(u4(a4, 53), 1), blocked(u4(a4, 53), 2).after(10)}, lists: map[uint32]uint64{1: 1, 2: 1}},
		dcase{name: "expired longest prefix falls to live shorter", block: []maps.Entry{entry("198.18.0.0/24", 1, 10), entry("198.18.0.0/16", 2, 0)},
			steps: []step{blocked(u4(a4, 53), 1), blocked(u4(a4, 53), 2).after(10), blocked(u4(e4, 53), 2).after(10)},
			lists: map[uint32]uint64{1: 1, 2: 2}},
		dcase{name: "expired prefix6 falls to live shorter", block: []maps.Entry{entry("2001:2:0:1::/64", 1, 10), entry("2001:2::/48", 2, 0)},
			steps: []step{blocked(u6(a6, 53), 1), blocked(u6(a6, 53), 2).after(10)},
			lists: map[uint32]uint64{1: 1, 2: 1}},
		dcase{name: "many expired prefixes fall to live shorter", block: []maps.Entry{
			entry("198.18.0.0/28", 1, 10), entry("198.18.0.0/27", 1, 10), entry("198.18.0.0/26", 1, 10),
			entry("198.18.0.0/25", 1, 10), entry("198.18.0.0/24", 1, 10), entry("198.18.0.0/16", 2, 0)},
			steps: []step{blocked(u4(a4, 53), 1), blocked(u4(a4, 53), 2).after(10)},
			lists: map[uint32]uint64{1: 1, 2: 1}},
		dcase{name: "expired slot prefix falls to short live", block: []maps.Entry{
			entry("198.18.0.0/24", 1, 10), entry("198.18.0.0/17", 2, 20), entry("198.0.0.0/8", 3, 0)},
			steps: []step{blocked(u4(a4, 53), 1), blocked(u4(a4, 53), 2).after(10), blocked(u4(a4, 53), 3).after(20)},
			lists: map[uint32]uint64{1: 1, 2: 1, 3: 1}},
		dcase{name: "expired prefix6 falls to short live", block: []maps.Entry{
			entry("2001:2:0:1::/64", 1, 10), entry("2001::/16", 2, 0)},
			steps: []step{blocked(u6(a6, 53), 1), blocked(u6(a6, 53), 2).after(10)},
			lists: map[uint32]uint64{1: 1, 2: 1}},
		dcase{name: "allow entry expires", policy: defaultLimit(1), allow: []maps.Entry{entry(a4+"/32", 1, 10)},
			steps: []step{allowed(u4(a4, 53), 1).times(2), passed(u4(a4, 53)).after(10), limited(u4(a4, 53), 0).after(10)},
			lists: map[uint32]uint64{1: 2}, rules: map[int]maps.RuleCounter{0: rc(2, 1)}},
	)

	// Dynamic verdicts.
	throttled := maps.Policy{Default: maps.Limit{PPS: 10, Burst: 20}} // throttle tier: x0.1, burst 2
	add(
		dcase{name: "verdict block", verdicts: []verdictSpec{{a4, maps.VerdictBlock, 1e9}},
			steps: []step{verdictDrop(u4(a4, 53)).times(2), passed(u4(b4, 53))}, verdictsLeft: 1},
		dcase{name: "verdict block expires", verdicts: []verdictSpec{{a4, maps.VerdictBlock, 10}},
			steps: []step{verdictDrop(u4(a4, 53)), verdictDrop(u4(a4, 53)).after(9), passed(u4(a4, 53)).after(10)}, verdictsLeft: 0},
		dcase{name: "verdict already expired", verdicts: []verdictSpec{{a4, maps.VerdictBlock, 0}},
			steps: []step{passed(u4(a4, 53))}, verdictsLeft: 0},
		dcase{name: "verdict block ipv6 /64", verdicts: []verdictSpec{{a6, maps.VerdictBlock, 1e9}},
			steps: []step{verdictDrop(u6(a6b, 53)), passed(u6(b6, 53))}, verdictsLeft: 1},
		dcase{name: "verdict throttle", policy: throttled, verdicts: []verdictSpec{{a4, maps.VerdictThrottle, 1e12}},
			steps: []step{passed(u4(a4, 53)).times(2), limited(u4(a4, 53), 0), passed(u4(b4, 53)).times(20), limited(u4(b4, 53), 0)},
			rules: map[int]maps.RuleCounter{0: rc(24, 2)}, verdictsLeft: 1},
		dcase{name: "verdict throttle x0.5", policy: maps.Policy{Default: maps.Limit{PPS: 10, Burst: 20}, ThrottleMultiplier: 0.5},
			verdicts: []verdictSpec{{a4, maps.VerdictThrottle, 1e12}},
			steps:    []step{passed(u4(a4, 53)).times(10), limited(u4(a4, 53), 0)},
			rules:    map[int]maps.RuleCounter{0: rc(11, 1)}, verdictsLeft: 1},
		dcase{name: "verdict throttle applies to rules", policy: rulesPolicy(), verdicts: []verdictSpec{{a4, maps.VerdictThrottle, 1e12}},
			steps: []step{passed(u4(a4, 1500)).times(10), limited(u4(a4, 1500), ruleUDPRange), passed(u4(b4, 1500)).times(11)}, // burst 100 x 0.1
			rules: map[int]maps.RuleCounter{ruleUDPRange: rc(22, 1)}, verdictsLeft: 1},
		dcase{name: "verdict throttle expired", policy: throttled, verdicts: []verdictSpec{{a4, maps.VerdictThrottle, 10}},
			steps: []step{passed(u4(a4, 53)).times(20).after(10), limited(u4(a4, 53), 0).after(10)},
			rules: map[int]maps.RuleCounter{0: rc(21, 1)}, verdictsLeft: 0},
	)

	// Rate limits.
	u100 := tu(t, a4, d4, 53, 100-42) // a 100-byte frame
	u150 := tu(t, a4, d4, 53, 150-42)
	add(
		dcase{name: "default limit burst", policy: defaultLimit(3),
			steps: []step{passed(u4(a4, 53)).times(3), limited(u4(a4, 53), 0)}, rules: map[int]maps.RuleCounter{0: rc(4, 1)}},
		dcase{name: "default limit refill", policy: defaultLimit(3),
			steps: []step{passed(u4(a4, 53)).times(3), limited(u4(a4, 53), 0), limited(u4(a4, 53), 0).after(1e8 - 1),
				passed(u4(a4, 53)).after(1e8), limited(u4(a4, 53), 0).after(1e8)},
			rules: map[int]maps.RuleCounter{0: rc(7, 3)}},
		dcase{name: "default limit refill capped at burst", policy: defaultLimit(3),
			steps: []step{passed(u4(a4, 53)).times(3), passed(u4(a4, 53)).times(3).after(100e9), limited(u4(a4, 53), 0).after(100e9)},
			rules: map[int]maps.RuleCounter{0: rc(7, 1)}},
		dcase{name: "default limit per source", policy: defaultLimit(1),
			steps: []step{passed(u4(a4, 53)), limited(u4(a4, 53), 0), passed(u4(b4, 53)), passed(i6(a6)), limited(i6(a6), 0)},
			rules: map[int]maps.RuleCounter{0: rc(5, 2)}},
		dcase{name: "bytes limit", policy: maps.Policy{Default: maps.Limit{BytesPerSec: 1000, ByteBurst: 300}},
			steps: []step{passed(u100).times(3), limited(u100, 0), passed(u100).after(1e8), limited(u100, 0).after(1e8)},
			rules: map[int]maps.RuleCounter{0: rc(6, 2)}},
		dcase{name: "bytes limit counts frame length", policy: maps.Policy{Default: maps.Limit{BytesPerSec: 1000, ByteBurst: 300}},
			steps: []step{passed(u100).times(2), limited(u150, 0), passed(u4(a4, 53))}, // 150 bytes do not fit the 100 left, 60 do
			rules: map[int]maps.RuleCounter{0: rc(4, 1)}},
		dcase{name: "packets and bytes limits", policy: maps.Policy{Default: maps.Limit{PPS: 10, Burst: 5, BytesPerSec: 1000, ByteBurst: 300}},
			steps: []step{passed(u100).times(3), limited(u100, 0)}, rules: map[int]maps.RuleCounter{0: rc(4, 1)}},
		dcase{name: "udp port rule", policy: rulesPolicy(),
			steps: []step{passed(u4(a4, 53)).times(2), limited(u4(a4, 53), ruleUDP53), passed(u4(a4, 54)).times(3), passed(t4(a4, 53, syn))},
			rules: map[int]maps.RuleCounter{ruleUDP53: rc(3, 1)}},
		dcase{name: "udp port rule per source", policy: rulesPolicy(),
			steps: []step{passed(u4(a4, 53)).times(2), passed(u4(b4, 53)).times(2), passed(u6(a6, 53)).times(2), limited(u6(a6b, 53), ruleUDP53)},
			rules: map[int]maps.RuleCounter{ruleUDP53: rc(7, 1)}},
		dcase{name: "udp port range", policy: rulesPolicy(),
			steps: []step{passed(u4(a4, 999)), passed(u4(a4, 1000)), passed(u4(a4, 1500)), passed(u4(a4, 2000)), passed(u4(a4, 2001)), passed(u6(a6, 1234))},
			rules: map[int]maps.RuleCounter{ruleUDPRange: rc(4, 0)}},
		dcase{name: "tcp port rule not for udp", policy: rulesPolicy(),
			steps: []step{passed(u4(a4, 80)), passed(t4(a4, 80, ack)), passed(t4(a4, 81, ack))},
			rules: map[int]maps.RuleCounter{ruleTCP80: rc(1, 0)}},
		dcase{name: "tcp syn rule", policy: rulesPolicy(),
			steps: []step{passed(t4(a4, 80, syn)), limited(t4(a4, 80, syn), ruleSYN80), passed(t4(a4, 80, synack)),
				passed(t4(a4, 80, ack)), passed(t4(a4, 80, syn|testutil.FlagFIN|testutil.FlagPSH)).after(1e8), passed(t6(a6, 80, syn))},
			rules: map[int]maps.RuleCounter{ruleTCP80: rc(6, 0), ruleSYN80: rc(4, 1)}},
		dcase{name: "tcp syn-ack never the syn rule", policy: rulesPolicy(),
			steps: []step{passed(t4(a4, 80, synack)).times(3), passed(t4(a4, 80, testutil.FlagSYN|testutil.FlagACK|testutil.FlagPSH))},
			rules: map[int]maps.RuleCounter{ruleTCP80: rc(4, 0)}},
		dcase{name: "icmp rule", policy: rulesPolicy(),
			steps: []step{passed(i4(a4)), limited(i4(a4), ruleICMP), passed(i4(b4))},
			rules: map[int]maps.RuleCounter{ruleICMP: rc(3, 1)}},
		dcase{name: "icmpv6 rule", policy: rulesPolicy(),
			steps: []step{passed(i6(a6)), limited(i6(a6), ruleICMPv6), passed(i6(b6))},
			rules: map[int]maps.RuleCounter{ruleICMPv6: rc(3, 1)}},
		dcase{name: "icmp rule by family", policy: rulesPolicy(),
			steps: []step{passed(ip(a6, testutil.ProtoICMPv4, 8)).times(2), passed(ip(a4, testutil.ProtoICMPv6, 8)).times(2)}},
		dcase{name: "rule and default both apply", policy: maps.Policy{Default: maps.Limit{PPS: 10, Burst: 2}, Rules: rulesPolicy().Rules},
			steps: []step{passed(u4(a4, 1500)).times(2), limited(u4(a4, 1500), 0), passed(u4(b4, 53)).times(2), limited(u4(b4, 53), ruleUDP53)},
			rules: map[int]maps.RuleCounter{0: rc(5, 1), ruleUDPRange: rc(3, 0), ruleUDP53: rc(3, 1)}},
	)

	// IPv6 sources are tracked per prefix.
	add(
		dcase{name: "ipv6 /64 shares one bucket", policy: defaultLimit(2),
			steps: []step{passed(u6(a6, 53)), passed(u6(a6b, 53)), limited(u6(a6, 53), 0), limited(t6(a6b, 80, syn), 0)},
			rules: map[int]maps.RuleCounter{0: rc(4, 2)}},
		dcase{name: "ipv6 different /64s", policy: defaultLimit(2),
			steps: []step{passed(u6(a6, 53)).times(2), passed(u6(b6, 53)).times(2), limited(u6(a6, 53), 0)},
			rules: map[int]maps.RuleCounter{0: rc(5, 1)}},
		dcase{name: "ipv6 prefix 128", policy: maps.Policy{Default: maps.Limit{PPS: 10, Burst: 2}, IPv6Prefix: 128},
			steps: []step{passed(u6(a6, 53)).times(2), passed(u6(a6b, 53)).times(2), limited(u6(a6, 53), 0)},
			rules: map[int]maps.RuleCounter{0: rc(5, 1)}},
		dcase{name: "ipv6 prefix 48", policy: maps.Policy{Default: maps.Limit{PPS: 10, Burst: 2}, IPv6Prefix: 48},
			steps: []step{passed(u6(a6, 53)), passed(u6(b6, 53)), limited(u6(c6, 53), 0)},
			rules: map[int]maps.RuleCounter{0: rc(3, 1)}},
		dcase{name: "ipv6 verdict follows the prefix", policy: maps.Policy{IPv6Prefix: 128},
			verdicts: []verdictSpec{{a6, maps.VerdictBlock, 1e9}},
			steps:    []step{verdictDrop(u6(a6, 53)), passed(u6(a6b, 53))}, verdictsLeft: 1},
	)

	// Classes scale limits.
	classes := []maps.Class{
		{Name: "partners", CIDRs: []netip.Prefix{netip.MustParsePrefix("198.18.1.0/24"), netip.MustParsePrefix("2001:2:0:3::/64")}, Multiplier: 10},
		{Name: "suspects", CIDRs: []netip.Prefix{netip.MustParsePrefix("198.18.2.0/24")}, Multiplier: 0.5},
	}
	add(
		dcase{name: "class x10", policy: maps.Policy{Default: maps.Limit{PPS: 10, Burst: 2}, Classes: classes},
			steps: []step{passed(u4(c4, 53)).times(20), limited(u4(c4, 53), 0), passed(u4(a4, 53)).times(2), limited(u4(a4, 53), 0),
				passed(i6(c6)).times(20), limited(i6(c6), 0)},
			rules: map[int]maps.RuleCounter{0: rc(45, 3)}},
		dcase{name: "class x0.5", policy: maps.Policy{Default: maps.Limit{PPS: 10, Burst: 4}, Classes: classes},
			steps: []step{passed(u4(e4, 53)).times(2), limited(u4(e4, 53), 0)}, rules: map[int]maps.RuleCounter{0: rc(3, 1)}},
		dcase{name: "class x10 refills 10x faster", policy: maps.Policy{Default: maps.Limit{PPS: 10, Burst: 2}, Classes: classes},
			steps: []step{passed(u4(c4, 53)).times(20), limited(u4(c4, 53), 0), passed(u4(c4, 53)).after(1e7), limited(u4(c4, 53), 0).after(1e7)},
			rules: map[int]maps.RuleCounter{0: rc(23, 2)}},
		dcase{name: "class scales rule buckets", policy: maps.Policy{Rules: rulesPolicy().Rules, Classes: classes},
			steps: []step{passed(u4(c4, 53)).times(20), limited(u4(c4, 53), ruleUDP53)},
			rules: map[int]maps.RuleCounter{ruleUDP53: rc(21, 1)}},
		dcase{name: "class x10 times throttle x0.1", policy: maps.Policy{Default: maps.Limit{PPS: 10, Burst: 2}, Classes: classes},
			verdicts: []verdictSpec{{c4, maps.VerdictThrottle, 1e12}},
			steps:    []step{passed(u4(c4, 53)).times(2), limited(u4(c4, 53), 0)},
			rules:    map[int]maps.RuleCounter{0: rc(3, 1)}, verdictsLeft: 1},
	)

	// Monitor mode: every drop is counted as would_drop and passes.
	mon := func(p maps.Policy) maps.Policy { p.Mode = maps.ModeMonitor; return p }
	add(
		dcase{name: "monitor block list", policy: mon(maps.Policy{}), block: []maps.Entry{host(a4, 1)},
			steps: []step{blocked(u4(a4, 53), 1).monitor()}, lists: map[uint32]uint64{1: 1}},
		dcase{name: "monitor rate limit", policy: mon(defaultLimit(1)),
			steps: []step{passed(u4(a4, 53)), limited(u4(a4, 53), 0).monitor().times(3)}, rules: map[int]maps.RuleCounter{0: rc(4, 3)}},
		dcase{name: "monitor port rule", policy: mon(rulesPolicy()),
			steps: []step{passed(i4(a4)), limited(i4(a4), ruleICMP).monitor()}, rules: map[int]maps.RuleCounter{ruleICMP: rc(2, 1)}},
		dcase{name: "monitor verdict", policy: mon(maps.Policy{}), verdicts: []verdictSpec{{a4, maps.VerdictBlock, 1e9}},
			steps: []step{verdictDrop(u4(a4, 53)).monitor()}, verdictsLeft: 1},
		dcase{name: "monitor malformed", policy: mon(maps.Policy{}),
			steps: []step{malformed(u4(a4, 53, vlan(q, q, q, q))).monitor(), malformed(patched(udp, func(b []byte) { put16(b, l4v4+4, 7) })).monitor()}},
		dcase{name: "monitor allow and pass unchanged", policy: mon(maps.Policy{}), allow: []maps.Entry{host(a4, 1)},
			steps: []step{allowed(u4(a4, 53), 1), passed(u4(b4, 53))}, lists: map[uint32]uint64{1: 1}},
	)

	// Malformed action pass.
	add(
		dcase{name: "malformed pass", policy: maps.Policy{MalformedPass: true},
			steps: []step{malformed(u4(a4, 53, vlan(q, q, q, q))).passMalformed(),
				malformed(patched(udp, func(b []byte) { put16(b, l4v4+4, 7) })).passMalformed(),
				malformed(u6(a6, 53, testutil.IPv6Ext(kinds...))).passMalformed()}},
		dcase{name: "malformed pass in monitor mode", policy: maps.Policy{MalformedPass: true, Mode: maps.ModeMonitor},
			steps: []step{malformed(u4(a4, 53, vlan(q, q, q, q))).passMalformed()}},
	)
	return cs
}

// caseGap separates the time bases of the cases sharing one datapath: far
// more than any bucket's depth, so every bucket left by an earlier case is
// full again (GCRA: a theoretical arrival time in the past is a full bucket).
const caseGap = uint64(1e15)

// TestDecide runs every table case through the real program: return code
// and stats slot per packet, then rule counters, list hits, the sources'
// observations, the verdicts map and the misc counters. Loading takes about
// a second (the verifier), so the cases share one datapath: each case
// empties the lists and verdicts, applies its policy and starts at its own
// time base caseGap apart, and every counter is checked as a difference.
func TestDecide(t *testing.T) {
	d := testutil.Load(t, testutil.Setup{ReplayClock: true})
	for i, c := range decideCases(t) {
		base := t0 + uint64(i)*caseGap
		t.Run(c.name, func(t *testing.T) {
			reset(t, d.Maps, c, base)
			rules0, lists0, misc0 := counters(t, d.Maps)
			srcs0 := sourcesOf(t, d.Maps, c)
			n0 := countSources(t, d.Maps)
			for i, s := range c.steps {
				for k := 0; k < s.sends(); k++ {
					ret, act, why, _ := runAt(t, d, s.frame, base+s.at)
					if ret != xdpFor(s.action) || act != s.action || why != s.reason {
						t.Fatalf("step %d send %d: XDP %d, %s/%s; want XDP %d, %s/%s",
							i, k, ret, act, why, xdpFor(s.action), s.action, s.reason)
					}
				}
			}
			rules1, lists1, misc1 := counters(t, d.Maps)
			for id := range rules1 {
				got := maps.RuleCounter{Matched: rules1[id].Matched - rules0[id].Matched, Dropped: rules1[id].Dropped - rules0[id].Dropped}
				if want := c.rules[id]; got != want {
					t.Errorf("rule %d (%s): matched %d dropped %d; want %d, %d",
						id, c.policy.RuleName(id), got.Matched, got.Dropped, want.Matched, want.Dropped)
				}
			}
			for id := range lists1 {
				if got, want := lists1[id]-lists0[id], c.lists[uint32(id)]; got != want {
					t.Errorf("list %d: %d hits, want %d", id, got, want)
				}
			}
			if misc1 != misc0 {
				t.Errorf("misc counters went from %+v to %+v; want unchanged", misc0, misc1)
			}
			created := checkSources(t, d.Maps, c, base, srcs0)
			if n := countSources(t, d.Maps); n != n0+created {
				t.Errorf("%d sources tracked, want %d + %d new", n, n0, created)
			}
			vs, err := d.Maps.Verdicts()
			if err != nil {
				t.Fatal(err)
			}
			if len(vs) != c.verdictsLeft {
				t.Errorf("%d verdicts left in the map, want %d: %+v", len(vs), c.verdictsLeft, vs)
			}
		})
	}
}

// reset empties the verdicts and both lists, applies the case's policy and
// writes its lists and verdicts with expiries from base.
func reset(t *testing.T, s *maps.Set, c dcase, base uint64) {
	t.Helper()
	vs, err := s.Verdicts()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs { // before ApplyPolicy: the key depends on the IPv6 prefix
		if err := s.DeleteVerdict(v.Source.Addr()); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range []*maps.List{s.Allow, s.Block} {
		es, err := l.Entries()
		if err != nil {
			t.Fatal(err)
		}
		var ps []netip.Prefix
		for _, e := range es {
			ps = append(ps, e.Prefix)
		}
		if err := l.Delete(ps); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.ApplyPolicy(&c.policy); err != nil {
		t.Fatal(err)
	}
	if err := s.Allow.Add(at(c.allow, base)); err != nil {
		t.Fatal(err)
	}
	if err := s.Block.Add(at(c.block, base)); err != nil {
		t.Fatal(err)
	}
	for _, v := range c.verdicts {
		if err := s.PutVerdict(netip.MustParseAddr(v.addr), v.action, base+v.expires, maps.OriginCLI, 90); err != nil {
			t.Fatal(err)
		}
	}
}

func counters(t *testing.T, s *maps.Set) ([]maps.RuleCounter, []uint64, maps.Misc) {
	t.Helper()
	rules, err := s.RuleCounters(maps.MaxRules + 1)
	if err != nil {
		t.Fatal(err)
	}
	lists, err := s.ListHits(s.MaxLists())
	if err != nil {
		t.Fatal(err)
	}
	misc, err := s.Misc()
	if err != nil {
		t.Fatal(err)
	}
	return rules, lists, misc
}

func countSources(t *testing.T, s *maps.Set) int {
	t.Helper()
	n := 0
	if err := s.IterateSources(func(b []maps.Source) bool { n += len(b); return true }); err != nil {
		t.Fatal(err)
	}
	return n
}

type srcWant struct {
	addr                                   netip.Addr
	packets, bytes, syns, drops, malformed uint64
	udp, udpSame                           uint64
	first, shape                           uint32 // the first and last UDP shapes (not compared)
}

// wantSources derives each source's expected observations from the steps:
// a packet decided passed or ratelimit was observed (packets, bytes, SYN
// without ACK, rate-limit drops); a malformed packet whose IP header parsed
// (model.Parse sets its family, as parse.h does) counts as malformed; an
// observed UDP datagram counts, and counts as same when its shape
// (model.UDPShape) is the source's previous one's; no other packet touches
// the source. Keyed as the datapath keys sources.
func wantSources(c dcase) (map[[16]byte]*srcWant, [][16]byte) {
	want := map[[16]byte]*srcWant{}
	var order [][16]byte
	for _, st := range c.steps {
		p, _ := model.Parse(st.frame)
		if p.Family == 0 {
			continue
		}
		k := maps.SourceKey(p.Src, c.policy.SourcePrefix())
		w := want[k]
		if w == nil {
			w = &srcWant{addr: p.Src}
			want[k] = w
			order = append(order, k)
		}
		n := uint64(st.sends())
		switch st.reason {
		case maps.ReasonPassed, maps.ReasonRatelimit:
			w.packets += n
			w.bytes += n * uint64(len(st.frame))
			if p.SYNOnly() {
				w.syns += n
			}
			if st.reason == maps.ReasonRatelimit {
				w.drops += n
			}
			if shape, ok := model.UDPShape(&p, st.frame); ok {
				if w.udp == 0 {
					w.first = shape
				} else if shape == w.shape {
					w.udpSame++
				}
				w.udp += n
				w.udpSame += n - 1
				w.shape = shape
			}
		case maps.ReasonMalformed:
			w.malformed += n
		}
	}
	return want, order
}

// sourcesOf snapshots the sources the case's frames come from.
func sourcesOf(t *testing.T, s *maps.Set, c dcase) map[[16]byte]*maps.Source {
	t.Helper()
	want, _ := wantSources(c)
	out := map[[16]byte]*maps.Source{}
	for k, w := range want {
		src, ok, err := s.LookupSource(w.addr)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			out[k] = &src
		}
	}
	return out
}

// checkSources compares the sources' observations, as differences from
// before, with wantSources, and returns how many sources the case created.
func checkSources(t *testing.T, s *maps.Set, c dcase, base uint64, before map[[16]byte]*maps.Source) int {
	t.Helper()
	want, order := wantSources(c)
	created := 0
	for _, k := range order {
		w := want[k]
		got, ok, err := s.LookupSource(w.addr)
		if err != nil {
			t.Fatal(err)
		}
		stateful := w.packets > 0 || w.malformed > 0
		b := before[k]
		switch {
		case b == nil && !stateful:
			if ok {
				t.Errorf("source %s has state %+v; want none", w.addr, got)
			}
			continue
		case !ok:
			t.Errorf("source %s has no state; want %+v", w.addr, *w)
			continue
		case b == nil:
			created++
			b = &maps.Source{}
			if got.FirstSeenNS < base || got.FirstSeenNS > got.LastSeenNS {
				t.Errorf("source %s: first seen %d, last seen %d; want %d <= first <= last", w.addr, got.FirstSeenNS, got.LastSeenNS, base)
			}
		}
		if w.udp > 0 && b.UDP > 0 && b.UDPShape == w.first {
			w.udpSame++ // its first datagram repeats the one before the case
		}
		if stateful && got.LastSeenNS < base {
			t.Errorf("source %s: last seen %d, before this case (%d)", w.addr, got.LastSeenNS, base)
		}
		d := srcWant{addr: w.addr, packets: got.Packets - b.Packets, bytes: got.Bytes - b.Bytes, syns: got.SYNs - b.SYNs,
			drops: got.DropsRatelimit - b.DropsRatelimit, malformed: got.Malformed - b.Malformed,
			udp: got.UDP - b.UDP, udpSame: got.UDPSame - b.UDPSame, first: w.first, shape: w.shape}
		if d != *w {
			t.Errorf("source %s: packets %d bytes %d syns %d drops %d malformed %d udp %d udp_same %d; want %d %d %d %d %d %d %d",
				w.addr, d.packets, d.bytes, d.syns, d.drops, d.malformed, d.udp, d.udpSame,
				w.packets, w.bytes, w.syns, w.drops, w.malformed, w.udp, w.udpSame)
		}
	}
	return created
}

// TestModelDecide holds the Go model to the same table: the same action and
// reason for every packet, the same rule for rate-limit drops and the same
// list for list decisions. It needs no privileges.
func TestModelDecide(t *testing.T) {
	for _, c := range decideCases(t) {
		t.Run(c.name, func(t *testing.T) {
			m, err := model.New(c.policy, at(c.allow, t0), at(c.block, t0))
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range c.verdicts {
				m.SetVerdict(netip.MustParseAddr(v.addr), model.Verdict{Action: v.action, ExpiresNS: t0 + v.expires})
			}
			for i, s := range c.steps {
				for k := 0; k < s.sends(); k++ {
					got := m.Decide(s.frame, t0+s.at)
					if got.Action != s.action || got.Reason != s.reason {
						t.Fatalf("step %d send %d: model %s/%s; want %s/%s", i, k, got.Action, got.Reason, s.action, s.reason)
					}
					if s.reason == maps.ReasonRatelimit && got.Rule != s.rule {
						t.Fatalf("step %d send %d: model says rule %d over its limit; want %d", i, k, got.Rule, s.rule)
					}
					if (s.reason == maps.ReasonAllowlist || s.reason == maps.ReasonBlocklist) && got.ListID != s.list {
						t.Fatalf("step %d send %d: model says list %d; want %d", i, k, got.ListID, s.list)
					}
				}
			}
		})
	}
}
