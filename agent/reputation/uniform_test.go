package reputation

import (
	"math"
	"testing"

	"github.com/bulwark-filter/bulwark/agent/api"
	"github.com/bulwark-filter/bulwark/maps"
)

// TestUniformFlood: a source sending one datagram over and over at many
// times the baseline gets uniform_flood on top of rate_anomaly; the same
// rate of varied datagrams, or a repeated datagram at an ordinary rate,
// does not. Expected contributions come from the documented ramps applied
// to the baseline explain reports.
func TestUniformFlood(t *testing.T) {
	tests := []struct {
		name  string
		times float64 // packet rate as a multiple of the baseline
		share float64 // repeated datagrams among its packets
	}{
		{"one datagram at 75x", 75, 1},
		{"varied datagrams at 75x", 75, 0},
		{"one datagram at 3x", 3, 1},
		{"70 % repeated at 20x", 20, 0.7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, sink := newSim(), &fakeSink{}
			cfg := testConfig()
			cfg.Weights.Uniform = 50
			e := New(cfg, Evidence{}, sink, 64)
			run(t, e, s, 20, nil)
			base := e.Explain(attacker, s.mono).Baseline["pps"]
			n := int(math.Round(tt.times * base))
			same := int(math.Round(tt.share * float64(n)))
			run(t, e, s, 1, func(int) {
				s.send(attacker, n, 100, 0, []uint16{9000})
				x := s.src[attacker]
				x.UDP += uint64(n)
				x.UDPSame += uint64(same)
			})
			x := e.Explain(attacker, s.mono)
			ratio := float64(n) / (float64(1<<30) / 1e9) / base // the sim's second is 2^30 ns
			wantU := 50 * ramp(float64(same)/float64(n), 0.5, 0.9) * ramp(math.Log2(ratio), 2, 3)
			wantR := 50 * ramp(math.Log2(ratio), 3, 7)
			got := map[string]float64{}
			for _, c := range x.Components {
				got[c.Name] = c.Contribution
			}
			if math.Abs(got[CompUniform]-wantU) > 0.01 || math.Abs(got[CompRateAnomaly]-wantR) > 0.01 {
				t.Errorf("uniform_flood %.2f rate_anomaly %.2f; want %.2f %.2f (%d packets, %d repeated, baseline %.1f)",
					got[CompUniform], got[CompRateAnomaly], wantU, wantR, n, same, base)
			}
			// (A blocked source's explain shows the verdict, not observations.)
			if want := math.Round(100*float64(same)/float64(n)) / 100; x.ScoreFrom == api.ScoreLive && x.Observed["uniform_share"] != want {
				t.Errorf("observed uniform_share %.2f, want %.2f", x.Observed["uniform_share"], want)
			}
			var want maps.VerdictAction
			switch sum := wantU + wantR; {
			case sum >= cfg.BlockScore:
				want = maps.VerdictBlock
			case sum >= cfg.ThrottleScore:
				want = maps.VerdictThrottle
			}
			got0, ok := sink.puts[attacker]
			if want == 0 && ok || want != 0 && got0 != want {
				t.Errorf("verdict %v (present %v), want %v (score %.1f)", got0, ok, want, wantU+wantR)
			}
			for a := range sink.puts {
				if a != attacker {
					t.Errorf("verdict on well-behaved source %s", a)
				}
			}
		})
	}
}

// TestCountTablesAndLogRamp: the tables the scorer reads sketches from hold
// linear counting's estimate m*ln(m/zeros) (at 0, half and all bits set:
// 0, m*ln 2, m*ln m), and logRamp is ramp on log2 at, just over and around
// its start, where it skips the logarithm.
func TestCountTablesAndLogRamp(t *testing.T) {
	for _, tab := range [][]float64{counts64, counts128} {
		m := len(tab) - 1
		for set, want := range map[int]float64{0: 0, m / 2: float64(m) * math.Ln2, m: float64(m) * math.Log(float64(m))} {
			if math.Abs(tab[set]-want) > 1e-9*want {
				t.Errorf("%d-bit table at %d bits set: %v, want %v", m, set, tab[set], want)
			}
		}
		for set := range tab {
			if tab[set] != linearCount(m, set) {
				t.Errorf("%d-bit table at %d bits set: %v, linearCount %v", m, set, tab[set], linearCount(m, set))
			}
		}
	}
	for _, x := range []float64{0, 1, 3.999, 4, math.Nextafter(4, 5), 5, 6.5, 8, math.Nextafter(8, 9), 100, math.Inf(1), math.NaN()} {
		for _, lh := range [][2]float64{{4, 8}, {8, 128}} {
			got, want := logRamp(x, lh[0], lh[1]), ramp(math.Log2(x), math.Log2(lh[0]), math.Log2(lh[1]))
			if got != want && !(math.IsNaN(got) && math.IsNaN(want)) {
				t.Errorf("logRamp(%v, %v, %v) = %v, want %v", x, lh[0], lh[1], got, want)
			}
		}
	}
	if got := logRamp(16, 4, 8); got != 1 {
		t.Errorf("logRamp(16, 4, 8) = %v, want 1", got)
	}
	if got := logRamp(6, 4, 8); math.Abs(got-(math.Log2(6)-2)) > 1e-12 {
		t.Errorf("logRamp(6, 4, 8) = %v, want log2(6)-2 = %v", got, math.Log2(6)-2)
	}
}
