package bench

import (
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

// scoreSources is how many sources BenchmarkScoreCycle scores.
const scoreSources = 1_000_000

// BenchmarkScoreCycle is one scoring cycle over a million sources held in
// the real sources map, read in batches from the kernel as the agent does.
// Before every timed cycle (timer stopped) every source's counters are
// rewritten to those of one more interval, so every cycle scores every
// source; a cycle that read fewer sources than the map holds fails (the
// garbage of the rewrite is collected before the timer starts). It
// reports seconds per cycle (the mean of b.N cycles; make bench runs
// -benchtime 1x -count 5, so each line is one cycle), the scorer's heap per
// source (runtime.MemStats after a GC, less before the first cycle) and the
// kernel's sources map per entry (memlock / max entries).
func BenchmarkScoreCycle(b *testing.B) {
	sizes := testutil.SmallSizes()
	sizes.Sources = 1 << 20
	d := testutil.Load(b, testutil.Setup{Sizes: sizes})
	src := make([]maps.Source, scoreSources)
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
			// Every source sends 1+i%50 packets per round: each rewrite
			// is a new interval with packets from every source.
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
	if tracked != scoreSources {
		b.Fatalf("the sources map holds %d sources, want %d", tracked, scoreSources)
	}
	mem, err := d.Maps.Memory()
	if err != nil {
		b.Fatal(err)
	}
	mapPerEntry := float64(mem[maps.MapSources]) / float64(sizes.Sources)

	cfg := reputation.Config{Mode: "enforce", Interval: time.Second, ThrottleScore: 50, BlockScore: 80,
		ThrottleFor: time.Minute, BlockFor: time.Minute, MaxBlockFor: time.Hour, MaxVerdicts: 100000,
		Weights: reputation.Weights{RateAnomaly: 50, SYNRatio: 40, PortScan: 60, RatelimitDrops: 30, Malformed: 30, Repeat: 20}}
	e := reputation.New(cfg, reputation.Evidence{}, nullSink{}, 64)
	now, mono := time.Unix(1_800_000_000, 0), uint64(1<<40)
	// read is the agent's reader, counting what each cycle reads.
	read := 0
	reader := func(fn func([]maps.Source) bool) error {
		return d.Maps.IterateSources(func(s []maps.Source) bool { read += len(s); return fn(s) })
	}

	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	if err := e.Cycle(now, mono, reader); err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	heapPerSource := (float64(m1.HeapAlloc) - float64(m0.HeapAlloc)) / float64(tracked)

	b.ResetTimer()
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		write(uint64(i) + 2)
		// The rewrite's garbage (its key and value buffers, 200 MB) is
		// the harness's: collected here, not by the timed cycle.
		runtime.GC()
		now, mono, read = now.Add(time.Second), mono+1<<30, 0
		b.StartTimer()
		start := time.Now()
		if err := e.Cycle(now, mono, reader); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		if read != tracked {
			b.Fatalf("cycle %d read %d sources, want %d", i, read, tracked)
		}
	}
	b.StopTimer()
	b.ReportMetric(total.Seconds()/float64(b.N), "s/cycle")
	b.ReportMetric(heapPerSource, "B/source-heap")
	b.ReportMetric(mapPerEntry, "B/entry-map")
	b.ReportMetric(float64(tracked), "sources")
	b.ReportMetric(0, "ns/op")
	b.Logf("scoring cycle over %d sources: %.3f s (target <= 1 s); scorer heap %.0f B per source, sources map %.0f B per entry",
		tracked, total.Seconds()/float64(b.N), heapPerSource, mapPerEntry)
}
