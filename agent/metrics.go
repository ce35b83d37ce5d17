package agent

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulwark-filter/bulwark/maps"
)

var (
	descPackets = prometheus.NewDesc("bulwark_packets_total",
		"Packets seen by the datapath, by action and reason.", []string{"interface", "action", "reason"}, nil)
	descBytes = prometheus.NewDesc("bulwark_bytes_total",
		"Bytes seen by the datapath, by action and reason.", []string{"interface", "action", "reason"}, nil)
	descRuleDrops = prometheus.NewDesc("bulwark_rule_drops_total",
		"Packets over a limit (dropped or would drop), by rule: default, a rule's name, aggregate or new_sources.",
		[]string{"interface", "rule"}, nil)
	descListHits = prometheus.NewDesc("bulwark_list_hits_total",
		"Packets that matched an allow or block list.", []string{"interface", "list"}, nil)
	descListEntries = prometheus.NewDesc("bulwark_list_entries",
		"Entries in the allow and block lists.", []string{"list", "family"}, nil)
	descTracked = prometheus.NewDesc("bulwark_tracked_sources",
		"Sources with per-source state in the datapath.", []string{"interface"}, nil)
	descVerdicts = prometheus.NewDesc("bulwark_verdicts_active",
		"Dynamic verdicts in force.", []string{"action"}, nil)
	descAttach = prometheus.NewDesc("bulwark_attach_mode",
		"1 for the XDP mode each interface is attached in.", []string{"interface", "mode"}, nil)
	descPinsPersistent = prometheus.NewDesc("bulwark_pins_persistent",
		"1 when the interface's pins outlive the agent (fail-static holds), 0 when they go with it.", []string{"interface"}, nil)
)

// collector reads the datapath maps at scrape time and counts the map reads
// that fail.
type collector struct {
	a          *Agent
	scrapeErrs prometheus.Counter
}

func newCollector(a *Agent) *collector {
	return &collector{a: a, scrapeErrs: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "bulwark_scrape_errors_total", Help: "Map reads that failed while serving /metrics.",
	})}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPackets, descBytes, descRuleDrops, descListHits, descListEntries,
		descTracked, descVerdicts, descAttach, descPinsPersistent} {
		ch <- d
	}
	c.scrapeErrs.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	a.mu.Lock()
	defer a.mu.Unlock()
	errs := 0
	now := monotonicNow()
	for i, it := range a.ifaces {
		m := it.dp.Maps
		ch <- prometheus.MustNewConstMetric(descAttach, prometheus.GaugeValue, 1, it.name, string(it.mode))
		ch <- prometheus.MustNewConstMetric(descPinsPersistent, prometheus.GaugeValue, boolGauge(it.pins.Persistent), it.name)
		if st, err := m.Stats(); err == nil {
			for _, act := range maps.Actions {
				for _, r := range maps.Reasons {
					v := st[act][r]
					ch <- prometheus.MustNewConstMetric(descPackets, prometheus.CounterValue, float64(v.Packets), it.name, act.String(), r.String())
					ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(v.Bytes), it.name, act.String(), r.String())
				}
			}
		} else {
			errs++
		}
		for _, id := range a.want.Policy.RuleIDs() {
			v, err := m.RuleCounter(id)
			if err != nil {
				errs++
				break
			}
			ch <- prometheus.MustNewConstMetric(descRuleDrops, prometheus.CounterValue, float64(v.Dropped), it.name, a.want.Policy.RuleName(id))
		}
		if hits, err := m.ListHits(m.MaxLists()); err == nil {
			for id, name := range a.want.ListNames {
				if int(id) < len(hits) {
					ch <- prometheus.MustNewConstMetric(descListHits, prometheus.CounterValue, float64(hits[id]), it.name, name)
				}
			}
		} else {
			errs++
		}
		n := 0
		if err := m.IterateSources(func(b []maps.Source) bool { n += len(b); return true }); err == nil {
			ch <- prometheus.MustNewConstMetric(descTracked, prometheus.GaugeValue, float64(n), it.name)
		} else {
			errs++
		}
		if i > 0 {
			continue
		}
		for name, l := range map[string]*maps.List{"allow": m.Allow, "block": m.Block} {
			es, err := l.Entries()
			if err != nil {
				errs++
				continue
			}
			var v4, v6 int
			for _, e := range es {
				if e.ExpiresNS != 0 && e.ExpiresNS <= now {
					continue
				}
				if e.Prefix.Addr().Is4() {
					v4++
				} else {
					v6++
				}
			}
			ch <- prometheus.MustNewConstMetric(descListEntries, prometheus.GaugeValue, float64(v4), name, "ipv4")
			ch <- prometheus.MustNewConstMetric(descListEntries, prometheus.GaugeValue, float64(v6), name, "ipv6")
		}
		counts := map[maps.VerdictAction]int{maps.VerdictBlock: 0, maps.VerdictThrottle: 0}
		if vs, err := m.Verdicts(); err == nil {
			for _, v := range vs {
				if v.ExpiresNS > now {
					counts[v.Action]++
				}
			}
		} else {
			errs++
		}
		for act, n := range counts {
			ch <- prometheus.MustNewConstMetric(descVerdicts, prometheus.GaugeValue, float64(n), act.String())
		}
	}
	c.scrapeErrs.Add(float64(errs))
	c.scrapeErrs.Collect(ch)
}

// boolGauge is 1 for true, 0 for false.
func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func buildInfo() prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bulwark_build_info", Help: "Always 1; the version label says which build runs.",
	}, []string{"version"})
	g.WithLabelValues(Version).Set(1)
	return g
}
