package agent

import (
	"context"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulwark-filter/bulwark/agent/api"
	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/desired"
	"github.com/bulwark-filter/bulwark/agent/geoip"
	"github.com/bulwark-filter/bulwark/agent/reputation"
	"github.com/bulwark-filter/bulwark/maps"
)

// scoreMaps is what the scorer uses of one interface's datapath: the
// sources it reads and the verdicts it writes.
type scoreMaps interface {
	IterateSources(fn func([]maps.Source) bool) error
	Verdicts() ([]maps.VerdictEntry, error)
	IPv6Prefix() int
	reputation.VerdictMap
}

// scoredIface is one interface the scorer judges the sources of.
type scoredIface struct {
	name string
	maps scoreMaps
}

// scoreDeps is what the scoring loop uses of the agent.
type scoreDeps struct {
	log    hclog.Logger
	audit  *Audit
	ifaces []scoredIface
	allow  listReader // the first interface's allow list (never judged); nil for none
	// Evidence beside the datapath's counters: the score feeds and the
	// location databases.
	feeds func(netip.Addr) []reputation.FeedHit
	geo   *geoip.Source
	// generation is the evidence generation, bumped when feed or location
	// evidence may have changed (the feeds bump it too).
	generation *atomic.Uint32
	// publish, when set, shares each enforced verdict with the fleet.
	publish func(api.VerdictRecord)
	// observe, when set, is given every batch of sources the scorer reads
	// (fleet-wide detection's collector).
	observe sourceObserver
}

// sourceObserver is given each batch of interface iface's sources read at
// wall time now and datapath time mono.
type sourceObserver func(iface int, now time.Time, mono uint64, batch []maps.Source)

// scoreTiming is when the loop scores: reputation.interval and mode.
type scoreTiming struct {
	interval time.Duration
	mode     string
}

// scoring runs the reputation engine of each interface.
type scoring struct {
	scoreDeps
	engines []*reputation.Engine // one per interface, in ifaces order
	exempt  atomic.Pointer[reputation.PrefixSet]
	timing  atomic.Pointer[scoreTiming] // of the config in force
	lastTop atomic.Int64                // unix ns of the last /v1/sources request

	cycleSeconds prometheus.Histogram
	verdicts     *prometheus.CounterVec
	shadow       *prometheus.CounterVec
	capHits      prometheus.Counter
	sinkErrors   prometheus.Counter
	seen         map[string]uint64 // engine counters already exported
}

func newScoring(d scoreDeps) *scoring {
	s := &scoring{scoreDeps: d, seen: map[string]uint64{}}
	s.cycleSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "bulwark_score_cycle_seconds", Help: "Time one scoring cycle takes, all interfaces.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
	})
	s.verdicts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bulwark_verdicts_total", Help: "Verdicts put into the kernel, by action and origin.",
	}, []string{"action", "origin"})
	s.shadow = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bulwark_shadow_verdicts_total", Help: "Verdicts computed in shadow mode and not enforced.",
	}, []string{"action"})
	s.capHits = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "bulwark_verdict_cap_hits_total", Help: "Times max_verdicts was reached (a verdict refused or a lower one evicted).",
	})
	s.sinkErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "bulwark_verdict_write_errors_total", Help: "Verdicts the scorer could not write to the kernel.",
	})
	for _, act := range []string{"block", "throttle"} {
		s.verdicts.WithLabelValues(act, "scorer")
		s.shadow.WithLabelValues(act)
	}
	return s
}

func (s *scoring) collectors() []prometheus.Collector {
	return []prometheus.Collector{s.cycleSeconds, s.verdicts, s.shadow, s.capHits, s.sinkErrors}
}

// start makes the engines (they adopt the verdicts already in the kernel).
func (s *scoring) start(cfg *config.Config) error {
	s.rebuildExempt(cfg)
	s.setTiming(cfg)
	ev := reputation.Evidence{
		Exempt:        func(a netip.Addr) bool { return s.exempt.Load().Contains(a) },
		Feeds:         s.feeds,
		Locate:        s.geo.Locate,
		CountryWeight: s.geo.CountryWeight,
		ASNWeight:     s.geo.ASNWeight,
		Generation:    func() uint32 { return s.generation.Load() },
	}
	mono := monotonicNow()
	for _, it := range s.ifaces {
		e := reputation.New(desired.Scorer(cfg), ev, reputation.MapSink{Maps: it.maps}, it.maps.IPv6Prefix())
		vs, err := it.maps.Verdicts()
		if err != nil {
			return err
		}
		e.Adopt(vs, mono)
		s.engines = append(s.engines, e)
	}
	return nil
}

// rebuildExempt collects the never-judged space: the config's allow list,
// run-time allow entries and reputation.protect.
func (s *scoring) rebuildExempt(cfg *config.Config) {
	s.exempt.Store(reputation.NewPrefixSet(exemptPrefixes(cfg, s.allow)))
}

func (s *scoring) setTiming(cfg *config.Config) {
	s.timing.Store(&scoreTiming{interval: cfg.Reputation.Interval, mode: cfg.Reputation.Mode})
}

// reconfigure applies a reloaded config to the running engines, with the
// IPv6 tracking prefix the datapath now uses.
func (s *scoring) reconfigure(cfg *config.Config) {
	s.rebuildExempt(cfg)
	s.setTiming(cfg)
	s.generation.Add(1)
	for i, e := range s.engines {
		e.SetConfig(desired.Scorer(cfg))
		e.SetPrefix(s.ifaces[i].maps.IPv6Prefix())
	}
}

// run scores every interval until ctx ends.
func (s *scoring) run(ctx context.Context) {
	for {
		t := s.timing.Load()
		select {
		case <-ctx.Done():
			return
		case <-time.After(t.interval):
		}
		// With the engine off, rates are still measured while someone
		// watches bulwark top (never otherwise: a cycle over a million
		// sources is most of a second of CPU).
		if t.mode == "off" && time.Since(time.Unix(0, s.lastTop.Load())) > topIdle {
			continue
		}
		s.cycle(time.Now(), monotonicNow())
	}
}

// cycle runs one scoring cycle on every interface and logs and audits the
// verdicts it issued.
func (s *scoring) cycle(now time.Time, mono uint64) {
	start := time.Now()
	for i, e := range s.engines {
		it := s.ifaces[i]
		read := it.maps.IterateSources
		if s.observe != nil {
			read = func(fn func([]maps.Source) bool) error {
				return it.maps.IterateSources(func(b []maps.Source) bool {
					s.observe(i, now, mono, b)
					return fn(b)
				})
			}
		}
		if err := e.Cycle(now, mono, read); err != nil {
			s.log.Error("scoring cycle", "interface", it.name, "error", err)
			continue
		}
		for _, v := range e.TakeVerdicts() {
			what := "verdict." + v.Action
			if !v.Enforced {
				what = "shadow." + v.Action
			}
			s.log.Info("verdict", "interface", it.name, "source", v.Source, "action", v.Action, "score", v.Score,
				"for", v.For, "enforced", v.Enforced, "components", v.Components)
			s.audit.Record(s.log, AuditRecord{Who: "scorer", What: what, Target: []string{v.Source.String()},
				Why: componentsText(v.Components), TTL: v.For.String(), Result: "ok",
				Detail: detailsText(v.Details), Score: v.Score, Components: v.Components})
			if v.Enforced && s.publish != nil {
				s.publish(v.VerdictRecord)
			}
		}
		st := e.Snapshot()
		s.export(it.name, st)
	}
	s.cycleSeconds.Observe(time.Since(start).Seconds())
}

// export adds the engine's new counts to the metrics.
func (s *scoring) export(iface string, st reputation.Stats) {
	add := func(key string, total uint64, c prometheus.Counter) {
		if d := total - s.seen[key]; total >= s.seen[key] && d > 0 {
			c.Add(float64(d))
		}
		s.seen[key] = total
	}
	for act, n := range st.Verdicts {
		add(iface+"/v/"+act, n, s.verdicts.WithLabelValues(act, "scorer"))
	}
	for act, n := range st.ShadowVerdicts {
		add(iface+"/s/"+act, n, s.shadow.WithLabelValues(act))
	}
	add(iface+"/cap", st.CapHits, s.capHits)
	add(iface+"/err", st.SinkErrors, s.sinkErrors)
}

func componentsText(c map[string]float64) string {
	out := ""
	for k, v := range c {
		if v <= 0 {
			continue
		}
		if out != "" {
			out += ", "
		}
		out += k + "=" + trimFloat(v)
	}
	return out
}

// detailsText is a verdict's component details as "name: text; ...",
// by name.
func detailsText(d map[string]string) string {
	names := make([]string, 0, len(d))
	for k := range d {
		names = append(names, k)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, k := range names {
		parts[i] = k + ": " + d[k]
	}
	return strings.Join(parts, "; ")
}

func trimFloat(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// topIdle is how long rates keep being measured, with the engine off,
// after the last bulwark top request.
const topIdle = 30 * time.Second
