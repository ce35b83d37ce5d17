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
