package detect

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulwark-filter/bulwark/agent/fleet"
	"github.com/bulwark-filter/bulwark/agent/fleet/summary"
)

// skew is how long after a window's end plus grace (by this host's clock)
// an aggregator that has read the whole stream decides the window without
// having seen a later message: the clock difference between this host and
// the servers it tolerates.
const skew = 2 * time.Second

// ttlSlack is added to a verdict's per-key TTL so the key outlives it.
const ttlSlack = time.Minute

// AggregatorStats counts what an aggregator did.
type AggregatorStats struct {
	// Summaries merged; Late (after the window's end + grace, or of a
	// window already decided), Invalid (undecodable, or a node that is not
	// its subject's) and Other (another window length) were left out.
	Summaries, Late, Invalid, Other uint64
	// Windows decided; Verdicts written (a verdict already in the bucket
	// with the same value is not written again: Unchanged).
	Windows, Verdicts, Unchanged uint64
}

// Aggregator merges the fleet's summaries window by window and writes a
// verdict for each source the rule flags.
type Aggregator struct {
	stream, bucket string
	cfg            Config
	log            hclog.Logger
	now            func() time.Time

	mu      sync.Mutex
	stats   AggregatorStats
	windows map[int64]*summary.Window // by start, Unix ns
	decided time.Time                 // windows ending at or before it are decided
	lastTS  time.Time                 // server timestamp of the last message read
	pending uint64                    // messages left in the stream after it
	kv      jetstream.KeyValue
	ttlKeys bool // the bucket has per-key TTL (server 2.11+)
	onFind  func(fleet.Verdict)
}

// NewAggregator aggregates the summaries of stream into verdicts in
// bucket. onVerdict (may be nil) is called with every verdict the
// aggregator decides, written or already there.
func NewAggregator(stream, bucket string, cfg Config, log hclog.Logger, onVerdict func(fleet.Verdict)) (*Aggregator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("fleet detection: %w", err)
	}
	return &Aggregator{stream: stream, bucket: bucket, cfg: cfg, log: log, now: time.Now,
		windows: map[int64]*summary.Window{}, onFind: onVerdict}, nil
}

// Stats returns the counts so far.
func (a *Aggregator) Stats() AggregatorStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stats
}

// Run reads the summary stream from two windows back (so a restarted
// aggregator decides the recent windows again, writing nothing new) and
// decides each window once it is complete, until ctx ends.
func (a *Aggregator) Run(ctx context.Context, js jetstream.JetStream) error {
	msgs := make(chan jetstream.Msg, 64)
	var cc jetstream.ConsumeContext
	defer func() {
		if cc != nil {
			cc.Stop()
		}
	}()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		if cc == nil {
			var err error
			if cc, err = a.consume(ctx, js, msgs); err != nil {
				a.log.Debug("summary stream not ready", "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case m := <-msgs:
			a.handle(ctx, js, m)
		case <-tick.C:
			if cc != nil {
				a.decideDue(ctx, js, a.now().Add(-a.cfg.Grace-skew), true)
			}
		}
	}
}

// consume starts an ordered consumer (it survives reconnects) from two
// windows and the grace back.
func (a *Aggregator) consume(ctx context.Context, js jetstream.JetStream, msgs chan<- jetstream.Msg) (jetstream.ConsumeContext, error) {
	// The publishers create the stream; until one has, there is nothing
	// to aggregate (the next tick tries again).
	if _, err := js.Stream(ctx, a.stream); err != nil {
		return nil, fmt.Errorf("summary stream %s: %w", a.stream, err)
	}
	from := summary.WindowStart(a.now(), a.cfg.Window).Add(-2 * a.cfg.Window)
	cons, err := js.OrderedConsumer(ctx, a.stream, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &from})
	if err != nil {
		return nil, fmt.Errorf("consumer on %s: %w", a.stream, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case msgs <- m:
		case <-ctx.Done():
		}
	})
	if err != nil {
		return nil, fmt.Errorf("consume %s: %w", a.stream, err)
	}
	return cc, nil
}

// handle merges one summary message, then decides the windows its server
// timestamp closes: every message stored before it is already read.
func (a *Aggregator) handle(ctx context.Context, js jetstream.JetStream, m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		a.count(func(s *AggregatorStats) { s.Invalid++ })
		return
	}
	a.mu.Lock()
	a.lastTS, a.pending = md.Timestamp, md.NumPending
	a.mu.Unlock()
	s, err := summary.Unmarshal(m.Data())
	node := m.Subject()[strings.LastIndexByte(m.Subject(), '.')+1:]
	switch {
	case err != nil:
		a.log.Warn("invalid summary", "subject", m.Subject(), "error", err)
		a.count(func(s *AggregatorStats) { s.Invalid++ })
	case s.Node != node:
		a.log.Warn("summary of another node", "subject", m.Subject(), "node", s.Node)
		a.count(func(s *AggregatorStats) { s.Invalid++ })
	case s.Length != a.cfg.Window:
		a.count(func(s *AggregatorStats) { s.Other++ })
	default:
		a.add(s, md.Timestamp)
	}
	a.decideDue(ctx, js, md.Timestamp.Add(-a.cfg.Grace), false)
}

func (a *Aggregator) count(f func(*AggregatorStats)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f(&a.stats)
}

// add merges s, stored at ts, into its window unless it is late.
func (a *Aggregator) add(s *summary.Summary, ts time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ts.After(s.End().Add(a.cfg.Grace)) || !s.End().After(a.decided) {
		a.stats.Late++
		return
	}
	k := s.Start.UnixNano()
	w := a.windows[k]
	if w == nil {
		var err error
		if w, err = summary.NewWindow(s.Start, s.Length, a.cfg.MaxSources); err != nil {
			a.stats.Invalid++ // Unmarshal checked the window: not reached
			return
		}
		a.windows[k] = w
	}
	if ok, _ := w.Add(s); ok {
		a.stats.Summaries++
	}
}

// decideDue decides the windows that end at or before until; on the
// clock's word (byClock) only when the stream has been read to its end.
func (a *Aggregator) decideDue(ctx context.Context, js jetstream.JetStream, until time.Time, byClock bool) {
	a.mu.Lock()
	if byClock && a.pending > 0 {
		a.mu.Unlock()
		return
	}
	var due []*summary.Window
	for k, w := range a.windows {
		if !w.End().After(until) {
			due = append(due, w)
			delete(a.windows, k)
		}
	}
	a.mu.Unlock()
	slices.SortFunc(due, func(x, y *summary.Window) int { return x.Start.Compare(y.Start) })
	for _, w := range due {
		a.decide(ctx, js, w)
	}
}

// decide writes the verdicts of window w.
func (a *Aggregator) decide(ctx context.Context, js jetstream.JetStream, w *summary.Window) {
	found := w.Findings(a.cfg.Rule)
	a.mu.Lock()
	if w.End().After(a.decided) {
		a.decided = w.End()
	}
	a.stats.Windows++
	a.mu.Unlock()
	a.log.Debug("window decided", "start", w.Start, "hosts", len(w.Nodes()), "flagged", len(found),
		"omitted", w.Omitted, "dropped", w.Dropped)
	for _, f := range found {
		v := Verdict(f, w.End(), a.cfg)
		written, err := a.put(ctx, js, v)
		switch {
		case err != nil:
			a.log.Warn("fleet detection verdict not written", "target", v.Target, "error", err)
			continue
		case written:
			a.count(func(s *AggregatorStats) { s.Verdicts++ })
			a.log.Info("fleet detection verdict", "target", v.Target, "reason", v.Reason)
		default:
			a.count(func(s *AggregatorStats) { s.Unchanged++ })
		}
		if a.onFind != nil {
			a.onFind(v)
		}
	}
}

// Verdict is the verdict for finding f of the window ending at end: the
// same value on every aggregator.
func Verdict(f summary.Finding, end time.Time, cfg Config) fleet.Verdict {
	return fleet.Verdict{Target: f.Source, Action: cfg.Action, Issuer: Issuer, Origin: Origin, Reason: f.Reason(),
		IssuedAt: end.UTC(), Expires: end.Add(cfg.TTL).UTC()}
}

// put writes v under its key unless the key already holds the same value
// (another aggregator wrote it) or a verdict issued later.
func (a *Aggregator) put(ctx context.Context, js jetstream.JetStream, v fleet.Verdict) (bool, error) {
	if a.kv == nil {
		kv, err := js.KeyValue(ctx, a.bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return false, errNoBucket
		}
		if err != nil {
			return false, fmt.Errorf("bucket %s: %w", a.bucket, err)
		}
		st, err := kv.Status(ctx)
		if err != nil {
			return false, fmt.Errorf("bucket %s: %w", a.bucket, err)
		}
		a.kv, a.ttlKeys = kv, st.LimitMarkerTTL() > 0
	}
	val, err := fleet.EncodeValue(v)
	if err != nil {
		return false, err
	}
	key := fleet.Key(v.Issuer, v.Target)
	if e, err := a.kv.Get(ctx, key); err == nil {
		if bytes.Equal(e.Value(), val) {
			return false, nil
		}
		if old, err := fleet.DecodeValue(e.Value()); err == nil && old.IssuedAt.After(v.IssuedAt) {
			return false, nil
		}
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, fmt.Errorf("read %s: %w", key, err)
	}
	var opts []jetstream.PublishOpt
	if a.ttlKeys {
		opts = append(opts, jetstream.WithMsgTTL(max(time.Until(v.Expires)+ttlSlack, time.Second).Round(time.Second)))
	}
	if _, err := js.Publish(ctx, "$KV."+a.bucket+"."+key, val, opts...); err != nil {
		return false, fmt.Errorf("write %s: %w", key, err)
	}
	return true, nil
}
