package fleet

import "github.com/prometheus/client_golang/prometheus"

// metrics are the Client's Prometheus collectors.
type metrics struct {
	published   prometheus.Counter
	applied     prometheus.Counter
	refused     *prometheus.CounterVec
	propagation prometheus.Histogram
	// watchRestarts counts the watchers recreated after a stall.
	watchRestarts prometheus.Counter
	gauges        []prometheus.Collector
}

func newMetrics(c *Client) *metrics {
	m := &metrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{Name: "bulwark_fleet_published_total",
			Help: "Own verdicts written to the fleet bucket (acknowledged)."}),
		applied: prometheus.NewCounter(prometheus.CounterOpts{Name: "bulwark_fleet_applied_total",
			Help: "Fleet changes (puts and removes) the applier took."}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bulwark_fleet_refused_total",
			Help: "Fleet verdicts refused, by reason."}, []string{"reason"}),
		propagation: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "bulwark_fleet_propagation_seconds",
			Help:    "Time from another issuer's verdict being issued to it being applied here.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}),
		watchRestarts: prometheus.NewCounter(prometheus.CounterOpts{Name: "bulwark_fleet_watch_restarts_total",
			Help: "Bucket watchers recreated because they delivered nothing while behind the bucket."}),
	}
	for _, r := range []string{RefusedRate, RefusedActiveCap, RefusedLocal, RefusedInvalid, RefusedTTL, RefusedBuffer} {
		m.refused.WithLabelValues(r)
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	locked := func(f func() float64) func() float64 {
		return func() float64 { c.mu.Lock(); defer c.mu.Unlock(); return f() }
	}
	m.gauges = []prometheus.Collector{
		gauge("bulwark_fleet_connected", "1 while the client is connected to the bucket.", locked(func() float64 {
			if c.conn != nil && c.conn.IsConnected() && c.kv != nil {
				return 1
			}
			return 0
		})),
		gauge("bulwark_fleet_lag", "Bucket revisions not yet read (the bucket's last revision, polled, minus the last read).",
			locked(func() float64 { return float64(c.lag()) })),
		gauge("bulwark_fleet_buffered", "Own verdicts waiting to be published.",
			locked(func() float64 { return float64(len(c.queued)) })),
		gauge("bulwark_fleet_active", "Fleet verdicts in force (the merged set within max_active).",
			locked(func() float64 { return float64(c.st.active) })),
	}
	return m
}

// Collectors are the Client's metrics, for the agent's registry.
func (c *Client) Collectors() []prometheus.Collector {
	return append([]prometheus.Collector{c.m.published, c.m.applied, c.m.refused, c.m.propagation,
		c.m.watchRestarts}, c.m.gauges...)
}
