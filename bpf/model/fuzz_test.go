package model_test

import (
	"encoding/binary"
	"flag"
	"net/netip"
	"sync"
	"testing"

	"github.com/bulwark-filter/bulwark/bpf/model"
	"github.com/bulwark-filter/bulwark/loader"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// fuzzStepNS is how far the replayed clock moves between two fuzz inputs:
// longer than the depth of every bucket of fuzzPolicy, so every bucket is
// full again when the next input arrives.
const fuzzStepNS = 1000 * 1_000_000_000

// fuzzSetup is the policy the fuzz target runs under. The datapath's state
// (buckets, verdicts, observations) carries from one input to the next, and
// one process runs many inputs, while a failing input is replayed alone in a
// fresh process. So the outcome of an input must not depend on the inputs
// before it, and yet the rate-limit path must be reachable:
//   - the clock moves fuzzStepNS per input, more than every bucket's depth,
//     so each input meets full buckets, exactly as a fresh datapath would;
//   - limits are tight enough that a single frame can exceed them: a byte
//     burst smaller than big frames (1000 B; 500 B at class x0.5; 100 B
//     under the x0.1 throttle), and a packet rule (ICMP, 1/s burst 1) that a
//     throttled source can never conform to (its interval, 10 s, is longer
//     than the 1 s depth);
//   - lists, classes and verdicts have no expiry, so time does not change
//     them (an expired verdict would be deleted, and that is history).
//
// The model runs in the same process in lockstep with the kernel, with the
// same clock, so even if some state did carry over, both sides would carry
// the same.
func fuzzSetup() setup {
	return setup{
		name: "fuzz",
		policy: maps.Policy{
			IPv6Prefix:    56,
			MalformedPass: false,
			Default:       maps.Limit{PPS: 1000, Burst: 100, BytesPerSec: 1000, ByteBurst: 1000},
			Rules: []maps.Rule{
				{Name: "dns", Protocol: maps.ProtoUDP, Ports: []maps.PortRange{{Lo: 53, Hi: 53}},
					Limit: maps.Limit{PPS: 10, Burst: 2, BytesPerSec: 600, ByteBurst: 300}},
				{Name: "syn", Protocol: maps.ProtoTCP, SYN: true, Limit: maps.Limit{PPS: 5, Burst: 1}},
				{Name: "icmp", Protocol: maps.ProtoICMP, Limit: maps.Limit{PPS: 1, Burst: 1}},
				{Name: "icmpv6", Protocol: maps.ProtoICMPv6, Limit: maps.Limit{PPS: 2, Burst: 1, BytesPerSec: 200, ByteBurst: 200}},
				{Name: "web", Protocol: maps.ProtoTCP, Ports: []maps.PortRange{{Lo: 80, Hi: 443}},
					Limit: maps.Limit{BytesPerSec: 800, ByteBurst: 800}},
			},
			Classes: []maps.Class{
				{Name: "partners", Multiplier: 10, CIDRs: []netip.Prefix{pfx("192.168.56.0/24"), pfx("2001:db8:1::/48")}},
				{Name: "slow", Multiplier: 0.5, CIDRs: []netip.Prefix{pfx("10.0.0.0/8"), pfx("2001:db8::/32")}},
			},
		},
		allow: []maps.Entry{
			{Prefix: pfx("192.150.187.43/32"), ListID: 1},
			{Prefix: pfx("2001:db8:2::/48"), ListID: 2},
		},
		block: []maps.Entry{
			{Prefix: pfx("192.168.56.103/32"), ListID: 3},
			{Prefix: pfx("141.142.0.0/16"), ListID: 4},
			{Prefix: pfx("2001:db8:1::1/128"), ListID: 5},
			{Prefix: pfx("2607:f8b0::/32"), ListID: 6},
			{Prefix: pfx("192.150.187.0/24"), ListID: 7},
		},
		verdicts: []verdictSpec{
			{addr("192.0.2.10"), maps.VerdictThrottle, ^uint64(0)},
			{addr("2001:db8:1::2"), maps.VerdictThrottle, ^uint64(0)},
			{addr("127.0.0.1"), maps.VerdictThrottle, ^uint64(0)},
			{addr("10.0.2.15"), maps.VerdictBlock, ^uint64(0)},
			{addr("fe80::223:55ff:fe9c:7326"), maps.VerdictBlock, ^uint64(0)},
		},
	}
}

var fuzzState struct {
	once sync.Once
	mu   sync.Mutex
	h    *harness
	err  error
	now  uint64
}

// fuzzHarness loads the datapath once per process, lazily: the fuzzing
// coordinator never runs an input and so never loads.
func fuzzHarness(t *testing.T) *harness {
	fuzzState.once.Do(func() {
		// Each bucket's depth must be shorter than the clock's step.
		s := fuzzSetup()
		limits := []maps.Limit{s.policy.Default}
		for _, r := range s.policy.Rules {
			limits = append(limits, r.Limit)
		}
		for _, l := range limits {
			if maps.Depth(l.Burst, l.PPS) >= fuzzStepNS || maps.Depth(l.ByteBurst, l.BytesPerSec) >= fuzzStepNS {
				fuzzState.err = errDepth
				return
			}
		}
		// Not testutil.Load: its cleanup would close the datapath with the
		// first input's test. The process's exit releases it.
		d, err := loader.Load(loader.Options{Sizes: sizes(), ReplayClock: true})
		if err != nil {
			fuzzState.err = err
			return
		}
		if err := d.Maps.ApplyPolicy(&s.policy); err != nil {
			fuzzState.err = err
			return
		}
		if err := d.Maps.Allow.Add(s.allow); err != nil {
			fuzzState.err = err
			return
		}
		if err := d.Maps.Block.Add(s.block); err != nil {
			fuzzState.err = err
			return
		}
		m, err := model.New(s.policy, s.allow, s.block)
		if err != nil {
			fuzzState.err = err
			return
		}
		for _, v := range s.verdicts {
			if err := d.Maps.PutVerdict(v.addr, v.action, v.expires, maps.OriginCLI, 0); err != nil {
				fuzzState.err = err
				return
			}
			m.SetVerdict(v.addr, model.Verdict{Action: v.action, ExpiresNS: v.expires})
		}
		st, err := d.Maps.Stats()
		if err != nil {
			fuzzState.err = err
			return
		}
		fuzzState.h = &harness{s: s, d: d, m: m, stats: st,
			ruleDrops: map[int]uint64{}, listHits: map[uint32]uint64{}}
		fuzzState.now = baseNS
	})
	if fuzzState.err != nil {
		t.Fatalf("load datapath for fuzzing: %v", fuzzState.err)
	}
	return fuzzState.h
}

type depthError struct{}

func (depthError) Error() string { return "a bucket of fuzzSetup is deeper than fuzzStepNS" }

var errDepth error = depthError{}

// handMade are seeds the captures lack.
func handMade() [][]byte {
	eth := func(et uint16, rest ...byte) []byte {
		f := make([]byte, 12, 14+len(rest))
		f[0], f[6] = 0x02, 0x02
		f = binary.BigEndian.AppendUint16(f, et)
		return append(f, rest...)
	}
	ipv4 := func(src [4]byte, proto byte, l4 []byte) []byte {
		h := make([]byte, 20)
		h[0] = 0x45
		binary.BigEndian.PutUint16(h[2:], uint16(20+len(l4)))
		h[8], h[9] = 64, proto
		copy(h[12:16], src[:])
		copy(h[16:20], []byte{198, 51, 100, 1})
		return append(h, l4...)
	}
	ipv6 := func(src string, nh byte, payload []byte) []byte {
		h := make([]byte, 40)
		h[0] = 0x60
		binary.BigEndian.PutUint16(h[4:], uint16(len(payload)))
		h[6], h[7] = nh, 64
		a := addr(src).As16()
		copy(h[8:24], a[:])
		copy(h[24:40], addr("2001:db8:ffff::1").AsSlice())
		return append(h, payload...)
	}
	syn := []byte{0x30, 0x39, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0}
	udp53 := []byte{0x30, 0x39, 0, 53, 0, 12, 0, 0, 1, 2, 3, 4}
	icmp := []byte{8, 0, 0, 0, 0, 1, 0, 1}

	var out [][]byte
	out = append(out,
		[]byte{},
		make([]byte, 10),
		eth(0x0806, make([]byte, 28)...), // ARP
		eth(0x0800, ipv4([4]byte{192, 0, 2, 10}, 6, syn)...),
		eth(0x0800, ipv4([4]byte{192, 0, 2, 10}, 1, icmp)...),
		eth(0x0800, ipv4([4]byte{10, 0, 2, 15}, 17, udp53)...),
		eth(0x0800, ipv4([4]byte{127, 0, 0, 1}, 17, append(udp53, make([]byte, 400)...))...),
		eth(0x86dd, ipv6("2001:db8:1::2", 58, []byte{128, 0, 0, 0, 0, 1, 0, 1})...),
		eth(0x86dd, ipv6("2001:db8:3::9", 6, syn)...),
	)
	// Four VLAN tags.
	q := eth(0x8100, 0, 1, 0x88, 0xa8, 0, 2, 0x81, 0x00, 0, 3, 0x81, 0x00, 0, 4, 0x08, 0x00)
	out = append(out, append(q, ipv4([4]byte{1, 2, 3, 4}, 17, udp53)...))
	// IHL 4.
	bad := eth(0x0800, ipv4([4]byte{1, 2, 3, 4}, 17, udp53)...)
	bad[14] = 0x44
	out = append(out, bad)
	// Nine and eight IPv6 destination-options headers, then UDP.
	for _, n := range []int{8, 9} {
		var chain []byte
		for i := 0; i < n; i++ {
			next := byte(60)
			if i == n-1 {
				next = 17
			}
			chain = append(chain, next, 0, 1, 4, 0, 0, 0, 0)
		}
		out = append(out, eth(0x86dd, ipv6("2001:db8:4::1", 60, append(chain, udp53...))...))
	}
	// A non-first IPv6 fragment.
	frag := []byte{6, 0, 0x01, 0x00, 0, 0, 0, 7}
	out = append(out, eth(0x86dd, ipv6("2001:db8:1::2", 44, append(frag, 1, 2, 3, 4))...))
	return out
}

// FuzzDifferential compares the kernel and the model on arbitrary frames.
// Its seed corpus (every distinct frame of every capture and the hand-made
// frames) runs in plain `go test`.
//
// Under -fuzz the seeds are only where mutation starts, and gathering their
// baseline coverage costs several ms each: the ~12k distinct frames would
// eat minutes. So when fuzzing, each capture gives at most 100 frames,
// evenly spaced; plain `go test` runs every distinct frame.
func FuzzDifferential(f *testing.F) {
	perCapture := 1 << 30
	if fl := flag.Lookup("test.fuzz"); fl != nil && fl.Value.String() != "" {
		perCapture = 100
	}
	seen := map[string]bool{}
	add := func(b []byte) {
		if !seen[string(b)] {
			seen[string(b)] = true
			f.Add(b)
		}
	}
	for _, c := range loadCaptures(f) {
		step := max(1, len(c.frames)/perCapture)
		for i := 0; i < len(c.frames); i += step {
			add(c.frames[i])
		}
	}
	for _, fr := range handMade() {
		add(fr)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < minFrame {
			// BPF_PROG_TEST_RUN refuses XDP frames shorter than an Ethernet
			// header, and no NIC delivers one: only the model can be asked.
			if _, r := model.Parse(frame); r != model.ParseMalformed {
				t.Fatalf("model parses a %d-byte frame as %v, want malformed", len(frame), r)
			}
			return
		}
		testutil.RequireRoot(t)
		h := fuzzHarness(t)
		fuzzState.mu.Lock()
		defer fuzzState.mu.Unlock()
		fuzzState.now += fuzzStepNS
		h.t = t
		if diff, _ := h.step(frame, fuzzState.now); diff != "" {
			(&divergences{t: t, limit: 1}).add("fuzz", diff, frame)
		}
	})
}
