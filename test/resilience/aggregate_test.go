package resilience_test

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/agenttest"
	"github.com/bulwark-filter/bulwark/test/netns"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// admitted is the most a bucket of rate pps and burst, full at the start,
// admits over span, in the datapath's integer arithmetic (see
// ratelimit.h): (depth + span) / interval.
func admitted(l maps.Limit, span time.Duration) int {
	interval := uint64(time.Second) / l.PPS
	return int((maps.Depth(l.Burst, l.PPS) + uint64(span)) / interval)
}

// TestFloodAggregateAndCeiling floods the program, on the replay clock,
// with millions of distinct spoofed sources at 200k packets/s: IPv4 from
// 198.19.0.0/16 and IPv6 from 2001:2::/48 (one /48), each address its own
// source, while 200 well-behaved sources tracked before the flood
// (198.18.1.0/24) send one packet each per second. Two configurations:
//
//   - "ceiling": the global ceiling on new sources is on. No more
//     per-source states are created than it admits and what it refuses
//     creates nothing, so the flood churns the table no faster than that;
//   - "aggregate, state churning": no ceiling and a per-source table of
//     4096, which the flood churns 50 times a second, so every flood packet
//     meets a fresh, full per-source bucket. The flood is packed into four
//     /24s. The aggregate limits must still hold: no /24 and no /48 gets
//     more packets through than its bucket admits.
//
// In both, every well-behaved packet is served and the sources map's
// kernel memory stays what it was.
func TestFloodAggregateAndCeiling(t *testing.T) {
	agg := maps.Limit{PPS: 2000, Burst: 2000}
	for _, tt := range []struct {
		name    string
		ceiling maps.Limit
		sources uint32
		v4Mask  uint32 // random host bits under 198.19.0.0
	}{
		{"ceiling", maps.Limit{PPS: 5000, Burst: 5000}, 1 << 16, 0xffff},
		{"aggregate, state churning", maps.Limit{}, 1 << 12, 0x3ff},
	} {
		t.Run(tt.name, func(t *testing.T) { floodAggregate(t, agg, tt.ceiling, tt.sources, tt.v4Mask) })
	}
}

func floodAggregate(t *testing.T, agg, ceiling maps.Limit, sources, v4Mask uint32) {
	total := pick(1_000_000, 10_000_000)
	const (
		floodPPS = 200_000
		goodN    = 200
	)
	sz := testutil.SmallSizes()
	sz.Sources, sz.Aggregates = sources, 1<<12
	d := testutil.Load(t, testutil.Setup{
		Sizes:       sz,
		ReplayClock: true,
		Policy: maps.Policy{
			Mode: maps.ModeEnforce, IPv6Prefix: 128,
			Default:   maps.Limit{PPS: 100, Burst: 100},
			Aggregate: agg, AggregatePrefix4: 24, AggregatePrefix6: 48,
			NewSources: ceiling,
		},
	})
	memBefore, err := d.Maps.Memory()
	if err != nil {
		t.Fatal(err)
	}
	run := d.NewRunner()
	const base = uint64(1) << 40
	good := make([][]byte, goodN)
	for i := range good {
		good[i] = netns.UDP4(macA, macB, netip.AddrFrom4([4]byte{198, 18, 1, byte(i + 1)}), netns.ServerAddr4, 40000,
			agenttest.UDPPort, netns.Payload(1, 64))
		if dec, _, err := run.RunAt(good[i], base); err != nil || dec.Action != maps.ActionPass {
			t.Fatalf("well-behaved source %d before the flood: %+v, %v", i, dec, err)
		}
	}

	rng := rand.New(rand.NewPCG(1, 2))
	f4 := netns.UDP4(macA, macB, netip.MustParseAddr("198.19.0.1"), netns.ServerAddr4, 40000, agenttest.UDPPort, netns.Payload(2, 64))
	f6 := netns.UDP6(macA, macB, netip.MustParseAddr("2001:2::1"), netns.ServerAddr6, 40000, agenttest.UDPPort, netns.Payload(3, 64))
	step := uint64(time.Second) / floodPPS
	goodEvery := floodPPS / goodN // one well-behaved packet per source per second
	passed4 := map[byte]int{}     // flood packets passed per /24 (third octet)
	seen4 := map[uint32]bool{}    // distinct IPv4 flood sources
	var passed6, refused, byAgg, goodSent, goodDropped int
	for i := 0; i < total; i++ {
		now := base + uint64(time.Second) + uint64(i)*step
		var f []byte
		v4 := i%2 == 0
		if v4 {
			a := 198<<24 | 19<<16 | rng.Uint32()&v4Mask
			seen4[a] = true
			binary.BigEndian.PutUint32(f4[14+12:], a)
			ipv4Checksum(f4[14:34])
			f = f4
		} else {
			src := f6[14+8 : 14+24]
			binary.BigEndian.PutUint16(src[6:], uint16(rng.Uint32()))
			binary.BigEndian.PutUint64(src[8:], rng.Uint64())
			f = f6
		}
		dec, _, err := run.RunAt(f, now)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case dec.Action == maps.ActionPass && v4:
			passed4[f4[14+14]]++
		case dec.Action == maps.ActionPass:
			passed6++
		case dec.Reason == maps.ReasonRatelimit && int(dec.Detail) == maps.RuleNewSources:
			refused++
		case dec.Reason == maps.ReasonRatelimit && int(dec.Detail) == maps.RuleAggregate:
			byAgg++
		}
		if i%goodEvery == 0 {
			goodSent++
			dec, _, err := run.RunAt(good[(i/goodEvery)%goodN], now)
			if err != nil {
				t.Fatal(err)
			}
			if dec.Action != maps.ActionPass {
				goodDropped++
				if goodDropped <= 3 {
					t.Errorf("well-behaved source dropped at flood packet %d: %s/%s rule %d", i, dec.Action, dec.Reason, dec.Detail)
				}
			}
		}
	}
	span := time.Duration(uint64(total) * step)

	// The ceiling: states created = packets that asked for one and got it.
	rc, err := d.Maps.RuleCounters(256)
	if err != nil {
		t.Fatal(err)
	}
	ns := rc[maps.RuleNewSources]
	created := int(ns.Matched - ns.Dropped)
	ceilingMax := 0
	if ceiling.Active() {
		ceilingMax = admitted(ceiling, span+time.Second)
		if created > ceilingMax {
			t.Errorf("%d per-source states created in %v; the ceiling admits at most %d", created, span, ceilingMax)
		}
		if int(ns.Dropped) != refused || refused == 0 {
			t.Errorf("the ceiling refused %d packets, its counter says %d; want equal and > 0", refused, ns.Dropped)
		}
	}
	// Every flood packet that got past the ceiling got per-source state (the
	// aggregate is checked only then): without the ceiling, the table of
	// `sources` entries held hundreds of thousands of them in turn.
	tracked := 0
	if err := d.Maps.IterateSources(func(b []maps.Source) bool { tracked += len(b); return true }); err != nil {
		t.Fatal(err)
	}
	misc, err := d.Maps.Misc()
	if err != nil {
		t.Fatal(err)
	}
	if tracked > int(sources) || misc.StateFailed != 0 {
		t.Errorf("%d sources tracked in a table of %d, %d state updates failed", tracked, sources, misc.StateFailed)
	}
	distinct := len(seen4) + total/2 // every IPv6 flood source is new
	// The aggregates.
	aggMax := admitted(agg, span+time.Second)
	worst := 0
	for k, n := range passed4 {
		if n > aggMax {
			t.Errorf("198.19.%d.0/24 passed %d flood packets; its aggregate admits at most %d", k, n, aggMax)
		}
		worst = max(worst, n)
	}
	if passed6 > aggMax {
		t.Errorf("2001:2::/48 passed %d flood packets; its aggregate admits at most %d", passed6, aggMax)
	}
	if goodDropped > 0 {
		t.Errorf("%d of %d well-behaved packets dropped during the flood", goodDropped, goodSent)
	}
	memAfter, err := d.Maps.Memory()
	if err != nil {
		t.Fatal(err)
	}
	if memAfter[maps.MapSources] != memBefore[maps.MapSources] {
		t.Errorf("sources map memory %d B before, %d B after", memBefore[maps.MapSources], memAfter[maps.MapSources])
	}
	summary(t, "%d packets from %d distinct spoofed sources at %d pps over %v of replay time, table %d (%d tracked at the end): "+
		"%d states created past the ceiling (it admits %d; 0 = off), %d refused by it, "+
		"%d dropped by aggregates; busiest /24 passed %d, the /48 %d (aggregate admits %d); well-behaved %d/%d served; sources memlock %d B unchanged",
		total, distinct, floodPPS, span, sources, tracked, created, ceilingMax, refused, byAgg, worst, passed6, aggMax,
		goodSent-goodDropped, goodSent, memAfter[maps.MapSources])
}
