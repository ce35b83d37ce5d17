package bench

import (
	"os"
	"testing"
)

// BenchmarkDatapath measures every case alternately with the floor (5
// rounds of Program.Benchmark with repeat 1e6, median) and reports each as
// a sub-benchmark with ns/pkt and x_floor. Use -benchtime 1x: one
// iteration is the whole measurement.
func BenchmarkDatapath(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("SKIP: needs root (BPF); run `sudo make bench`")
	}
	const rounds, repeat, retries = 5, 1_000_000, 2
	bb, err := Setup(Options{Logf: b.Logf})
	if err != nil {
		b.Fatal(err)
	}
	defer bb.Close()
	var res []Result
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if res, err = bb.Measure(rounds, repeat, retries); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	for _, r := range res {
		b.Run(r.Name, func(b *testing.B) {
			b.ReportMetric(r.NsPerPkt, "ns/pkt")
			b.ReportMetric(r.XFloor, "x_floor")
		})
	}
	PrintTable(os.Stdout, res, rounds, repeat)
}
