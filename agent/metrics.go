package agent

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulwark-filter/bulwark/agent/desired"
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
	descMapEntries = prometheus.NewDesc("bulwark_map_entries",
		"Entries in the datapath maps that fill up: sources, verdicts in force, the lists' hosts and prefixes maps.",
		[]string{"interface", "map"}, nil)
	descMapMax = prometheus.NewDesc("bulwark_map_max_entries",
		"The max_entries of the maps of bulwark_map_entries.", []string{"interface", "map"}, nil)
)

// datapathReader is what the collector reads of one interface's maps (a
// *maps.Set): reads that never wait for the agent's writers.
type datapathReader interface {
	Stats() (*maps.Stats, error)
	RuleCounter(id int) (maps.RuleCounter, error)
	ListHits(n int) ([]uint64, error)
	MaxLists() int
	CountSources() (int, error)
	ListCounts(now uint64) map[string]maps.ListCount
	VerdictCounts(now uint64) (map[maps.VerdictAction]int, error)
	ListFill() []maps.MapFill
	MaxSources() int
	MaxVerdicts() int
}

// metricsIface is one interface as the collector reads it.
type metricsIface struct {
	name           string
	mode           string
	pinsPersistent bool
	maps           datapathReader
}

// ruleLabel is a rule id and the name it is exported under.
type ruleLabel struct {
	id   int
	name string
}

// metricsView is what the collector reads and labels its figures with: the
// interfaces, and the running config's rule and list names.
type metricsView struct {
	ifaces    []metricsIface // lists and verdicts are read on the first: they are the same on all
	rules     []ruleLabel
	listNames map[uint32]string
}

func newMetricsView(want *desired.State, ifaces []*iface) *metricsView {
	v := &metricsView{listNames: want.ListNames}
	for _, id := range want.Policy.RuleIDs() {
		v.rules = append(v.rules, ruleLabel{id, want.Policy.RuleName(id)})
	}
	for _, it := range ifaces {
		v.ifaces = append(v.ifaces, metricsIface{name: it.name, mode: string(it.mode),
			pinsPersistent: it.pins.Persistent, maps: it.dp.Maps})
	}
	return v
}

// collector is a self-contained prometheus.Collector: at scrape time it
// reads the maps of the view it is given (the latest published one), in
// batches, and counts the map reads that fail. It takes no lock of the
// agent's.
type collector struct {
	view       func() *metricsView // nil while the agent starts
	scrapeErrs prometheus.Counter
}

func newCollector(view func() *metricsView) *collector {
	return &collector{view: view, scrapeErrs: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "bulwark_scrape_errors_total", Help: "Map reads that failed while serving /metrics.",
	})}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPackets, descBytes, descRuleDrops, descListHits, descListEntries,
		descTracked, descVerdicts, descAttach, descPinsPersistent, descMapEntries, descMapMax} {
		ch <- d
	}
	c.scrapeErrs.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	if v := c.view(); v != nil {
		errs := 0
		for i, it := range v.ifaces {
			errs += collectIface(ch, v, it, i == 0)
		}
		c.scrapeErrs.Add(float64(errs))
	}
	c.scrapeErrs.Collect(ch)
}

// collectIface sends one interface's figures, and the lists' and verdicts'
// when first, and returns how many map reads failed.
func collectIface(ch chan<- prometheus.Metric, v *metricsView, it metricsIface, first bool) int {
	errs := 0
	m := it.maps
	ch <- prometheus.MustNewConstMetric(descAttach, prometheus.GaugeValue, 1, it.name, it.mode)
	ch <- prometheus.MustNewConstMetric(descPinsPersistent, prometheus.GaugeValue, boolGauge(it.pinsPersistent), it.name)
	if st, err := m.Stats(); err == nil {
		for _, act := range maps.Actions {
			for _, r := range maps.Reasons {
				c := st[act][r]
				ch <- prometheus.MustNewConstMetric(descPackets, prometheus.CounterValue, float64(c.Packets), it.name, act.String(), r.String())
				ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(c.Bytes), it.name, act.String(), r.String())
			}
		}
	} else {
		errs++
	}
	for _, r := range v.rules {
		c, err := m.RuleCounter(r.id)
		if err != nil {
			errs++
			break
		}
		ch <- prometheus.MustNewConstMetric(descRuleDrops, prometheus.CounterValue, float64(c.Dropped), it.name, r.name)
	}
	if hits, err := m.ListHits(m.MaxLists()); err == nil {
		for id, name := range v.listNames {
			if int(id) < len(hits) {
				ch <- prometheus.MustNewConstMetric(descListHits, prometheus.CounterValue, float64(hits[id]), it.name, name)
			}
		}
	} else {
		errs++
	}
	if n, err := m.CountSources(); err == nil {
		ch <- prometheus.MustNewConstMetric(descTracked, prometheus.GaugeValue, float64(n), it.name)
		sendFill(ch, it.name, maps.MapFill{Map: maps.MapSources, Entries: n, Max: m.MaxSources()})
	} else {
		errs++
	}
	for _, f := range m.ListFill() {
		sendFill(ch, it.name, f)
	}
	if !first {
		return errs
	}
	now := monotonicNow()
	for name, c := range m.ListCounts(now) {
		ch <- prometheus.MustNewConstMetric(descListEntries, prometheus.GaugeValue, float64(c.IPv4), name, "ipv4")
		ch <- prometheus.MustNewConstMetric(descListEntries, prometheus.GaugeValue, float64(c.IPv6), name, "ipv6")
	}
	if vc, err := m.VerdictCounts(now); err == nil {
		total := 0
		for act, n := range vc {
			ch <- prometheus.MustNewConstMetric(descVerdicts, prometheus.GaugeValue, float64(n), act.String())
			total += n
		}
		sendFill(ch, it.name, maps.MapFill{Map: maps.MapVerdicts, Entries: total, Max: m.MaxVerdicts()})
	} else {
		errs++
	}
	return errs
}

// sendFill sends one map's entries and max_entries.
func sendFill(ch chan<- prometheus.Metric, iface string, f maps.MapFill) {
	ch <- prometheus.MustNewConstMetric(descMapEntries, prometheus.GaugeValue, float64(f.Entries), iface, f.Map)
	ch <- prometheus.MustNewConstMetric(descMapMax, prometheus.GaugeValue, float64(f.Max), iface, f.Map)
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
