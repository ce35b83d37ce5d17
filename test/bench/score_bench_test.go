package bench

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/agent/reputation"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

type nullSink struct{}

func (nullSink) PutVerdict(netip.Addr, maps.VerdictAction, uint64, uint16) error { return nil }
func (nullSink) DeleteVerdict(netip.Addr) error                                  { return nil }

// BenchmarkScoreCycle is one scoring cycle over 100k and over a million
// sources held in the real sources map (synthetic observations written
// into it), read in batches from the kernel as the agent does; it reports
// seconds per cycle and the scorer's heap per tracked source.
func BenchmarkScoreCycle(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("sources=%dk", n/1000), func(b *testing.B) { scoreCycle(b, n) })
	}
}

func scoreCycle(b *testing.B, n int) {
	sizes := testutil.SmallSizes()
	sizes.Sources = 1 << 20
	d := testutil.Load(b, testutil.Setup{Sizes: sizes})
	src := make([]maps.Source, n)
	write := func(round uint64) {
		for i := range src {
			a := netip.AddrFrom4([4]byte{198, byte(18 + i>>16&1), byte(i >> 8), byte(i)})
			if i >= 1<<17 {
				// Beyond 198.18.0.0/15: IPv6 sources in 2001:2::/48.
				b16 := netip.MustParseAddr("2001:2::").As16()
				b16[6], b16[7] = byte(i>>8), byte(i)
				b16[5] = byte(i >> 16)
				a = netip.AddrFrom16(b16)
			}
			pk := round * uint64(1+i%50)
			src[i] = maps.Source{Source: netip.PrefixFrom(a, a.BitLen()), Packets: pk, Bytes: pk * 200, SYNs: round}
		}
		if err := d.Maps.WriteSources(src); err != nil {
			b.Fatal(err)
		}
	}
	write(1)
	tracked := 0
	if err := d.Maps.IterateSources(func(s []maps.Source) bool { tracked += len(s); return true }); err != nil {
		b.Fatal(err)
	}
	cfg := reputation.Config{Mode: "enforce", Interval: time.Second, ThrottleScore: 50, BlockScore: 80,
		ThrottleFor: time.Minute, BlockFor: time.Minute, MaxBlockFor: time.Hour, MaxVerdicts: 100000,
		Weights: reputation.Weights{RateAnomaly: 50, SYNRatio: 40, PortScan: 60, RatelimitDrops: 30, Malformed: 30, Repeat: 20}}
	e := reputation.New(cfg, reputation.Evidence{}, nullSink{}, 64)
	now, mono := time.Unix(1_800_000_000, 0), uint64(1<<40)

	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	if err := e.Cycle(now, mono, d.Maps.IterateSources); err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	perSource := float64(m1.HeapAlloc-m0.HeapAlloc) / float64(tracked)
	write(2)

	b.ResetTimer()
	var total time.Duration
	for i := 0; i < b.N; i++ {
		now, mono = now.Add(time.Second), mono+1<<30
		start := time.Now()
		if err := e.Cycle(now, mono, d.Maps.IterateSources); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/cycle")
	b.ReportMetric(perSource, "B/source")
	b.ReportMetric(float64(tracked), "sources")
	b.Logf("scoring cycle over %d sources: %.3f s (target < 1 s for 1M); scorer heap %.0f B per source",
		tracked, total.Seconds()/float64(b.N), perSource)
}
