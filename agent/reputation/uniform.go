package reputation

import "math"

// CompUniform is the component of a flood of one UDP datagram: a source
// whose packets are, most of them, the same datagram as the one before
// (destination port, length and a payload word; bpf/sources.h, observe)
// and that sends at several times the baseline rate. A flood repeats one
// datagram; a NAT gateway's hosts, DNS queries, games and QUIC's encrypted
// packets do not. It lets the scorer judge a flood that rate alone leaves
// under the throttle score (rate_anomaly is full only at 128x).
const CompUniform = "uniform_flood"

// Thresholds of uniform_flood (docs/reputation.md).
const (
	// uniformStart, uniformFull: share of the interval's packets that
	// repeat the source's previous UDP datagram, where the component starts
	// and where it is full.
	uniformStart, uniformFull = 0.5, 0.9
	// uniformRateStart, uniformRateFull: the packet rate, as a multiple of
	// the baseline, where the volume factor starts and where it is full: a
	// repeated datagram at the rate of an ordinary client (a VoIP stream, a
	// game's ticks) is nothing; at 8x the median it is a flood.
	uniformRateStart, uniformRateFull = 4.0, 8.0
)

// uniformFlood is the uniform_flood factor in [0, 1] of a source that sent
// dp packets in the interval, dsame of them UDP datagrams the same as the
// one before, at ppsRatio times the baseline packet rate; and the share
// itself, for explain.
func uniformFlood(dp, dsame uint64, ppsRatio float64) (factor, share float64) {
	if dp == 0 {
		return 0, 0
	}
	share = math.Min(1, float64(dsame)/float64(dp))
	volume := logRamp(ppsRatio, uniformRateStart, uniformRateFull)
	return ramp(share, uniformStart, uniformFull) * volume, share
}

// uniformComponent adds uniform_flood to st's score: dp packets in the
// interval, dsame of them repeated datagrams, at pps packets per second.
func (e *Engine) uniformComponent(st *state, dp, dsame uint64, pps float64) {
	factor, share := uniformFlood(dp, dsame, pps/e.baseline.Value(FeaturePPS))
	st.uniformPct = uint8(math.Round(100 * share))
	st.uniform = float32(e.cfg.Weights.Uniform * factor)
	st.score += st.uniform
}
