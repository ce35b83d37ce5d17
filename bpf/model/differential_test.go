// Package model_test runs every packet of the reference captures, and
// random mutations of them, through the real XDP program (BPF_PROG_TEST_RUN
// with the replay clock) and through the Go model (bpf/model) with the same
// policy, lists, verdicts and time, and requires the same action and reason
// for every frame, and the same per-rule and per-list counters.
package model_test

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"

	"github.com/bulwark-filter/bulwark/bpf/model"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// gapNS separates captures on the replayed timeline: longer than any
// bucket's depth, so each capture starts with refilled buckets.
const gapNS = 10_000_000_000

// timeline places the captures one after another from baseNS and returns
// each capture's start.
func timeline(cs []*capture) map[string]uint64 {
	out := map[string]uint64{}
	now := baseNS
	for _, c := range cs {
		out[c.name] = now
		now += c.ts[len(c.ts)-1] + gapNS
	}
	return out
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

// limitedPolicy has a default limit low enough that the floods in the
// captures hit it, a rule of every kind, and classes scaling up and down.
func limitedPolicy(v6prefix int) maps.Policy {
	return maps.Policy{
		IPv6Prefix: v6prefix,
		Default:    maps.Limit{PPS: 100, Burst: 50, BytesPerSec: 150_000, ByteBurst: 30_000},
		Rules: []maps.Rule{
			{Name: "dns", Protocol: maps.ProtoUDP, Ports: []maps.PortRange{{Lo: 53, Hi: 53}},
				Limit: maps.Limit{PPS: 20, Burst: 5}},
			{Name: "dhcp", Protocol: maps.ProtoUDP, Ports: []maps.PortRange{{Lo: 67, Hi: 68}},
				Limit: maps.Limit{PPS: 50, Burst: 20, BytesPerSec: 10_000, ByteBurst: 5_000}},
			{Name: "syn", Protocol: maps.ProtoTCP, SYN: true,
				Limit: maps.Limit{PPS: 30, Burst: 10}},
			{Name: "icmp", Protocol: maps.ProtoICMP,
				Limit: maps.Limit{PPS: 10, Burst: 3}},
			{Name: "icmpv6", Protocol: maps.ProtoICMPv6,
				Limit: maps.Limit{PPS: 200, Burst: 50, BytesPerSec: 100_000, ByteBurst: 20_000}},
			{Name: "web", Protocol: maps.ProtoTCP, Ports: []maps.PortRange{{Lo: 80, Hi: 443}},
				Limit: maps.Limit{PPS: 40, Burst: 20, BytesPerSec: 60_000, ByteBurst: 20_000}},
			{Name: "ssh", Protocol: maps.ProtoTCP, Ports: []maps.PortRange{{Lo: 22, Hi: 22}},
				Limit: maps.Limit{PPS: 5, Burst: 10}},
		},
		Classes: []maps.Class{
			{Name: "partners", Multiplier: 10, CIDRs: []netip.Prefix{
				pfx("192.168.56.1/32"), pfx("2001:db8:1::/48"), pfx("141.142.220.0/24")}},
			{Name: "slow", Multiplier: 0.5, CIDRs: []netip.Prefix{pfx("127.0.0.0/8"), pfx("2001:db8:1::3/128")}},
		},
	}
}

// lists puts sources seen in the captures on the lists: hosts and prefixes
// of both families, distinct list ids, one entry expiring mid-replay.
func lists(start map[string]uint64) (allow, block []maps.Entry) {
	allow = []maps.Entry{
		{Prefix: pfx("192.150.187.43/32"), ListID: 1},
		{Prefix: pfx("2001:db8:2::/48"), ListID: 2},
		{Prefix: pfx("20.20.20.0/24"), ListID: 3},
		{Prefix: pfx("2001:db8::10/128"), ListID: 4},
	}
	block = []maps.Entry{
		{Prefix: pfx("192.168.56.103/32"), ListID: 10},
		{Prefix: pfx("141.142.0.0/16"), ListID: 11},
		{Prefix: pfx("2001:db8:1::1/128"), ListID: 12},
		{Prefix: pfx("2607:f8b0::/32"), ListID: 13},
		{Prefix: pfx("2.1.1.1/32"), ListID: 14},
		// Longer than the /16 above and expiring during its capture: once
		// expired, the /16 applies again (the longest live match).
		{Prefix: pfx("141.142.220.0/24"), ListID: 15, ExpiresNS: start["zeek_wikipedia.pcap"] + 3_000_000_000},
		// A host entry that expires: the prefix behind it applies afterwards.
		{Prefix: pfx("2607:f740:b::f93/128"), ListID: 16, ExpiresNS: start["zeek_ipv6-fragmented-dns.pcap"] + 10_000_000_000},
		{Prefix: pfx("2607:f740::/32"), ListID: 17},
		// Allow beats block.
		{Prefix: pfx("192.150.187.0/24"), ListID: 18},
	}
	return allow, block
}

// setups are the policies every capture runs under.
func setups(cs []*capture) []setup {
	start := timeline(cs)
	allow, block := lists(start)

	monitor := limitedPolicy(64)
	monitor.Mode = maps.ModeMonitor
	monitor.MalformedPass = true

	throttled := limitedPolicy(64)
	throttled.ThrottleMultiplier = 0.25
	// The limits that hold without per-source state: an aggregate per /24
	// and /48 below the floods' rates, and a ceiling on new sources low
	// enough that some sources of the captures are turned away.
	aggregates := limitedPolicy(64)
	aggregates.Aggregate = maps.Limit{PPS: 150, Burst: 60, BytesPerSec: 200_000, ByteBurst: 40_000}
	aggregates.NewSources = maps.Limit{PPS: 2, Burst: 8}

	return []setup{
		{name: "empty", policy: maps.Policy{}},
		{name: "signatures", policy: limitedPolicy(64), allow: allow, block: block, sigs: signatures(start)},
		{name: "limits-v6/64", policy: limitedPolicy(64), allow: allow, block: block},
		{name: "limits-v6/48", policy: limitedPolicy(48), allow: allow, block: block},
		{name: "aggregates", policy: aggregates, allow: allow, block: block},
		{name: "monitor", policy: monitor, allow: allow, block: block},
		{name: "verdicts", policy: throttled, allow: allow, block: block, verdicts: []verdictSpec{
			// The SYN flood's source is throttled; the DHCP flood's blocked.
			{addr("192.0.2.10"), maps.VerdictThrottle, ^uint64(0)},
			{addr("0.0.0.0"), maps.VerdictBlock, ^uint64(0)},
			// The IPv6 flood's /64 is throttled, then the throttle expires.
			{addr("2001:db8:1::2"), maps.VerdictThrottle, start["sv_denial6-5.pcap"] + 2_000_000_000},
			// Blocked until the middle of its capture.
			{addr("10.0.2.15"), maps.VerdictBlock, start["zeek_bro.org.pcap"] + 8_000_000_000},
			// Expired before the replay starts.
			{addr("192.168.56.1"), maps.VerdictBlock, baseNS - 1},
			// Allow-listed: the allow list wins over the verdict.
			{addr("192.150.187.43"), maps.VerdictBlock, ^uint64(0)},
			// An IPv6 source under a block verdict.
			{addr("2001:db8:1::5"), maps.VerdictBlock, ^uint64(0)},
		}},
	}
}

// signatures fill the table with rules over every field, of every action,
// with empty slots between them and one expiring mid-replay; the captures
// hold packets each of them matches.
func signatures(start map[string]uint64) map[int]maps.Signature {
	tcp, udp := uint8(model.ProtoTCP), uint8(model.ProtoUDP)
	return map[int]maps.Signature{
		// Shadow: every SYN without ACK counted, none decided here.
		0: {Fields: maps.SigProto | maps.SigTCPFlags, Proto: tcp, TCPMask: 0x12, TCPValue: 0x02},
		// DNS queries (QR bit clear) to port 53, one bucket for all.
		1: {Fields: maps.SigProto | maps.SigDPort | maps.SigDataPrefix, Action: maps.SigLimit, PPS: 20, Burst: 10,
			Proto: udp, DPort: maps.Range{Lo: 53, Hi: 53}, Data: []byte{0, 0, 0x00}, DataMask: []byte{0, 0, 0x80}},
		// SYNs with options of 20 bytes, a window and TTL range, DF set.
		3: {Fields: maps.SigTCPFlags | maps.SigTCPOptLen | maps.SigWindow | maps.SigTTL | maps.SigDF,
			Action: maps.SigDrop, TCPMask: 0x12, TCPValue: 0x02, TCPOptLen: 20,
			Window: maps.Range{Lo: 5000, Hi: 65535}, TTL: maps.Range{Lo: 33, Hi: 64}, DF: true},
		// Short IPv4 packets with a zero IP ID from high source ports,
		// until the middle of the web capture.
		4: {Fields: maps.SigIPLen | maps.SigIPID | maps.SigSPort, Action: maps.SigLimit, PPS: 5, Burst: 3,
			IPLen: maps.Range{Lo: 40, Hi: 80}, IPIDZero: true, SPort: maps.Range{Lo: 1024, Hi: 65535},
			ExpiresNS: start["zeek_wikipedia.pcap"] + 2_000_000_000},
		// Echo requests, and every ICMPv6 neighbour solicitation.
		7: {Fields: maps.SigICMPType, Action: maps.SigDrop, ICMPType: 8},
		9: {Fields: maps.SigProto | maps.SigICMPType | maps.SigTTL, Action: maps.SigLimit, PPS: 1, Burst: 2,
			Proto: model.ProtoICMPv6, ICMPType: 135, TTL: maps.Range{Lo: 255, Hi: 255}},
		// Expired before the replay.
		12: {Fields: maps.SigProto, Action: maps.SigDrop, Proto: udp, ExpiresNS: baseNS - 1},
		// UDP from port 53 carrying a response, IPv6 hop limits and IPv4 TTLs alike.
		15: {Fields: maps.SigSPort | maps.SigDataPrefix | maps.SigTTL, Action: maps.SigDrop,
			SPort: maps.Range{Lo: 53, Hi: 53}, TTL: maps.Range{Lo: 1, Hi: 128},
			Data: []byte{0, 0, 0x80}, DataMask: []byte{0, 0, 0x80}},
	}
}

// TestCaptures replays every capture under every setup.
func TestCaptures(t *testing.T) {
	testutil.RequireRoot(t)
	cs := loadCaptures(t)
	start := timeline(cs)
	var (
		mu      sync.Mutex
		total   [maps.ActionWouldDrop + 1][maps.ReasonSignature + 1]uint64
		frames  int
		clipped int
	)
	t.Run("setup", func(t *testing.T) {
		for _, s := range setups(cs) {
			t.Run(s.name, func(t *testing.T) {
				t.Parallel() // each setup has its own datapath and model
				h := newHarness(t, s)
				dv := &divergences{t: t, limit: 10}
				for _, c := range cs {
					for i, f := range c.frames {
						diff, _ := h.step(f, start[c.name]+c.ts[i])
						if diff != "" {
							dv.add(fmt.Sprintf("%s packet %d (t=+%dns)", c.name, i+1, c.ts[i]), diff, f)
						}
					}
				}
				dv.done(s.name)
				h.checkCounters()
				for slot, sig := range s.sigs {
					// Each signature must be exercised, except the one expired before the replay.
					expired := sig.ExpiresNS != 0 && sig.ExpiresNS < baseNS
					if c := h.m.SignatureCounter(slot); (c.Matched == 0) != expired {
						t.Errorf("signature %d (%s) matched %d frames", slot, sig.String(), c.Matched)
					}
				}
				t.Logf("%s: decisions [action][reason] %v; %d frames cut to %d bytes, %d shorter than %d run in the model only",
					s.name, h.decisions, h.clipped, maxLinear, h.short, minFrame)
				mu.Lock()
				defer mu.Unlock()
				for a := range h.decisions {
					for r := range h.decisions[a] {
						total[a][r] += h.decisions[a][r]
						frames += int(h.decisions[a][r])
					}
				}
				clipped += h.clipped
			})
		}
	})
	if t.Failed() {
		return
	}

	// The comparison must not pass vacuously: every outcome occurs.
	sum := func(r maps.Reason) uint64 {
		return total[maps.ActionPass][r] + total[maps.ActionDrop][r] + total[maps.ActionWouldDrop][r]
	}
	for _, r := range maps.Reasons {
		if sum(r) == 0 {
			t.Errorf("no frame was decided %v under any setup", r)
		}
	}
	if total[maps.ActionWouldDrop][maps.ReasonRatelimit] == 0 || total[maps.ActionPass][maps.ReasonMalformed] == 0 {
		t.Errorf("monitor mode saw no would_drop/ratelimit or no passed malformed frame")
	}
	if total[maps.ActionDrop][maps.ReasonRatelimit] < 1000 {
		t.Errorf("only %d ratelimit drops: the floods should exceed the limits", total[maps.ActionDrop][maps.ReasonRatelimit])
	}
	if n := len(setups(cs)); clipped > 6*n {
		t.Errorf("%d frames longer than %d bytes under %d setups; the captures hold 6", clipped, maxLinear, n)
	}
	t.Logf("%d frames compared", frames)
}

// mutate derives a frame from f with one of several mutations.
func mutate(rng *rand.Rand, f []byte) []byte {
	g := append([]byte(nil), f...)
	switch rng.IntN(8) {
	case 0: // flip random bytes in the first 80
		for n := 1 + rng.IntN(4); n > 0; n-- {
			i := rng.IntN(min(len(g), 80))
			g[i] ^= byte(1 + rng.IntN(255))
		}
	case 1: // truncate
		g = g[:rng.IntN(len(g)+1)]
	case 2: // 0..5 VLAN tags in front of the EtherType
		if len(g) < 14 {
			break
		}
		tags := rng.IntN(6)
		out := append([]byte(nil), g[:12]...)
		for i := 0; i < tags; i++ {
			tpid := uint16(0x8100)
			if rng.IntN(2) == 0 {
				tpid = 0x88a8
			}
			out = binary.BigEndian.AppendUint16(out, tpid)
			out = binary.BigEndian.AppendUint16(out, uint16(rng.IntN(4096)))
		}
		g = append(out, g[12:]...)
	case 3, 4: // version/IHL nibbles or IPv6 next header of the IP header
		off, et := l3(g)
		if off < 0 || off >= len(g) {
			break
		}
		if et == 0x86dd && off+6 < len(g) && rng.IntN(2) == 0 {
			nh := []byte{0, 6, 17, 43, 44, 50, 51, 58, 59, 60, 135, 139, 140, 253}
			g[off+6] = nh[rng.IntN(len(nh))]
		} else if rng.IntN(2) == 0 {
			g[off] = g[off]&0xf0 | byte(rng.IntN(16))
		} else {
			g[off] = byte(rng.IntN(16))<<4 | g[off]&0x0f
		}
	case 5: // a random length field: IPv4 total length or IPv6 payload length
		off, et := l3(g)
		if off < 0 {
			break
		}
		at := off + 2
		if et == 0x86dd {
			at = off + 4
		}
		if at+2 <= len(g) {
			binary.BigEndian.PutUint16(g[at:], uint16(rng.IntN(len(g)+64)))
		}
	case 6: // random bytes right after the IP header's first 20/40
		for n := 1 + rng.IntN(3); n > 0; n-- {
			i := rng.IntN(len(g) + 1)
			if i < len(g) {
				g[i] = byte(rng.IntN(256))
			}
		}
	case 7: // IPv4 fragment fields (MF, offsets 0-2) or the UDP length
		off, et := l3(g)
		if off < 0 || et != 0x0800 || off+20 > len(g) {
			break
		}
		if rng.IntN(2) == 0 {
			binary.BigEndian.PutUint16(g[off+6:], uint16(rng.IntN(2))<<13|uint16(rng.IntN(3)))
		} else if at := off + int(g[off]&0x0f)*4 + 4; at+2 <= len(g) {
			binary.BigEndian.PutUint16(g[at:], uint16(rng.IntN(len(g)+64)))
		}
	}
	return g
}

// l3 finds the IP header after up to 3 VLAN tags: its offset and EtherType.
func l3(g []byte) (int, uint16) {
	if len(g) < 14 {
		return -1, 0
	}
	off := 14
	et := binary.BigEndian.Uint16(g[12:14])
	for i := 0; i < 3 && (et == 0x8100 || et == 0x88a8); i++ {
		if off+4 > len(g) {
			return -1, 0
		}
		et = binary.BigEndian.Uint16(g[off+2 : off+4])
		off += 4
	}
	return off, et
}

// TestMutations runs random mutations of the capture frames (fixed seed)
// through both sides under the limited policy with lists and verdicts.
func TestMutations(t *testing.T) {
	testutil.RequireRoot(t)
	const budget = 50_000
	const perFrame = 4
	cs := loadCaptures(t)
	// Every frame of the small captures, about 500 of each big one.
	var sel [][]byte
	for _, c := range cs {
		step := max(1, len(c.frames)/500)
		for i := 0; i < len(c.frames); i += step {
			sel = append(sel, c.frames[i])
		}
	}
	for _, s := range setups(cs)[1:] {
		if s.name == "limits-v6/48" {
			continue
		}
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(2, uint64(len(s.name))))
			h := newHarness(t, s)
			dv := &divergences{t: t, limit: 15}
			now := baseNS
			ran := 0
			for i := 0; i < len(sel) && ran < budget/3; i++ {
				for j := 0; j < perFrame; j++ {
					g := mutate(rng, sel[i])
					now += uint64(rng.IntN(5_000_000))
					diff, ok := h.step(g, now)
					if ok {
						ran++
					}
					if diff != "" {
						dv.add(fmt.Sprintf("mutation %d of frame %d", j, i), diff, g)
					}
				}
			}
			dv.done(s.name)
			h.checkCounters()
			t.Logf("%s: %d mutated frames compared; decisions %v", s.name, ran, h.decisions)
		})
	}
}
