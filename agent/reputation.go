package agent

import (
	"context"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/reputation"
	"github.com/bulwark-filter/bulwark/maps"
)

// scoring runs the reputation engine of each interface.
type scoring struct {
	a          *Agent
	engines    []*reputation.Engine // one per interface, in a.ifaces order
	exempt     atomic.Pointer[reputation.PrefixSet]
	generation atomic.Uint32 // bumped when feed or location evidence may have changed
	lastTop    atomic.Int64  // unix ns of the last /v1/sources request

	cycleSeconds prometheus.Histogram
	verdicts     *prometheus.CounterVec
	shadow       *prometheus.CounterVec
	capHits      prometheus.Counter
	sinkErrors   prometheus.Counter
	seen         map[string]uint64 // engine counters already exported
}

func engineConfig(c *config.Config) reputation.Config {
	r := c.Reputation
	return reputation.Config{
		Mode: r.Mode, Interval: r.Interval,
		ThrottleScore: float64(r.ThrottleScore), BlockScore: float64(r.BlockScore),
		ThrottleFor: r.ThrottleFor, BlockFor: r.BlockFor, MaxBlockFor: r.MaxBlockFor,
		MaxVerdicts: int(r.MaxVerdicts),
		Weights: reputation.Weights{RateAnomaly: r.Weights.RateAnomaly, SYNRatio: r.Weights.SYNRatio,
			PortScan: r.Weights.PortScan, RatelimitDrops: r.Weights.RatelimitDrops,
			Malformed: r.Weights.Malformed, Repeat: r.Weights.Repeat},
	}
}

// ifaceSink writes one engine's verdicts into its interface's verdict map.
type ifaceSink struct{ m *maps.Set }

func (s ifaceSink) PutVerdict(src netip.Addr, action maps.VerdictAction, expires uint64, score uint16) error {
	return s.m.PutVerdict(src, action, expires, maps.OriginScorer, score)
}

func (s ifaceSink) DeleteVerdict(src netip.Addr) error { return s.m.DeleteVerdict(src) }

func newScoring(a *Agent) *scoring {
	s := &scoring{a: a, seen: map[string]uint64{}}
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
func (s *scoring) start(cfg *config.Config, fs *feedSet, geo *geoSource) error {
	s.rebuildExempt(cfg)
	ev := reputation.Evidence{
		Exempt:        func(a netip.Addr) bool { return s.exempt.Load().Contains(a) },
		Feeds:         fs.scoreHits,
		Locate:        geo.locate,
		CountryWeight: geo.countryWeight,
		ASNWeight:     geo.asnWeight,
		Generation:    func() uint32 { return s.generation.Load() },
	}
	mono := monotonicNow()
	for _, it := range s.a.ifaces {
		e := reputation.New(engineConfig(cfg), ev, ifaceSink{it.dp.Maps}, it.dp.Maps.IPv6Prefix())
		vs, err := it.dp.Maps.Verdicts()
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
	s.exempt.Store(reputation.NewPrefixSet(exemptPrefixes(cfg, s.a.ifaces)))
}

// reconfigure applies a reloaded config to the running engines, with the
// IPv6 tracking prefix the datapath now uses.
func (s *scoring) reconfigure(cfg *config.Config) {
	s.rebuildExempt(cfg)
	s.generation.Add(1)
	for i, e := range s.engines {
		e.SetConfig(engineConfig(cfg))
		e.SetPrefix(s.a.ifaces[i].dp.Maps.IPv6Prefix())
	}
}

// run scores every interval until ctx ends.
func (s *scoring) run(ctx context.Context) {
	for {
		s.a.mu.Lock()
		interval := s.a.cfg.Reputation.Interval
		mode := s.a.cfg.Reputation.Mode
		s.a.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
		// With the engine off, rates are still measured while someone
		// watches bulwark top (never otherwise: a cycle over a million
		// sources is most of a second of CPU).
		if mode == "off" && time.Since(time.Unix(0, s.lastTop.Load())) > topIdle {
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
		it := s.a.ifaces[i]
		if err := e.Cycle(now, mono, it.dp.Maps.IterateSources); err != nil {
			s.a.log.Error("scoring cycle", "interface", it.name, "error", err)
			continue
		}
		for _, v := range e.TakeVerdicts() {
			what := "verdict." + v.Action
			if !v.Enforced {
				what = "shadow." + v.Action
			}
			s.a.log.Info("verdict", "interface", it.name, "source", v.Source, "action", v.Action, "score", v.Score,
				"for", v.For, "enforced", v.Enforced, "components", v.Components)
			s.a.auditf(AuditRecord{Who: "scorer", What: what, Target: []string{v.Source.String()},
				Why: componentsText(v.Components), TTL: v.For.String(), Result: "ok",
				Score: v.Score, Components: v.Components})
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

func trimFloat(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// topIdle is how long rates keep being measured, with the engine off,
// after the last bulwark top request.
const topIdle = 30 * time.Second
