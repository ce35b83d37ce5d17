package reputation

import (
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// Features the baseline learns, each a per-source rate in one interval.
const (
	FeaturePPS       = iota // packets per second
	FeatureBPS              // bytes per second
	FeatureSYNPS            // SYN-without-ACK per second
	FeaturePorts            // distinct destination ports in one ~1 s window
	FeatureHorizon          // distinct destination ports over the port horizon
	FeatureScanPorts        // distinct ports of connection attempts over the scan window (scan.go)
	FeatureScanAddrs        // distinct destination addresses of connection attempts over the scan window
	numFeatures
)

var featureNames = [numFeatures]string{"pps", "bytes_per_second", "syn_per_second", "ports_per_second", "ports_per_horizon",
	"scan_ports", "scan_addresses"}

// Floors of the baseline: a quiet host's median must not make ordinary
// traffic look anomalous. Each is a rate an ordinary single client reaches
// without being unusual: a few packets per second, a few kB/s, a SYN every
// second or two, a couple of ports, a few ports and addresses tried over
// the scan window.
var floors = [numFeatures]float64{10, 10_000, 1, 2, 4, 4, 4}

// Baseline is the learnt "normal" of this host for each feature: an
// exponentially weighted moving average, over scoring cycles, of the median
// of that feature across the sources active in the cycle.
//
// The median, not the mean or a high quantile, because attackers are few
// among many sources: up to half the active sources can be attacking before
// the median moves. The moving average (time constant Tau) smooths cycle to
// cycle noise and makes the baseline follow slow changes in the host's load
// (a quiet night, a busy day), so "8x the normal rate" means the same on a
// quiet and on a busy host. A cycle may move the baseline by at most a
// factor of 2 (MaxStep), so a sudden flood of new sources cannot drag it up
// at once.
type Baseline struct {
	Tau     time.Duration // time constant of the moving average
	MaxStep float64       // largest factor one cycle may move a feature

	value  [numFeatures]float64
	warm   bool
	sample [numFeatures][]float64
	seen   int
	rnd    *rand.Rand
}

// SampleSize bounds the per-cycle sample the median is taken from
// (reservoir sampling): the median of 4096 random sources is within about
// 2 % (in rank) of the true median, and sorting it costs microseconds.
const SampleSize = 4096

// NewBaseline makes a baseline with time constant tau.
func NewBaseline(tau time.Duration) *Baseline {
	b := &Baseline{Tau: tau, MaxStep: 2, rnd: rand.New(rand.NewPCG(1, 2))}
	for f := range b.sample {
		b.sample[f] = make([]float64, 0, SampleSize)
	}
	return b
}

// Value is the baseline of feature f, never below its floor.
func (b *Baseline) Value(f int) float64 {
	return max(b.value[f], floors[f]) // math.Max's result, inlined
}

// beginCycle starts collecting a new cycle's sample.
func (b *Baseline) beginCycle() {
	for f := range b.sample {
		b.sample[f] = b.sample[f][:0]
	}
	b.seen = 0
}

// observe adds one active source's features to the cycle's sample.
func (b *Baseline) observe(v *[numFeatures]float64) {
	b.seen++
	if b.seen <= SampleSize {
		for f := range v {
			b.sample[f] = append(b.sample[f], v[f])
		}
		return
	}
	if j := b.rnd.IntN(b.seen); j < SampleSize {
		for f := range v {
			b.sample[f][j] = v[f]
		}
	}
}

// endCycle folds the cycle's medians into the moving average. dt is the
// cycle's length.
func (b *Baseline) endCycle(dt time.Duration) {
	if b.seen == 0 {
		return
	}
	alpha := 1 - math.Exp(-dt.Seconds()/b.Tau.Seconds())
	for f := range b.sample {
		s := b.sample[f]
		slices.Sort(s)
		med := s[len(s)/2]
		if !b.warm {
			b.value[f] = med
			continue
		}
		cur := math.Max(b.value[f], floors[f])
		med = math.Min(math.Max(med, cur/b.MaxStep), cur*b.MaxStep)
		b.value[f] += alpha * (med - b.value[f])
	}
	b.warm = true
}

// Snapshot is the baseline as explain and metrics show it.
func (b *Baseline) Snapshot() map[string]float64 {
	out := make(map[string]float64, numFeatures)
	for f := 0; f < numFeatures; f++ {
		out[featureNames[f]] = b.Value(f)
	}
	return out
}
