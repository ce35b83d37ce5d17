// Package sigdetect finds attack signatures: per destination (protocol,
// port) it learns the aggregate packet and new-source rates, and when an
// aggregate turns anomalous with sources too many or too new for
// per-source verdicts to help, it searches the attack-time sample for the
// most specific combination of header fields that covers most attack
// packets and few of the packets that reached the same destination before
// the attack (the counter-sample). The caller feeds it packets (Observe)
// and calls Tick once a second of its clock (capture time in replay);
// docs/signatures.md describes the procedure and its bounds.
package sigdetect

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/bpf/model"
	"github.com/bulwark-filter/bulwark/maps"
)

// Config tunes detection; zero fields take the defaults of DefaultConfig.
type Config struct {
	MinPPS        float64 // an aggregate below this many packets/s is never anomalous
	Factor        float64 // anomalous above Factor x its baseline; calm again below half that
	MinNewSources float64 // ... and with at least this many new sources per second
	NewShare      float64 // ... or this share of its packets from new sources
	MaxKeys       int     // destinations tracked; beyond it, new ones are not
	MaxSources    int     // sources remembered as seen; the set is cleared when full
	SampleSize    int     // packets kept per destination for each of the two samples
	MinSample     int     // attack packets needed before a search
	MinCoverage   float64 // a signature must match at least this share of the attack sample
	MaxCollateral float64 // and at most this share of the counter-sample
	Alpha         float64 // weight of a calm second in the baselines (EWMA)
}

// FromSettings is the detection of a config's signatures block.
func FromSettings(sd config.Signatures) Config {
	return Config{MinPPS: float64(sd.MinPPS), Factor: sd.Factor, MinNewSources: float64(sd.MinNewSources)}
}

// SetAction gives a detected signature the action of a config's signatures
// block: count (computed, counted and shown, not enforced) when shadow,
// a limit of limit_pps when it is set, drop otherwise.
func SetAction(sd config.Signatures, shadow bool, sig *maps.Signature) {
	switch {
	case shadow:
		sig.Action, sig.PPS, sig.Burst = maps.SigCount, 0, 0
	case sd.LimitPPS > 0:
		sig.Action, sig.PPS, sig.Burst = maps.SigLimit, sd.LimitPPS, max(sd.LimitBurst, 1)
	default:
		sig.Action, sig.PPS, sig.Burst = maps.SigDrop, 0, 0
	}
}

// DefaultConfig is what a zero Config means.
func DefaultConfig() Config {
	return Config{MinPPS: 1000, Factor: 8, MinNewSources: 100, NewShare: 0.5, MaxKeys: 4096, MaxSources: 1 << 17,
		SampleSize: 2048, MinSample: 200, MinCoverage: 0.95, MaxCollateral: 0.001, Alpha: 0.1}
}

// Key is a destination: protocol and port (0 for protocols without ports).
type Key struct {
	Proto uint8
	Port  uint16
}

func (k Key) String() string {
	if name, ok := map[uint8]string{1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6"}[k.Proto]; ok {
		return fmt.Sprintf("%s-%d", name, k.Port)
	}
	return fmt.Sprintf("proto%d-%d", k.Proto, k.Port)
}

// Finding is a signature for an anomalous destination.
type Finding struct {
	Key        Key
	Sig        maps.Signature // the match; Action is left to the caller
	Coverage   float64        // share of the attack sample it matches
	Collateral float64        // share of the counter-sample it matches
	PPS        float64        // the destination's packets in the second that raised it
	Baseline   float64        // its learnt packets per second
	NewSources float64        // new sources in that second
	Benign     int            // size of the counter-sample
	Start      time.Time
}

// Why says in words what raised the finding.
func (f *Finding) Why() string {
	return fmt.Sprintf("%s at %.0f pkt/s against a baseline of %.1f, %.0f new sources/s; covers %.1f%% of %s's attack sample, %.2f%% of %d packets before it",
		f.Key, f.PPS, f.Baseline, f.NewSources, 100*f.Coverage, f.Key, 100*f.Collateral, f.Benign)
}

type keyState struct {
	base, baseNew float64           // learnt per second, calm seconds only
	learnt        int               // calm seconds learnt
	pps, newSrc   float64           // this second
	second        []model.SigFields // sample of this second
	secondSeen    int
	benign        []model.SigFields // ring of calm packets
	benignAt      int
	attack        []model.SigFields
	attackSeen    int
	anomalous     bool
	finding       *Finding
	tried         bool // a search failed for this attack: not again until it ends
}

// Detector is detection's state. Not safe for concurrent use.
type Detector struct {
	cfg  Config
	keys map[Key]*keyState
	seen map[netip.Addr]struct{}
	rng  *rand.Rand
}

// New makes a detector.
func New(cfg Config) *Detector {
	def := DefaultConfig()
	for _, f := range []struct{ dst, def *float64 }{{&cfg.MinPPS, &def.MinPPS}, {&cfg.Factor, &def.Factor},
		{&cfg.MinNewSources, &def.MinNewSources}, {&cfg.NewShare, &def.NewShare}, {&cfg.MinCoverage, &def.MinCoverage},
		{&cfg.MaxCollateral, &def.MaxCollateral}, {&cfg.Alpha, &def.Alpha}} {
		if *f.dst == 0 {
			*f.dst = *f.def
		}
	}
	for _, f := range []struct{ dst, def *int }{{&cfg.MaxKeys, &def.MaxKeys}, {&cfg.MaxSources, &def.MaxSources},
		{&cfg.SampleSize, &def.SampleSize}, {&cfg.MinSample, &def.MinSample}} {
		if *f.dst == 0 {
			*f.dst = *f.def
		}
	}
	return &Detector{cfg: cfg, keys: map[Key]*keyState{}, seen: map[netip.Addr]struct{}{}, rng: rand.New(rand.NewPCG(1, 2))}
}

// Observe counts one packet (weight packets, when the caller samples 1 in
// weight) that reached the destinations, and samples it: what replay does
// with every frame. New sources are those not in the set of the last
// MaxSources seen.
func (d *Detector) Observe(frame []byte, weight float64) {
	k, f, src, ok := d.parse(frame)
	if !ok {
		return
	}
	st := d.state(k)
	if st == nil {
		return
	}
	st.pps += weight
	if _, ok := d.seen[src]; !ok {
		if len(d.seen) >= d.cfg.MaxSources {
			clear(d.seen)
		}
		d.seen[src] = struct{}{}
		st.newSrc += weight
	}
	d.keep(st, f)
}

// Count adds packets and new sources that the caller counted (the live
// agent: the datapath's counters) to destination k's current second.
func (d *Detector) Count(k Key, packets, newSources float64) {
	if st := d.state(k); st != nil {
		st.pps += packets
		st.newSrc += newSources
	}
}

// Sample adds one packet to its destination's sample of the current second
// without counting it (the live agent: the datapath counts, Count).
func (d *Detector) Sample(frame []byte) {
	k, f, _, ok := d.parse(frame)
	if !ok {
		return
	}
	if st := d.state(k); st != nil {
		d.keep(st, f)
	}
}

// parse reads a frame's destination, fields and source.
func (d *Detector) parse(frame []byte) (Key, model.SigFields, netip.Addr, bool) {
	p, r := model.Parse(frame)
	if r != model.ParseOK {
		return Key{}, model.SigFields{}, netip.Addr{}, false
	}
	f, _ := model.FieldsOf(frame)
	k := Key{Proto: p.Proto}
	if p.Proto == model.ProtoTCP || p.Proto == model.ProtoUDP {
		k.Port = p.DPort
	}
	return k, f, p.Src, true
}

// state is destination k's state, made when new; nil when MaxKeys are
// tracked already.
func (d *Detector) state(k Key) *keyState {
	st := d.keys[k]
	if st == nil {
		if len(d.keys) >= d.cfg.MaxKeys {
			return nil
		}
		st = &keyState{}
		d.keys[k] = st
	}
	return st
}

// keep adds f to the current second's sample (a reservoir: every packet of
// the second equally likely to be kept).
func (d *Detector) keep(st *keyState, f model.SigFields) {
	st.secondSeen++
	if len(st.second) < d.cfg.SampleSize {
		st.second = append(st.second, f)
	} else if i := d.rng.IntN(st.secondSeen); i < len(st.second) {
		st.second[i] = f
	}
}

// Tick closes the second that ends at now and returns the findings of every
// destination anomalous in it: new ones have Start == now. A destination
// absent from the answer is calm.
func (d *Detector) Tick(now time.Time) []Finding {
	var out []Finding
	for k, st := range d.keys {
		c := d.cfg
		enter := st.pps > max(c.MinPPS, c.Factor*st.base) &&
			(st.newSrc >= c.MinNewSources || st.newSrc >= c.NewShare*st.pps)
		stay := st.pps > max(c.MinPPS, c.Factor*st.base)/2
		switch {
		case !st.anomalous && enter:
			st.anomalous, st.tried, st.attack, st.attackSeen = true, false, nil, 0
		case st.anomalous && !stay:
			st.anomalous, st.finding, st.attack = false, nil, nil
		}
		if st.anomalous {
			for _, s := range st.second {
				d.keepAttack(st, s)
			}
			if st.finding == nil && !st.tried && len(st.attack) >= c.MinSample {
				// The attack-time sample holds the destination's usual
				// traffic too: the signature need cover only the excess.
				excess := max(0, 1-st.base/st.pps)
				if f, ok := search(st.attack, st.benign, excess*c.MinCoverage, c.MaxCollateral); ok {
					f.Coverage = min(1, f.Coverage/excess)
					f.Key, f.PPS, f.Baseline, f.NewSources, f.Benign, f.Start = k, st.pps, st.base, st.newSrc, len(st.benign), now
					st.finding = &f
				} else {
					st.tried = true
				}
			}
			if st.finding != nil {
				out = append(out, *st.finding)
			}
		} else {
			d.learn(st)
		}
		st.pps, st.newSrc, st.second, st.secondSeen = 0, 0, st.second[:0], 0
	}
	slices.SortFunc(out, func(a, b Finding) int {
		return int(a.Key.Proto)<<16 + int(a.Key.Port) - (int(b.Key.Proto)<<16 + int(b.Key.Port))
	})
	return out
}

// learn folds a calm second into the baselines and the counter-sample.
func (d *Detector) learn(st *keyState) {
	a := d.cfg.Alpha
	if st.learnt == 0 {
		a = 1
	}
	st.base += a * (st.pps - st.base)
	st.baseNew += a * (st.newSrc - st.baseNew)
	st.learnt++
	for _, s := range st.second {
		if len(st.benign) < d.cfg.SampleSize {
			st.benign = append(st.benign, s)
		} else {
			st.benign[st.benignAt] = s
			st.benignAt = (st.benignAt + 1) % len(st.benign)
		}
	}
}

// keepAttack adds s to the attack sample (a reservoir sample).
func (d *Detector) keepAttack(st *keyState, s model.SigFields) {
	st.attackSeen++
	if len(st.attack) < d.cfg.SampleSize {
		st.attack = append(st.attack, s)
	} else if i := d.rng.IntN(st.attackSeen); i < len(st.attack) {
		st.attack[i] = s
	}
}
