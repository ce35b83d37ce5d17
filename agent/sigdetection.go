package agent

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/sigdetect"
	"github.com/bulwark-filter/bulwark/maps"
)

// sigDetection is signature detection on live traffic: the same detector
// as `bulwark replay` (agent/sigdetect), fed once a second with the
// datapath's per-destination counters and continuously with its sampled
// packets (bpf/sigsample.h), on the agent's clock. What it finds goes into
// the signature table as origin detect, renewed (bucket and counters kept)
// while the attack lasts, and expires the signatures block's ttl after the
// destination is calm again (docs/signatures.md).
type sigDetection struct {
	log     hclog.Logger
	sigs    *sigTable
	writers *sync.Mutex // the agent's writers' lock (a.mu)
	ifaces  []*iface
	audit   func(AuditRecord)
	mapErrs *prometheus.CounterVec

	samples   prometheus.Counter
	written   *prometheus.CounterVec
	anomalous prometheus.Gauge

	mu      sync.Mutex // guards what follows
	det     *sigdetect.Detector
	cfg     config.Signatures
	shadow  bool                                 // reputation shadow: detected signatures only count
	last    []map[maps.SigDest]maps.SigDestCount // the counters read last, per interface
	refused map[sigdetect.Key]bool               // findings the table refused, reported once per attack
	pad     []byte                               // a truncated sample padded to its packet's length
}

type sigDetectionDeps struct {
	log     hclog.Logger
	sigs    *sigTable
	writers *sync.Mutex
	ifaces  []*iface
	audit   func(AuditRecord)
	mapErrs *prometheus.CounterVec
}

func newSigDetection(d sigDetectionDeps) *sigDetection {
	return &sigDetection{log: d.log, sigs: d.sigs, writers: d.writers, ifaces: d.ifaces, audit: d.audit, mapErrs: d.mapErrs,
		samples: prometheus.NewCounter(prometheus.CounterOpts{Name: "bulwark_signature_samples_total",
			Help: "Packets the datapath sampled for signature detection that the agent read."}),
		written: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bulwark_signature_detections_total",
			Help: "Signatures live detection found, by result: written, renewed (a second of the attack), expired, refused (the table full or the name taken)."},
			[]string{"result"}),
		anomalous: prometheus.NewGauge(prometheus.GaugeOpts{Name: "bulwark_signature_anomalous_destinations",
			Help: "Destinations (protocol, port) live detection has a signature for in the last second."}),
		refused: map[sigdetect.Key]bool{}, pad: make([]byte, 1<<16)}
}

func (s *sigDetection) collectors() []prometheus.Collector {
	return []prometheus.Collector{s.samples, s.written, s.anomalous}
}

// configure applies a config: the datapath's sampling on every interface
// and, when the signatures block or the reputation mode changed, a new
// detector (the baselines are learnt again). Called at start and by every
// reload, with a.mu held.
func (s *sigDetection) configure(cfg *config.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sd, shadow := cfg.SignatureDetection, cfg.Reputation.Mode == "shadow"
	if s.det != nil && sd == s.cfg && shadow == s.shadow {
		return nil
	}
	s.cfg, s.shadow, s.det, s.last = sd, shadow, nil, nil
	every, budget := uint32(0), uint32(0)
	if sd.Detect == "shadow" || sd.Detect == "enforce" {
		s.det = sigdetect.New(sigdetect.FromSettings(sd))
		every, budget = sd.SampleEvery, sd.SampleBudget
	}
	for _, it := range s.ifaces {
		if err := it.dp.Maps.SetSigSampling(every, budget); err != nil {
			s.mapErrs.WithLabelValues("signatures").Inc()
			return err
		}
	}
	return nil
}

// run reads the samples of every interface and ticks once a second until
// ctx is done.
func (s *sigDetection) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait() // after the rings' Close below
	for _, it := range s.ifaces {
		rd, err := it.dp.Maps.SigSamples()
		if err != nil {
			s.log.Error("signature detection: no samples", "interface", it.name, "error", err)
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); s.read(rd) }()
		defer rd.Close() // ends read
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			s.tick(now)
		}
	}
}

// read feeds the samples of one ring to the detector until the ring is
// closed.
func (s *sigDetection) read(rd *ringbuf.Reader) {
	var rec ringbuf.Record
	for {
		if err := rd.ReadInto(&rec); err != nil {
			if !errors.Is(err, ringbuf.ErrClosed) {
				s.log.Warn("signature detection: read samples", "error", err)
			}
			return
		}
		frame, n, err := maps.SampleFrame(rec.RawSample)
		if err != nil {
			continue
		}
		s.samples.Inc()
		s.mu.Lock()
		if s.det != nil {
			// The datapath keeps the first bytes of a packet, which hold
			// every field detection reads; the IP length is the packet's.
			if n > len(frame) && n <= len(s.pad) {
				clear(s.pad[len(frame):n])
				frame = append(s.pad[:0], frame...)[:n]
			}
			s.det.Sample(frame)
		}
		s.mu.Unlock()
	}
}

// tick closes the second ending at now: it adds the counters' growth since
// the last tick, runs detection, and writes, renews or retires signatures.
func (s *sigDetection) tick(now time.Time) {
	s.mu.Lock()
	if s.det == nil {
		s.mu.Unlock()
		return
	}
	if s.last == nil {
		s.last = make([]map[maps.SigDest]maps.SigDestCount, len(s.ifaces))
	}
	for i, it := range s.ifaces {
		cur, err := it.dp.Maps.SigDests()
		if err != nil {
			s.log.Warn("signature detection: read counters", "interface", it.name, "error", err)
			continue
		}
		// The first read after a (re)configuration is the baseline of the
		// counters, not a second of traffic.
		if prev := s.last[i]; prev != nil {
			for d, c := range cur {
				p := prev[d]
				if c.Packets < p.Packets || c.NewSources < p.NewSources {
					p = maps.SigDestCount{} // a map made anew
				}
				s.det.Count(sigdetect.Key{Proto: d.Proto, Port: d.Port}, float64(c.Packets-p.Packets),
					float64(c.NewSources-p.NewSources))
			}
		}
		s.last[i] = cur
	}
	findings := s.det.Tick(now)
	sd, shadow := s.cfg, s.shadow
	s.mu.Unlock()

	s.anomalous.Set(float64(len(findings)))
	s.writers.Lock()
	defer s.writers.Unlock()
	live := map[sigdetect.Key]bool{}
	for _, f := range findings {
		live[f.Key] = true
		s.install(f, sd, shadow || sd.Detect == "shadow", now)
	}
	for k := range s.refused {
		if !live[k] {
			delete(s.refused, k)
		}
	}
	gone, err := s.sigs.expired(s.ifaces, now)
	for _, e := range gone {
		if e.origin == sigFromDetect {
			s.written.WithLabelValues("expired").Inc()
		}
		s.audit(AuditRecord{Who: e.origin, What: "signature.expire", Target: []string{e.name}, Result: "ok"})
	}
	if err != nil {
		s.mapErrs.WithLabelValues("signatures").Inc()
		s.log.Warn("signature detection: delete expired signatures", "error", err)
	}
}

// install writes finding f as signature detect-<protocol>-<port>, or
// renews it when it is in the table already; s.writers is held.
func (s *sigDetection) install(f sigdetect.Finding, sd config.Signatures, shadow bool, now time.Time) {
	name := "detect-" + f.Key.String()
	sig := f.Sig
	sigdetect.SetAction(sd, shadow, &sig)
	expires := now.Add(sd.TTL)
	ok, err := s.sigs.renew(s.ifaces, name, sigFromDetect, sig, expires)
	if err != nil {
		s.mapErrs.WithLabelValues("signatures").Inc()
		s.log.Warn("signature detection: renew", "signature", name, "error", err)
		return
	}
	if ok {
		s.written.WithLabelValues("renewed").Inc()
		return
	}
	e := &sigEntry{name: name, origin: sigFromDetect, sig: sig, added: now, expires: expires, detected: true,
		coverage: f.Coverage, collateral: f.Collateral, why: f.Why()}
	rec := AuditRecord{Who: sigFromDetect, What: "signature.add", Target: []string{name}, TTL: sd.TTL.String(),
		Why: e.why, Detail: sig.Action.String() + " " + sig.String(), Result: "ok"}
	if _, err := s.sigs.put(s.ifaces, e); err != nil {
		if s.refused[f.Key] {
			return
		}
		s.refused[f.Key] = true
		s.written.WithLabelValues("refused").Inc()
		if !errors.Is(err, errSigFull) && !errors.Is(err, errSigTaken) {
			s.mapErrs.WithLabelValues("signatures").Inc()
		}
		rec.Result, rec.Detail = "rejected", err.Error()
		s.audit(rec)
		s.log.Warn("signature detection: not written", "signature", name, "error", err)
		return
	}
	s.written.WithLabelValues("written").Inc()
	s.audit(rec)
	s.log.Info("signature detected", "signature", name, "action", sig.Action.String(), "match", sig.String(), "why", e.why)
}
