package detect

import "github.com/prometheus/client_golang/prometheus"

var (
	descSummaries = prometheus.NewDesc("bulwark_fleet_summaries_total",
		"Window summaries this agent published (result published), could not publish (failed) or dropped with the bus down (dropped).", []string{"result"}, nil)
	descSummaryBytes = prometheus.NewDesc("bulwark_fleet_summary_bytes",
		"Encoded size of the last window summary published (at most 65536).", nil, nil)
	descSummarySources = prometheus.NewDesc("bulwark_fleet_summary_sources",
		"Sources in the last window summary published (kept) and left out to stay within 64 KiB (omitted).", []string{"part"}, nil)
	descAggSummaries = prometheus.NewDesc("bulwark_fleet_aggregate_summaries_total",
		"Summaries the aggregator read: merged, late (after the window's end + grace), invalid, other (another window length).", []string{"result"}, nil)
	descAggWindows = prometheus.NewDesc("bulwark_fleet_aggregate_windows_total",
		"Windows the aggregator decided.", nil, nil)
	descAggVerdicts = prometheus.NewDesc("bulwark_fleet_aggregate_verdicts_total",
		"Fleet verdicts the aggregator decided: written, or unchanged (already in the bucket, e.g. written by another aggregator).", []string{"result"}, nil)
)

// collector exports a publisher's and an aggregator's counts at scrape
// time.
type collector struct {
	p *Publisher
	a *Aggregator
}

// Collectors export the counts of p and a (either may be nil).
func Collectors(p *Publisher, a *Aggregator) []prometheus.Collector {
	return []prometheus.Collector{collector{p, a}}
}

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	if c.p != nil {
		ch <- descSummaries
		ch <- descSummaryBytes
		ch <- descSummarySources
	}
	if c.a != nil {
		ch <- descAggSummaries
		ch <- descAggWindows
		ch <- descAggVerdicts
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	counter, gauge := prometheus.CounterValue, prometheus.GaugeValue
	if c.p != nil {
		s := c.p.Stats()
		ch <- prometheus.MustNewConstMetric(descSummaries, counter, float64(s.Published), "published")
		ch <- prometheus.MustNewConstMetric(descSummaries, counter, float64(s.Failed), "failed")
		ch <- prometheus.MustNewConstMetric(descSummaries, counter, float64(s.Dropped), "dropped")
		ch <- prometheus.MustNewConstMetric(descSummaryBytes, gauge, float64(s.Bytes))
		ch <- prometheus.MustNewConstMetric(descSummarySources, gauge, float64(s.Sources), "kept")
		ch <- prometheus.MustNewConstMetric(descSummarySources, gauge, float64(s.Omitted), "omitted")
	}
	if c.a != nil {
		s := c.a.Stats()
		ch <- prometheus.MustNewConstMetric(descAggSummaries, counter, float64(s.Summaries), "merged")
		ch <- prometheus.MustNewConstMetric(descAggSummaries, counter, float64(s.Late), "late")
		ch <- prometheus.MustNewConstMetric(descAggSummaries, counter, float64(s.Invalid), "invalid")
		ch <- prometheus.MustNewConstMetric(descAggSummaries, counter, float64(s.Other), "other")
		ch <- prometheus.MustNewConstMetric(descAggWindows, counter, float64(s.Windows))
		ch <- prometheus.MustNewConstMetric(descAggVerdicts, counter, float64(s.Verdicts), "written")
		ch <- prometheus.MustNewConstMetric(descAggVerdicts, counter, float64(s.Unchanged), "unchanged")
	}
}
