package agent

import (
	"context"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/recorder"
	"github.com/bulwark-filter/bulwark/maps"
)

// Bounds of a live capture request.
const (
	MaxCaptureCount   = 10000
	MaxCaptureTimeout = 5 * time.Minute
)

// startRecorders runs a flight recorder per interface: sampled drops from
// the event ring into rotating pcapng files under events.dir/<interface>.
// A recorder that cannot start is logged and counted; filtering goes on.
func (a *Agent) startRecorders(ctx context.Context, c config.Events) {
	if c.Dir == "" {
		return
	}
	for _, it := range a.ifaces {
		rec, err := recorder.New(recorder.Options{
			Dir: filepath.Join(c.Dir, it.name), MaxFileBytes: int64(c.MaxFileMiB) << 20, MaxFiles: int(c.MaxFiles),
			Logger: a.log.Named("recorder").With("interface", it.name), RuleName: a.ruleName,
		})
		if err != nil {
			a.log.Error("flight recorder not started; drops are not recorded", "interface", it.name, "error", err)
			a.mapErrs.WithLabelValues("events").Inc()
			continue
		}
		rd, err := it.dp.Maps.Events()
		if err != nil {
			a.log.Error("flight recorder not started; drops are not recorded", "interface", it.name, "error", err)
			continue
		}
		go func() {
			defer rd.Close()
			rec.Run(ctx, recorder.RingbufReadFunc(rd, 500*time.Millisecond))
		}()
		a.recorders = append(a.recorders, rec)
	}
}

// ruleName names a rule (ratelimit) or list (allow/block list) for the
// recorder; it reads a snapshot, so it never waits for a reload.
func (a *Agent) ruleName(reason string, id uint32) string {
	w := a.names.Load()
	if w == nil {
		return ""
	}
	switch reason {
	case maps.ReasonRatelimit.String():
		return w.Policy.RuleName(int(id))
	case maps.ReasonAllowlist.String(), maps.ReasonBlocklist.String():
		return w.ListNames[id]
	}
	return ""
}

// recorderCollector exports the recorders' counters.
type recorderCollector struct{ a *Agent }

var (
	descRecorded = prometheus.NewDesc("bulwark_flight_recorder_samples_total",
		"Sampled drops written to the flight recorder's files.", nil, nil)
	descRecLost = prometheus.NewDesc("bulwark_flight_recorder_lost_total",
		"Sampled drops the flight recorder lost, by cause (queue full, disk, garbled, slow live subscriber).", []string{"cause"}, nil)
	descRecBytes = prometheus.NewDesc("bulwark_flight_recorder_bytes",
		"Bytes of pcapng files the flight recorder keeps.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c recorderCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descRecorded
	ch <- descRecLost
	ch <- descRecBytes
}

// Collect implements prometheus.Collector.
func (c recorderCollector) Collect(ch chan<- prometheus.Metric) {
	var rec, q, disk, garbled, sub uint64
	var bytes int64
	for _, r := range c.a.recorders {
		s := r.Stats()
		rec += s.Recorded
		q += s.LostQueue
		disk += s.LostDisk
		garbled += s.Garbled
		sub += s.LostSubscriber
		bytes += s.Bytes
	}
	ch <- prometheus.MustNewConstMetric(descRecorded, prometheus.CounterValue, float64(rec))
	ch <- prometheus.MustNewConstMetric(descRecLost, prometheus.CounterValue, float64(q), "queue")
	ch <- prometheus.MustNewConstMetric(descRecLost, prometheus.CounterValue, float64(disk), "disk")
	ch <- prometheus.MustNewConstMetric(descRecLost, prometheus.CounterValue, float64(garbled), "garbled")
	ch <- prometheus.MustNewConstMetric(descRecLost, prometheus.CounterValue, float64(sub), "subscriber")
	ch <- prometheus.MustNewConstMetric(descRecBytes, prometheus.GaugeValue, float64(bytes))
}

// handleCapture returns up to count live sampled drops matching the
// filter, waiting at most timeout: GET /v1/capture?reason=&action=&count=&timeout=
func (a *Agent) handleCapture(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := recorder.Filter{Reason: q.Get("reason"), Action: q.Get("action")}
	if err := f.Validate(); err != nil {
		fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	count, err := strconv.Atoi(q.Get("count"))
	if q.Get("count") == "" {
		count, err = 100, nil
	}
	if err != nil || count < 1 || count > MaxCaptureCount {
		fail(w, http.StatusBadRequest, "count %q: want 1 to %d", q.Get("count"), MaxCaptureCount)
		return
	}
	timeout := 30 * time.Second
	if s := q.Get("timeout"); s != "" {
		if timeout, err = time.ParseDuration(s); err != nil || timeout <= 0 || timeout > MaxCaptureTimeout {
			fail(w, http.StatusBadRequest, "timeout %q: want a duration up to %s", s, MaxCaptureTimeout)
			return
		}
	}
	if len(a.recorders) == 0 {
		fail(w, http.StatusConflict, "the flight recorder is off (events.dir is empty) or could not start")
		return
	}
	out := make(chan recorder.Event, count)
	var cancels []func()
	for _, rec := range a.recorders {
		ch, cancel := rec.Subscribe(f, count)
		cancels = append(cancels, cancel)
		go func() {
			for e := range ch {
				select {
				case out <- e:
				default:
				}
			}
		}()
	}
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()
	events := make([]recorder.Event, 0, count)
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for len(events) < count {
		select {
		case e := <-out:
			events = append(events, e)
		case <-deadline.C:
			writeJSON(w, http.StatusOK, events)
			return
		case <-r.Context().Done():
			return
		}
	}
	writeJSON(w, http.StatusOK, events)
}
