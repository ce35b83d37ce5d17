// Package reputation is Bulwark's scorer: every interval it reads the
// datapath's per-source observations, measures each source against a
// baseline it learns online, adds threat-feed, location and history
// evidence, and turns the score into verdicts (throttle, or block with a
// doubling TTL) in the kernel's verdict map. Every score is a sum of named
// components, so every verdict can be explained.
package reputation

import (
	"fmt"
	"hash/maphash"
	"math"
	"math/bits"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/bulwark-filter/bulwark/agent/api"
	"github.com/bulwark-filter/bulwark/maps"
)

// Component names.
const (
	CompRateAnomaly    = "rate_anomaly"
	CompSYNRatio       = "syn_ratio"
	CompPortScan       = "port_scan"
	CompRatelimitDrops = "ratelimit_drops"
	CompMalformed      = "malformed"
	CompRepeat         = "repeat"
	CompCountry        = "country"
	CompASN            = "asn"
	// CompPortScanLong and CompHorizontalScan are in scan.go.
	compFeedPrefix = "feed:"
)

// Weights are each component's largest contribution to a score.
type Weights struct {
	RateAnomaly, SYNRatio, PortScan, RatelimitDrops, Malformed, Repeat float64
	PortScanLong, HorizontalScan                                       float64 // scan.go
	Uniform                                                            float64 // uniform_flood (uniform.go)
}

// Config is the scorer's configuration.
type Config struct {
	Mode          string // enforce, shadow or off
	Interval      time.Duration
	ThrottleScore float64
	BlockScore    float64
	ThrottleFor   time.Duration
	BlockFor      time.Duration
	MaxBlockFor   time.Duration
	MaxVerdicts   int
	Weights       Weights
	// BaselineTau is the baseline's time constant; 0 means 10 minutes.
	BaselineTau time.Duration
	// PortHorizon is how long distinct ports are accumulated for slow
	// scans; 0 means 60 s.
	PortHorizon time.Duration
	// ScanWindow is the datapath's scan epoch before rounding
	// (maps.ScanShift; 0: maps.DefaultScanWindow): it must be the one the
	// datapath's policy has.
	ScanWindow time.Duration
}

// Location is what the location databases say of a source.
type Location struct {
	Country string
	ASN     uint32
	ASOrg   string
}

// Evidence gives the scorer what it knows besides behaviour. Every function
// may be nil.
type Evidence struct {
	// Exempt reports allow-listed and protected sources: never a verdict.
	Exempt func(netip.Addr) bool
	// Feeds returns the score-feeds the address is in, with their weights.
	Feeds func(netip.Addr) []FeedHit
	// Locate looks the address up in the location databases.
	Locate func(netip.Addr) Location
	// CountryWeight and ASNWeight return the configured weights (0: none).
	CountryWeight func(string) float64
	ASNWeight     func(uint32) float64
	// Generation changes whenever what Feeds, Locate or the weights answer
	// may have changed; the engine caches each source's evidence until then.
	Generation func() uint32
}

// FeedHit is membership of a source in a score feed.
type FeedHit struct {
	Feed   string
	Weight float64
}

// Sink is where verdicts go: the verdict maps of every interface.
type Sink interface {
	PutVerdict(src netip.Addr, action maps.VerdictAction, expiresMono uint64, score uint16) error
	DeleteVerdict(src netip.Addr) error
}

// Verdict is one verdict the scorer issued (or, in shadow mode, would have).
type Verdict struct {
	api.VerdictRecord
	expires uint64 // monotonic ns
}

// state is what the scorer keeps per tracked source: 176 bytes (16 of them
// the scan components'), about 185 with the index and the chunks' slack.
type state struct {
	key                                    [16]byte
	packets, bytes, syns, drops, malformed uint64
	portsCur, portsOld                     [2]uint64 // the kernel's 256-bit port sketch folded to 128 bits
	lastCycle                              uint32
	score                                  float32
	contrib                                [5]float32 // behaviour components
	pps                                    float32
	ports, horizon                         uint16  // distinct ports per window, per horizon
	synPct, dropPct                        uint8   // SYN share and rate-limited share, percent
	extraGen                               uint16  // Evidence.Generation (+1) extra was computed at; 0 = never
	extra                                  float32 // feed, country and ASN contributions, cached
	firstSeen                              uint32  // low 32 bits of the source's first_seen_ns: another value means it was evicted and came back
	scan                                   scanState
	udp, udpSame                           uint64  // the datapath's UDP sameness counters (uniform.go)
	uniform                                float32 // uniform_flood's contribution, in score
	uniformPct                             uint8   // share of repeated datagrams, percent
}

// chunk is how many states one allocation holds: the table grows by chunks,
// never by doubling, so its slack stays under one chunk.
const chunk = 4096

// table holds the states in fixed-size chunks, indexed by int32, and finds
// them by key with an index of its own: open addressing over int32 slots (a
// state's index + 1; 0 is free), at most half full, the keys compared in
// the states themselves: 4 to 8 bytes per source where a Go map of the keys
// takes about 40. The hash has a random seed per table (maphash), so
// sources cannot choose addresses that crowd one run of slots.
type table struct {
	chunks [][]state
	n      int
	slots  []int32
	seed   maphash.Seed
}

// minSlots is the smallest index.
const minSlots = 1024

func (t *table) at(i int32) *state { return &t.chunks[i/chunk][i%chunk] }

// home is the slot where the search for key starts.
func (t *table) home(key *[16]byte) int {
	return int(maphash.Bytes(t.seed, key[:]) & uint64(len(t.slots)-1))
}

// slotOf is the slot that holds state i.
func (t *table) slotOf(i int32) int {
	s := t.home(&t.at(i).key)
	for t.slots[s] != i+1 {
		s = (s + 1) & (len(t.slots) - 1)
	}
	return s
}

// find returns the index of key's state.
func (t *table) find(key [16]byte) (int32, bool) {
	if t.n == 0 {
		return 0, false
	}
	for s := t.home(&key); ; s = (s + 1) & (len(t.slots) - 1) {
		// At most half the slots are taken: a free one ends every search.
		switch v := t.slots[s]; {
		case v == 0:
			return 0, false
		case t.at(v-1).key == key:
			return v - 1, true
		}
	}
}

// place indexes state i, whose key the index does not hold.
func (t *table) place(i int32) {
	s := t.home(&t.at(i).key)
	for t.slots[s] != 0 {
		s = (s + 1) & (len(t.slots) - 1)
	}
	t.slots[s] = i + 1
}

// resize rebuilds the index with n slots (a power of two).
func (t *table) resize(n int) {
	if t.slots == nil {
		t.seed = maphash.MakeSeed()
	}
	t.slots = make([]int32, n)
	for i := int32(0); int(i) < t.n; i++ {
		t.place(i)
	}
}

// add adds a state for a key the table does not hold.
func (t *table) add(s state) int32 {
	if 2*(t.n+1) > len(t.slots) {
		t.resize(max(minSlots, 2*len(t.slots)))
	}
	if t.n == len(t.chunks)*chunk {
		t.chunks = append(t.chunks, make([]state, chunk))
	}
	i := int32(t.n)
	*t.at(i) = s
	t.n++
	t.place(i)
	return i
}

// removeSwap removes state i by moving the last one into its place.
func (t *table) removeSwap(i int32) {
	t.unplace(t.slotOf(i))
	last := int32(t.n - 1)
	if i != last {
		t.slots[t.slotOf(last)] = i + 1
		*t.at(i) = *t.at(last)
	}
	t.n--
	if t.n <= (len(t.chunks)-2)*chunk {
		t.chunks[len(t.chunks)-1] = nil
		t.chunks = t.chunks[:len(t.chunks)-1]
	}
	if len(t.slots) > minSlots && 8*t.n < len(t.slots) {
		t.resize(len(t.slots) / 4)
	}
}

// unplace frees slot s, moving back the states after it in its run that
// may go there (deletion in linear probing: every state stays reachable
// from its home slot).
func (t *table) unplace(s int) {
	mask := len(t.slots) - 1
	for j := (s + 1) & mask; t.slots[j] != 0; j = (j + 1) & mask {
		h := t.home(&t.at(t.slots[j] - 1).key)
		// The state at j stays if its home is in (s, j], cyclically.
		if s < j && s < h && h <= j || s > j && (h > s || h <= j) {
			continue
		}
		t.slots[s] = t.slots[j]
		s = j
	}
	t.slots[s] = 0
}

// active is a verdict in force.
type active struct {
	action  maps.VerdictAction
	expires uint64
	score   float64
}

// Engine scores sources. Methods are safe for concurrent use.
type Engine struct {
	cfg      Config
	ev       Evidence
	sink     Sink
	prefix   int // IPv6 tracking prefix
	baseline *Baseline

	mu         sync.Mutex
	states     table
	cycle      uint32
	lastAt     time.Time
	lastRotate time.Time
	active     map[[16]byte]active
	history    map[[16]byte][]Verdict
	pending    []Verdict // issued since the last TakeVerdicts
	stats      Stats
}

// Stats counts what the engine did, for metrics.
type Stats struct {
	Verdicts       map[string]uint64 // action -> enforced verdicts issued
	ShadowVerdicts map[string]uint64 // action -> verdicts computed in shadow mode
	CapHits        uint64            // verdicts refused or evicting at max_verdicts
	SinkErrors     uint64
	LastCycle      time.Duration
	Tracked        int
	CycleDurations []time.Duration // since the last Snapshot
	LastBaseline   map[string]float64
}

// New makes an engine. prefix is the IPv6 tracking prefix of the datapath.
func New(cfg Config, ev Evidence, sink Sink, prefix int) *Engine {
	if cfg.BaselineTau == 0 {
		cfg.BaselineTau = 10 * time.Minute
	}
	if cfg.PortHorizon == 0 {
		cfg.PortHorizon = 60 * time.Second
	}
	return &Engine{
		cfg: cfg, ev: ev, sink: sink, prefix: prefix,
		baseline: NewBaseline(cfg.BaselineTau),
		active:   map[[16]byte]active{},
		history:  map[[16]byte][]Verdict{},
		stats:    Stats{Verdicts: map[string]uint64{}, ShadowVerdicts: map[string]uint64{}},
	}
}

// SetConfig changes thresholds, weights, durations and mode; what the
// engine learnt (baseline, history) stays.
func (e *Engine) SetConfig(cfg Config) {
	e.mu.Lock()
	defer e.mu.Unlock()
	cfg.BaselineTau, cfg.PortHorizon = e.cfg.BaselineTau, e.cfg.PortHorizon
	e.cfg = cfg
}

// SetPrefix changes the IPv6 tracking prefix to the datapath's new one. The
// sources tracked so far are forgotten (their keys were of the old prefix;
// the next cycle finds them again under the new one); active verdicts and
// history are kept, re-keyed to the new prefix.
func (e *Engine) SetPrefix(prefix int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if prefix == e.prefix {
		return
	}
	e.prefix = prefix
	e.states = table{}
	active := make(map[[16]byte]active, len(e.active))
	for k, a := range e.active {
		active[maps.SourceKey(netip.AddrFrom16(k), prefix)] = a
	}
	e.active = active
	history := make(map[[16]byte][]Verdict, len(e.history))
	for k, h := range e.history {
		nk := maps.SourceKey(netip.AddrFrom16(k), prefix)
		history[nk] = append(history[nk], h...)
	}
	e.history = history
}

// Adopt takes the verdicts already in the kernel (from an earlier run) as
// active, so the cap and the doubling continue.
func (e *Engine) Adopt(vs []maps.VerdictEntry, monoNow uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, v := range vs {
		if v.ExpiresNS > monoNow && v.Origin == maps.OriginScorer {
			e.active[maps.SourceKey(v.Source.Addr(), e.prefix)] = active{v.Action, v.ExpiresNS, float64(v.Score)}
		}
	}
}

// Reader reads the datapath's sources in batches (maps.Set.IterateSources).
type Reader func(fn func([]maps.Source) bool) error

// Cycle runs one scoring cycle at wall (or capture) time now and monotonic
// time mono (the datapath's clock, for expiries and port windows).
func (e *Engine) Cycle(now time.Time, mono uint64, read Reader) error {
	start := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	dt := e.cfg.Interval
	if !e.lastAt.IsZero() {
		dt = now.Sub(e.lastAt)
	}
	if dt <= 0 {
		dt = time.Millisecond
	}
	first := e.lastAt.IsZero()
	e.lastAt = now
	e.cycle++
	rotate := false
	if now.Sub(e.lastRotate) >= e.cfg.PortHorizon/2 {
		rotate, e.lastRotate = true, now
	}
	window := maps.PortWindowOf(mono)
	for k, a := range e.active {
		if a.expires <= mono {
			delete(e.active, k)
		}
	}

	e.baseline.beginCycle()
	var candidates []int32
	var gen uint16 = 1
	if e.ev.Generation != nil {
		gen = uint16(e.ev.Generation()) + 1
		if gen == 0 {
			gen = 1
		}
	}
	secs := dt.Seconds()
	// The state the next source most likely has: the one after the last
	// source's. States are added in the order the map is read, and the
	// kernel returns its sources in the same order cycle after cycle while
	// it holds the same ones, so most sources need no index lookup and
	// their states are read in memory order.
	var next int32
	err := read(func(batch []maps.Source) bool {
		for i := range batch {
			src := &batch[i]
			key := maps.SourceKey(src.Source.Addr(), e.prefix)
			idx, ok := next, int(next) < e.states.n && e.states.at(next).key == key
			if !ok {
				idx, ok = e.states.find(key)
			}
			if !ok {
				ns := state{key: key, firstSeen: uint32(src.FirstSeenNS)}
				if first {
					// Present at start: only what it sends from now counts.
					ns.packets, ns.bytes, ns.syns, ns.drops, ns.malformed = src.Packets, src.Bytes, src.SYNs, src.DropsRatelimit, src.Malformed
					ns.udp, ns.udpSame = src.UDP, src.UDPSame
				}
				// New since the last cycle: everything it sent is this
				// interval's.
				idx = e.states.add(ns)
			}
			next = idx + 1
			st := e.states.at(idx)
			st.lastCycle = e.cycle
			if uint32(src.FirstSeenNS) != st.firstSeen {
				// Evicted and back: its counters restarted from zero.
				st.packets, st.bytes, st.syns, st.drops, st.malformed = 0, 0, 0, 0, 0
				st.udp, st.udpSame = 0, 0
				st.firstSeen = uint32(src.FirstSeenNS)
			}
			dp := sub(src.Packets, st.packets)
			if rotate {
				// Every source, also one quiet this cycle: its horizon
				// would otherwise outlive PortHorizon.
				st.portsOld, st.portsCur = st.portsCur, [2]uint64{}
			}
			if dp == 0 && src.Malformed == st.malformed {
				// Nothing this interval: no stale components in explain.
				st.score, st.contrib, st.scan = 0, [5]float32{}, scanState{}
				st.uniform, st.uniformPct = 0, 0
				continue
			}
			var f [numFeatures]float64
			f[FeaturePPS] = float64(dp) / secs
			f[FeatureBPS] = float64(sub(src.Bytes, st.bytes)) / secs
			dsyn := sub(src.SYNs, st.syns)
			f[FeatureSYNPS] = float64(dsyn) / secs
			// The ports of the last complete ~1 s window, or of the
			// current one if it is more (a burst just started).
			cur := 0
			if src.PortWindow == window || src.PortWindow+1 == window {
				cur = src.PortBitsSet
			}
			prev := 0
			if src.PortWindow == window {
				prev = src.PortsPrev
			}
			f[FeaturePorts] = maps.DistinctPorts(max(cur, prev))
			if src.PortWindow == window || src.PortWindow+1 == window {
				st.portsCur[0] |= src.PortBits[0] | src.PortBits[2]
				st.portsCur[1] |= src.PortBits[1] | src.PortBits[3]
			}
			n := 0
			for w := range st.portsCur {
				n += bits.OnesCount64(st.portsCur[w] | st.portsOld[w])
			}
			f[FeatureHorizon] = counts128[n]
			e.scanFeatures(st, src, mono, &f)

			ddrop := sub(src.DropsRatelimit, st.drops)
			dmal := sub(src.Malformed, st.malformed)
			st.packets, st.bytes, st.syns, st.drops, st.malformed = src.Packets, src.Bytes, src.SYNs, src.DropsRatelimit, src.Malformed
			dsame := sub(src.UDPSame, st.udpSame)
			st.udp, st.udpSame = src.UDP, src.UDPSame

			e.behaviour(st, &f, dp, dsyn, ddrop, float64(dmal)/secs)
			e.uniformComponent(st, dp, dsame, f[FeaturePPS])
			if _, verdict := e.active[key]; !verdict {
				e.baseline.observe(&f)
			}
			bound := float64(st.score) + e.cachedExtra(st, gen)
			if len(e.history) > 0 {
				bound += e.cfg.Weights.Repeat
			}
			if bound >= e.cfg.ThrottleScore {
				candidates = append(candidates, idx)
			}
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("read sources: %w", err)
	}

	for _, idx := range candidates {
		st := e.states.at(idx)
		addr := netip.AddrFrom16(st.key).Unmap()
		score, comps := e.total(st, addr, mono)
		e.decide(st, addr, score, comps, now, mono)
	}
	e.baseline.endCycle(dt)
	e.forget()
	e.stats.LastCycle = time.Since(start)
	e.stats.CycleDurations = append(e.stats.CycleDurations, e.stats.LastCycle)
	if len(e.stats.CycleDurations) > 1024 {
		e.stats.CycleDurations = e.stats.CycleDurations[1:]
	}
	e.stats.Tracked = e.states.n
	return nil
}

// sub is a counter's increase from b to a. A counter of the same source
// (same first_seen) below its last reading lost an increment to a race
// (bpf/sources.h, observe: plain increments): no increase, not a restart.
func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

// ramp is 0 below lo, 1 above hi, linear between.
func ramp(x, lo, hi float64) float64 {
	if x <= lo {
		return 0
	}
	if x >= hi {
		return 1
	}
	return (x - lo) / (hi - lo)
}

// logRamp is ramp on a log2 scale: ramp(log2(x), log2(lo), log2(hi)). An
// x at or below lo needs no logarithm (log2 is monotonic): most sources of
// a cycle are there.
func logRamp(x, lo, hi float64) float64 {
	if x <= lo {
		return 0
	}
	return ramp(math.Log2(x), math.Log2(lo), math.Log2(hi))
}

// Thresholds of the behaviour components, relative to the baseline. Each is
// explained in docs/reputation.md.
const (
	// rate: ratio to the baseline where the component starts and where it
	// is full. Rates on a host spread roughly log-normally; 8x the median
	// is beyond what the bulk of ordinary sources reach, 128x is a flood.
	rateStart, rateFull = 8.0, 128.0
	// syn: share of SYN-without-ACK among a source's packets. Ordinary TCP
	// sends one SYN and then ACKs: a share over one half needs sustained
	// connection attempts that never complete.
	synStart, synFull = 0.5, 0.9
	// ports: distinct ports per window (or per horizon) as multiples of the
	// baseline, with absolute minimums: a client uses a handful of ports.
	portStartMin, portFullFactor = 8.0, 4.0
	horizonStartMin              = 12.0
	// drops: share of a source's packets over the operator's own limits;
	// at least dropMin in the interval.
	dropFull = 0.5
	dropMin  = 5
	// malformed packets per second for the full component.
	malformedFull = 10.0
)

// behaviour computes the behaviour components into st.
func (e *Engine) behaviour(st *state, f *[numFeatures]float64, dp, dsyn, ddrop uint64, malPS float64) {
	w := &e.cfg.Weights
	b := e.baseline
	ratio := math.Max(f[FeaturePPS]/b.Value(FeaturePPS), f[FeatureBPS]/b.Value(FeatureBPS))
	st.pps = float32(f[FeaturePPS])
	rate := logRamp(ratio, rateStart, rateFull)

	synRatio := 0.0
	if dp > 0 {
		synRatio = float64(dsyn) / float64(dp)
	}
	st.synPct = uint8(math.Round(100 * synRatio))
	// Weighted by volume, so one SYN of a new connection is not a flood.
	synVolume := ramp(f[FeatureSYNPS], 0, rateStart*b.Value(FeatureSYNPS))
	syn := ramp(synRatio, synStart, synFull) * synVolume

	pStart := math.Max(portStartMin, 4*b.Value(FeaturePorts))
	hStart := math.Max(horizonStartMin, 4*b.Value(FeatureHorizon))
	st.ports, st.horizon = uint16(min(f[FeaturePorts], 65535)), uint16(min(f[FeatureHorizon], 65535))
	ports := math.Max(ramp(f[FeaturePorts], pStart, portFullFactor*pStart),
		ramp(f[FeatureHorizon], hStart, 3*hStart))

	drop := 0.0
	if dp > 0 && ddrop >= dropMin {
		drop = ramp(float64(ddrop)/float64(dp), 0, dropFull)
	}
	st.dropPct = 0
	if dp > 0 {
		st.dropPct = uint8(math.Round(100 * math.Min(1, float64(ddrop)/float64(dp))))
	}
	mal := ramp(malPS, 0, malformedFull)

	st.contrib = [5]float32{
		float32(w.RateAnomaly * rate), float32(w.SYNRatio * syn), float32(w.PortScan * ports),
		float32(w.RatelimitDrops * drop), float32(w.Malformed * mal),
	}
	s := e.scanBehaviour(st, f)
	for _, c := range st.contrib {
		s += c
	}
	st.score = s
}

// cachedExtra is what feeds and location add to st's score, looked up once
// per source and evidence generation: a million sources do not mean a
// million lookups every cycle.
func (e *Engine) cachedExtra(st *state, gen uint16) float64 {
	if e.ev.Feeds == nil && e.ev.Locate == nil {
		return 0
	}
	if st.extraGen != gen {
		sum := 0.0
		for _, v := range e.evidence(netip.AddrFrom16(st.key).Unmap()) {
			sum += v
		}
		st.extra, st.extraGen = float32(sum), gen
	}
	return float64(st.extra)
}

// evidence looks addr up in the feeds and the location databases.
func (e *Engine) evidence(addr netip.Addr) map[string]float64 {
	out := map[string]float64{}
	if e.ev.Feeds != nil {
		for _, h := range e.ev.Feeds(addr) {
			if h.Weight > 0 {
				out[compFeedPrefix+h.Feed] += h.Weight
			}
		}
	}
	if e.ev.Locate != nil {
		loc := e.ev.Locate(addr)
		if e.ev.CountryWeight != nil && loc.Country != "" {
			if w := e.ev.CountryWeight(loc.Country); w > 0 {
				out[CompCountry] = w
			}
		}
		if e.ev.ASNWeight != nil && loc.ASN != 0 {
			if w := e.ev.ASNWeight(loc.ASN); w > 0 {
				out[CompASN] = w
			}
		}
	}
	return out
}

// total adds feed, location and repeat evidence to the behaviour score.
func (e *Engine) total(st *state, addr netip.Addr, mono uint64) (float64, map[string]float64) {
	comps := map[string]float64{
		CompRateAnomaly: float64(st.contrib[0]), CompSYNRatio: float64(st.contrib[1]),
		CompPortScan: float64(st.contrib[2]), CompRatelimitDrops: float64(st.contrib[3]),
		CompMalformed: float64(st.contrib[4]), CompUniform: float64(st.uniform),
	}
	scanComponents(st, comps)
	score := float64(st.score)
	add := func(name string, v float64) {
		if v > 0 {
			comps[name] += v
			score += v
		}
	}
	for name, v := range e.evidence(addr) {
		add(name, v)
	}
	add(CompRepeat, e.cfg.Weights.Repeat*e.repeatFactor(st.key, mono))
	// Decide on the score that is shown (one decimal), so a verdict never
	// disagrees with the score printed beside it.
	return math.Min(math.Round(score*10)/10, 100), comps
}

// repeatFactor is 1 - 2^-n for n earlier (ended) verdicts, each counted with a
// half-life of max_block_for: repeat offenders score higher for as long as
// the longest block lasts, and the memory fades after.
func (e *Engine) repeatFactor(key [16]byte, mono uint64) float64 {
	h := e.history[key]
	if len(h) == 0 {
		return 0
	}
	n := 0.0
	now := time.Duration(mono)
	for _, v := range h {
		if v.expires > mono {
			continue // in force: it is the present offence, not a repeat
		}
		age := now - time.Duration(v.expires-uint64(v.For))
		n += math.Exp2(-age.Seconds() / e.cfg.MaxBlockFor.Seconds())
	}
	return 1 - math.Exp2(-n)
}

// blocksBefore counts earlier block verdicts still remembered.
func (e *Engine) blocksBefore(key [16]byte) int {
	n := 0
	for _, v := range e.history[key] {
		if v.Action == "block" {
			n++
		}
	}
	return n
}

func (e *Engine) decide(st *state, addr netip.Addr, score float64, comps map[string]float64, now time.Time, mono uint64) {
	if e.cfg.Mode == "off" {
		return // measuring only (for bulwark top): no verdicts
	}
	var action maps.VerdictAction
	var dur time.Duration
	switch {
	case score >= e.cfg.BlockScore:
		action = maps.VerdictBlock
		dur = e.cfg.BlockFor
		for i := e.blocksBefore(st.key); i > 0 && dur < e.cfg.MaxBlockFor; i-- {
			dur *= 2
		}
		dur = min(dur, e.cfg.MaxBlockFor)
	case score >= e.cfg.ThrottleScore:
		action, dur = maps.VerdictThrottle, e.cfg.ThrottleFor
	default:
		return
	}
	if e.ev.Exempt != nil && e.ev.Exempt(addr) {
		return
	}
	if a, ok := e.active[st.key]; ok && (a.action == maps.VerdictBlock || a.action == action) {
		return // in force already (a block outranks a throttle)
	}
	enforce := e.cfg.Mode == "enforce"
	if len(e.active) >= e.cfg.MaxVerdicts {
		e.stats.CapHits++
		lowKey, low := [16]byte{}, math.Inf(1)
		for k, a := range e.active {
			if a.score < low {
				lowKey, low = k, a.score
			}
		}
		if low >= score {
			return
		}
		if enforce {
			if err := e.sink.DeleteVerdict(netip.AddrFrom16(lowKey).Unmap()); err != nil {
				e.stats.SinkErrors++
				return
			}
		}
		delete(e.active, lowKey)
	}
	expires := mono + uint64(dur)
	v := Verdict{VerdictRecord: api.VerdictRecord{Source: maps.SourceFromKey(st.key, e.prefix), Action: action.String(),
		Score: math.Round(score*10) / 10, At: now, For: dur, Enforced: enforce, Components: comps, Details: scanDetails(st)}, expires: expires}
	if enforce {
		if err := e.sink.PutVerdict(addr, action, expires, uint16(math.Round(score))); err != nil {
			e.stats.SinkErrors++
			return
		}
		e.stats.Verdicts[v.Action]++
	} else {
		e.stats.ShadowVerdicts[v.Action]++
	}
	e.active[st.key] = active{action, expires, score}
	h := append(e.history[st.key], v)
	if len(h) > maxHistory {
		h = h[len(h)-maxHistory:]
	}
	e.history[st.key] = h
	e.pending = append(e.pending, v)
}

// maxHistory bounds the verdicts remembered per source.
const maxHistory = 16

// forget drops sources the datapath no longer tracks (evicted from its LRU)
// and history past its memory.
func (e *Engine) forget() {
	for i := int32(0); int(i) < e.states.n; {
		st := e.states.at(i)
		if st.lastCycle == e.cycle {
			i++
			continue
		}
		e.states.removeSwap(i)
	}
	if len(e.history) > 4*e.cfg.MaxVerdicts {
		// Keep the most recent: drop sources whose last verdict is oldest.
		type kv struct {
			k  [16]byte
			at time.Time
		}
		all := make([]kv, 0, len(e.history))
		for k, h := range e.history {
			all = append(all, kv{k, h[len(h)-1].At})
		}
		sort.Slice(all, func(i, j int) bool { return all[i].at.Before(all[j].at) })
		for _, x := range all[:len(all)-4*e.cfg.MaxVerdicts] {
			delete(e.history, x.k)
		}
	}
}

// TakeVerdicts returns the verdicts issued since the last call (for the
// audit log and the replay report).
func (e *Engine) TakeVerdicts() []Verdict {
	e.mu.Lock()
	defer e.mu.Unlock()
	v := e.pending
	e.pending = nil
	return v
}

// Explain tells why addr's source scores what it does, as of the last cycle.
func (e *Engine) Explain(addr netip.Addr, mono uint64) api.Explanation {
	e.mu.Lock()
	defer e.mu.Unlock()
	key := maps.SourceKey(addr, e.prefix)
	x := api.Explanation{Source: maps.SourceFromKey(key, e.prefix), Baseline: e.baseline.Snapshot(),
		Observed: map[string]float64{}, History: make([]api.VerdictRecord, 0, len(e.history[key])),
		Thresholds: map[string]float64{"throttle": e.cfg.ThrottleScore, "block": e.cfg.BlockScore}}
	for _, v := range e.history[key] {
		x.History = append(x.History, v.VerdictRecord)
	}
	a := netip.AddrFrom16(key).Unmap()
	if e.ev.Exempt != nil {
		x.Exempt = e.ev.Exempt(a)
	}
	if e.ev.Feeds != nil {
		if hits := e.ev.Feeds(a); hits != nil {
			x.Feeds = make([]api.FeedHit, len(hits))
			for i, f := range hits {
				x.Feeds[i] = api.FeedHit(f)
			}
		}
	}
	if e.ev.Locate != nil {
		loc := api.Location(e.ev.Locate(a))
		x.Location = &loc
	}
	if act, ok := e.active[key]; ok {
		h := e.history[key]
		for i := len(h) - 1; i >= 0; i-- {
			if h[i].expires == act.expires {
				v := h[i].VerdictRecord
				x.Active = &v
				break
			}
		}
	}
	w := e.cfg.Weights
	weights := map[string]float64{CompRateAnomaly: w.RateAnomaly, CompSYNRatio: w.SYNRatio, CompPortScan: w.PortScan,
		CompRatelimitDrops: w.RatelimitDrops, CompMalformed: w.Malformed, CompRepeat: w.Repeat,
		CompPortScanLong: w.PortScanLong, CompHorizontalScan: w.HorizontalScan, CompUniform: w.Uniform}
	idx, ok := e.states.find(key)
	x.Tracked = ok
	var comps, values map[string]float64
	var details map[string]string
	switch {
	case x.Active != nil && x.Active.Action == maps.VerdictBlock.String():
		// A blocked source's packets stop before the rate limiter, so the
		// engine sees none of them (it keeps no state, or state that no
		// packet updates): the score is the one the verdict was issued at,
		// with its components (their values are not kept).
		x.ScoreFrom = api.ScoreVerdict
		x.Score = x.Active.Score
		comps, details = x.Active.Components, x.Active.Details
	case ok:
		x.ScoreFrom = api.ScoreLive
		st := e.states.at(idx)
		var score float64
		score, comps = e.total(st, a, mono)
		x.Score = math.Round(score*10) / 10
		x.Observed = map[string]float64{"pps": float64(st.pps), "syn_ratio": float64(st.synPct) / 100,
			"ports_per_second": float64(st.ports), "ports_per_horizon": float64(st.horizon),
			"ratelimit_drop_share": float64(st.dropPct) / 100, "scan_ports": float64(st.scan.ports),
			"scan_addresses": float64(st.scan.addrs), "uniform_share": float64(st.uniformPct) / 100}
		values = map[string]float64{CompRateAnomaly: float64(st.pps) / e.baseline.Value(FeaturePPS),
			CompSYNRatio: float64(st.synPct) / 100, CompPortScan: float64(max(st.ports, st.horizon)),
			CompRatelimitDrops: float64(st.dropPct) / 100, CompRepeat: e.repeatFactor(key, mono),
			CompPortScanLong: float64(st.scan.ports), CompHorizontalScan: float64(st.scan.addrs),
			CompUniform: float64(st.uniformPct) / 100}
		details = scanDetails(st)
	default:
		x.ScoreFrom = api.ScoreNone
		return x
	}
	for name, c := range comps {
		wt, ok := weights[name]
		if !ok {
			wt = c
		}
		x.Components = append(x.Components, api.Component{Name: name, Value: round3(values[name]), Contribution: round3(c), Weight: wt,
			Detail: details[name]})
	}
	slices.SortFunc(x.Components, func(a, b api.Component) int {
		if a.Contribution != b.Contribution {
			if a.Contribution > b.Contribution {
				return -1
			}
			return 1
		}
		if a.Name < b.Name {
			return -1
		}
		return 1
	})
	return x
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// linearCount estimates distinct items from set bits of an m-bit sketch.
func linearCount(m, set int) float64 {
	zeros := max(m-set, 1)
	return float64(m) * math.Log(float64(m)/float64(zeros))
}

// counts64 and counts128 are linearCount of a 64- and a 128-bit sketch at
// every count of bits set, computed once: a cycle reads three sketches of
// every source.
var counts64, counts128 = countTable(64), countTable(128)

func countTable(m int) []float64 {
	t := make([]float64, m+1)
	for set := range t {
		t[set] = linearCount(m, set)
	}
	return t
}

// ActiveVerdicts counts the verdicts in force by action.
func (e *Engine) ActiveVerdicts() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]int{"block": 0, "throttle": 0}
	for _, a := range e.active {
		out[a.action.String()]++
	}
	return out
}

// Forgive removes a verdict from the engine's books (an operator deleted
// it), so the next cycle may judge the source afresh.
func (e *Engine) Forgive(addr netip.Addr) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.active, maps.SourceKey(addr, e.prefix))
}

// Snapshot returns the counters for metrics and resets the cycle durations.
func (e *Engine) Snapshot() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.stats
	s.Verdicts = cloneMap(e.stats.Verdicts)
	s.ShadowVerdicts = cloneMap(e.stats.ShadowVerdicts)
	s.CycleDurations = e.stats.CycleDurations
	e.stats.CycleDurations = nil
	s.LastBaseline = e.baseline.Snapshot()
	return s
}

func cloneMap(m map[string]uint64) map[string]uint64 {
	out := make(map[string]uint64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Top returns the n busiest ("pps", "dropped") or riskiest ("score")
// sources of the last cycle; sources under a verdict are included even when
// their traffic no longer reaches the observations (a block drops it first).
func (e *Engine) Top(n int, by string, mono uint64) []api.Source {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]api.Source, 0, min(n*4, e.states.n)+len(e.active))
	seen := map[[16]byte]bool{}
	view := func(key [16]byte, st *state) api.Source {
		v := api.Source{Source: maps.SourceFromKey(key, e.prefix).String()}
		if p := maps.SourceFromKey(key, e.prefix); p.IsSingleIP() {
			v.Source = p.Addr().String()
		}
		if st != nil && st.lastCycle == e.cycle {
			v.PPS = float64(st.pps)
			v.RatelimitPPS = v.PPS * float64(st.dropPct) / 100
			v.DeliveredPPS = v.PPS - v.RatelimitPPS
			v.SYNShare = float64(st.synPct) / 100
			v.Ports = int(st.ports)
			v.Score = math.Round(float64(st.score)*10) / 10
		}
		if a, ok := e.active[key]; ok {
			v.Verdict = a.action.String()
			v.TTLSeconds = math.Round(float64(a.expires-mono)/1e8) / 10
			v.Score = math.Max(v.Score, math.Round(a.score*10)/10)
			if a.action == maps.VerdictBlock {
				v.DeliveredPPS = 0
			}
		}
		return v
	}
	less := api.SourceOrder(by)
	// A bounded selection: keep the best n while scanning.
	keep := func(v api.Source) {
		if len(out) < n {
			out = append(out, v)
		} else if less(v, out[len(out)-1]) {
			out[len(out)-1] = v
		} else {
			return
		}
		for i := len(out) - 1; i > 0 && less(out[i], out[i-1]); i-- {
			out[i], out[i-1] = out[i-1], out[i]
		}
	}
	for k := range e.active {
		if a := e.active[k]; a.expires > mono {
			idx, ok := e.states.find(k)
			var st *state
			if ok {
				st = e.states.at(idx)
			}
			keep(view(k, st))
			seen[k] = true
		}
	}
	for i := 0; i < e.states.n; i++ {
		st := e.states.at(int32(i))
		if seen[st.key] || st.lastCycle != e.cycle || (st.pps == 0 && st.score == 0) {
			continue
		}
		keep(view(st.key, st))
	}
	return out
}

// Cycles is how many scoring cycles have run.
func (e *Engine) Cycles() uint32 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cycle
}
