package bench

import (
	"os"
	"slices"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/loader"
)

// BenchmarkVerifier loads the datapath b.N times, as attached and as
// replay loads it, and reports the instructions the verifier processed
// and the median, minimum and maximum load time.
func BenchmarkVerifier(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root (BPF)")
	}
	for _, c := range []struct {
		name   string
		replay bool
	}{{"attach", false}, {"replay", true}} {
		b.Run(c.name, func(b *testing.B) {
			var loads []time.Duration
			insns := 0
			for b.Loop() {
				st, err := loader.MeasureVerifier(c.replay)
				if err != nil {
					b.Fatal(err)
				}
				loads = append(loads, st.Load)
				insns = st.Insns
			}
			slices.Sort(loads)
			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
			b.ReportMetric(float64(insns), "insns")
			b.ReportMetric(ms(loads[len(loads)/2]), "ms/load-median")
			b.ReportMetric(ms(loads[0]), "ms/load-min")
			b.ReportMetric(ms(loads[len(loads)-1]), "ms/load-max")
			b.ReportMetric(0, "ns/op")
		})
	}
}
