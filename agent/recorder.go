package agent

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulwark-filter/bulwark/agent/api"
	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/desired"
	"github.com/bulwark-filter/bulwark/agent/recorder"
	"github.com/bulwark-filter/bulwark/maps"
)

// eventSource opens an interface's event ring, which only one reader may
// drain.
type eventSource interface {
	Events() (*ringbuf.Reader, error)
}

// eventRing is one interface whose sampled drops are recorded.
type eventRing struct {
	name   string
	events eventSource
}

// recorderDeps is what the flight recorders use of the agent.
type recorderDeps struct {
	log     hclog.Logger
	ifaces  []eventRing
	mapErrs *prometheus.CounterVec
	// ruleName names a rule or list in a decoded event; it must not block.
	ruleName func(reason string, id uint32) string
}

// flightRecorders runs the flight recorders of every interface and
// replaces them when a reload changes their settings.
type flightRecorders struct {
	recorderDeps
	mu  sync.Mutex                  // serialises start, swap and stop
	set atomic.Pointer[recorderSet] // the running set; read without mu
}

func newFlightRecorders(d recorderDeps) *flightRecorders {
	return &flightRecorders{recorderDeps: d}
}

// recorderSet is the running flight recorders, one per interface (none when
// events.dir is empty), and what they counted before: a reload that changes
// the recorder's settings replaces the set, and the counters go on.
type recorderSet struct {
	recs   []*recorder.Recorder
	ifaces []eventRing    // parallel to recs
	base   recorder.Stats // final counts of the sets this one replaced
	cancel func()         // ends the recorders' Run; set by run
	done   sync.WaitGroup // their goroutines
}

// recorderSettingsChanged reports whether the recorder's own settings differ
// (sampling is the datapath's and needs no new recorder).
func recorderSettingsChanged(old, c config.Events) bool {
	return old.Dir != c.Dir || old.MaxFileMiB != c.MaxFileMiB || old.MaxFiles != c.MaxFiles
}

// prepare makes a flight recorder per interface for c, writing under
// c.Dir/<interface> (created now); it starts nothing. An empty c.Dir gives
// an empty set.
func (fr *flightRecorders) prepare(c config.Events) (*recorderSet, error) {
	set := &recorderSet{}
	if c.Dir == "" {
		return set, nil
	}
	for _, it := range fr.ifaces {
		rec, err := recorder.New(recorder.Options{
			Dir: filepath.Join(c.Dir, it.name), MaxFileBytes: int64(c.MaxFileMiB) << 20, MaxFiles: int(c.MaxFiles),
			Logger: fr.log.Named("recorder").With("interface", it.name), RuleName: fr.ruleName,
		})
		if err != nil {
			return nil, fmt.Errorf("events.dir: interface %s: %w", it.name, err)
		}
		set.recs, set.ifaces = append(set.recs, rec), append(set.ifaces, it)
	}
	return set, nil
}

// start runs a flight recorder per interface: sampled drops from the event
// ring into rotating pcapng files under events.dir/<interface>. A recorder
// that cannot start is logged and counted; filtering goes on.
func (fr *flightRecorders) start(c config.Events) {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	set, err := fr.prepare(c)
	if err != nil {
		fr.log.Error("flight recorder not started; drops are not recorded", "error", err)
		fr.mapErrs.WithLabelValues("events").Inc()
		set = &recorderSet{}
	}
	fr.run(set)
	fr.set.Store(set)
}

// run starts the recorders of set, each reading its interface's event ring
// until set.cancel.
func (fr *flightRecorders) run(set *recorderSet) {
	ctx, cancel := context.WithCancel(context.Background())
	set.cancel = cancel
	var recs []*recorder.Recorder
	var ifaces []eventRing
	for i, rec := range set.recs {
		it := set.ifaces[i]
		rd, err := it.events.Events()
		if err != nil {
			fr.log.Error("flight recorder not started; drops are not recorded", "interface", it.name, "error", err)
			continue
		}
		set.done.Go(func() {
			defer rd.Close()
			rec.Run(ctx, recorder.RingbufReadFunc(rd, 500*time.Millisecond))
		})
		recs, ifaces = append(recs, rec), append(ifaces, it)
	}
	set.recs, set.ifaces = recs, ifaces
}

// stop ends the running recorders and waits until their files are closed.
func (fr *flightRecorders) stop() {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	fr.stopLocked()
}

func (fr *flightRecorders) stopLocked() {
	if set := fr.set.Load(); set != nil {
		set.cancel()
		set.done.Wait()
	}
}

// swap replaces the running recorders by set (made by prepare for c): the
// old ones finish their files first, as only one reader may drain an event
// ring.
func (fr *flightRecorders) swap(set *recorderSet, c config.Events) {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	if old := fr.set.Load(); old != nil {
		fr.stopLocked()
		set.base = old.totals()
	}
	fr.run(set)
	fr.set.Store(set)
	fr.log.Info("flight recorder restarted", "dir", c.Dir, "max_file_mib", c.MaxFileMiB,
		"max_files", c.MaxFiles, "recorders", len(set.recs))
}

// totals sums the counters of the set and of those it replaced; Files and
// Bytes are the set's own.
func (s *recorderSet) totals() recorder.Stats {
	t := s.base
	t.Files, t.Bytes = 0, 0
	for _, r := range s.recs {
		st := r.Stats()
		t.Recorded += st.Recorded
		t.Lost += st.Lost
		t.LostQueue += st.LostQueue
		t.LostDisk += st.LostDisk
		t.LostSubscriber += st.LostSubscriber
		t.Garbled += st.Garbled
		t.Files += st.Files
		t.Bytes += st.Bytes
	}
	return t
}

// ruleNamer names a rule (ratelimit) or list (allow/block list) for the
// recorder from the desired state in force; it reads a snapshot, so it
// never waits for a reload.
func ruleNamer(names *atomic.Pointer[desired.State]) func(reason string, id uint32) string {
	return func(reason string, id uint32) string {
		w := names.Load()
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
}

// recorderCollector exports the recorders' counters.
type recorderCollector struct{ fr *flightRecorders }

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
	var t recorder.Stats
	if set := c.fr.set.Load(); set != nil {
		t = set.totals()
	}
	ch <- prometheus.MustNewConstMetric(descRecorded, prometheus.CounterValue, float64(t.Recorded))
	ch <- prometheus.MustNewConstMetric(descRecLost, prometheus.CounterValue, float64(t.LostQueue), "queue")
	ch <- prometheus.MustNewConstMetric(descRecLost, prometheus.CounterValue, float64(t.LostDisk), "disk")
	ch <- prometheus.MustNewConstMetric(descRecLost, prometheus.CounterValue, float64(t.Garbled), "garbled")
	ch <- prometheus.MustNewConstMetric(descRecLost, prometheus.CounterValue, float64(t.LostSubscriber), "subscriber")
	ch <- prometheus.MustNewConstMetric(descRecBytes, prometheus.GaugeValue, float64(t.Bytes))
}

// handleCapture returns up to count live sampled drops matching the
// filter, waiting at most timeout: GET /v1/capture?reason=&action=&count=&timeout=
func (fr *flightRecorders) handleCapture(w http.ResponseWriter, r *http.Request) {
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
	if err != nil || count < 1 || count > api.MaxCaptureCount {
		fail(w, http.StatusBadRequest, "count %q: want 1 to %d", q.Get("count"), api.MaxCaptureCount)
		return
	}
	timeout := 30 * time.Second
	if s := q.Get("timeout"); s != "" {
		if timeout, err = time.ParseDuration(s); err != nil || timeout <= 0 || timeout > api.MaxCaptureTimeout {
			fail(w, http.StatusBadRequest, "timeout %q: want a duration up to %s", s, api.MaxCaptureTimeout)
			return
		}
	}
	set := fr.set.Load()
	if set == nil || len(set.recs) == 0 {
		fail(w, http.StatusConflict, "the flight recorder is off (events.dir is empty) or could not start")
		return
	}
	out := make(chan recorder.Event, count)
	var cancels []func()
	for _, rec := range set.recs {
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
