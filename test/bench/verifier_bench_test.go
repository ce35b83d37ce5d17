package bench

import (
	"os"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/loader"
)

// BenchmarkVerifier loads the datapath b.N times, as attached and as
// replay loads it, and reports the instructions the verifier processed and
// the mean load time (maps and program created, verification included).
// make bench runs -benchtime 1x -count 5: each line is one load, and the
// report gives the median and spread of the lines.
func BenchmarkVerifier(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root (BPF)")
	}
	for _, c := range []struct {
		name   string
		replay bool
	}{{"attach", false}, {"replay", true}} {
		b.Run(c.name, func(b *testing.B) {
			var total time.Duration
			insns := 0
			for b.Loop() {
				st, err := loader.MeasureVerifier(c.replay)
				if err != nil {
					b.Fatal(err)
				}
				total += st.Load
				insns = st.Insns
			}
			if insns <= 0 {
				b.Fatalf("the verifier reported %d processed instructions", insns)
			}
			b.ReportMetric(float64(insns), "insns")
			b.ReportMetric(float64(total)/float64(time.Millisecond)/float64(b.N), "ms/load")
			b.ReportMetric(0, "ns/op")
		})
	}
}
