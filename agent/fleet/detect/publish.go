package detect

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulwark-filter/bulwark/agent/fleet/summary"
)

// Stream bounds: summaries are kept for maxAgeWindows windows (at least
// minStreamAge) and at most streamBytes bytes, the oldest dropped first.
const (
	maxAgeWindows = 10
	minStreamAge  = 10 * time.Minute
	streamBytes   = 256 << 20
)

// EnsureStream creates the summary stream name (subjects "<name>.*",
// file storage, replicas, bounded age and size) or binds to it when it
// exists (another agent created it: its limits are kept).
func EnsureStream(ctx context.Context, js jetstream.JetStream, name string, replicas int, window time.Duration) (jetstream.Stream, error) {
	cfg := jetstream.StreamConfig{
		Name: name, Subjects: []string{name + ".*"}, Storage: jetstream.FileStorage, Replicas: replicas,
		MaxAge: max(maxAgeWindows*window, minStreamAge), MaxBytes: streamBytes, Discard: jetstream.DiscardOld,
		MaxMsgSize: summary.MaxSize + 1024, // the summary and the headers
	}
	s, err := js.CreateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		s, err = js.Stream(ctx, name)
	}
	if err != nil {
		return nil, fmt.Errorf("summary stream %s: %w", name, err)
	}
	return s, nil
}

// PublisherStats counts what a publisher did.
type PublisherStats struct {
	// Published and Failed windows; Dropped ones (the bus down for more
	// than two windows).
	Published, Failed, Dropped uint64
	// Bytes, Sources and Omitted are of the last window published: its
	// encoded size, the sources it holds, and those left out.
	Bytes, Sources, Omitted uint64
}

// Publisher publishes one agent's window summaries.
type Publisher struct {
	stream, node  string
	replicas      int
	window        time.Duration
	coll          *summary.Collector
	log           hclog.Logger
	streamCreated bool

	mu    sync.Mutex
	stats PublisherStats
}

// NewPublisher publishes what coll collects on stream as node.
func NewPublisher(stream, node string, replicas int, window time.Duration, coll *summary.Collector, log hclog.Logger) *Publisher {
	return &Publisher{stream: stream, node: node, replicas: replicas, window: window, coll: coll, log: log}
}

// Stats returns the counts so far.
func (p *Publisher) Stats() PublisherStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

func (p *Publisher) count(f func(*PublisherStats)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(&p.stats)
}

// Run publishes each window the collector completes, until ctx ends. A
// window that cannot be published (the bus is down) is dropped after the
// collector's two-window backlog: detection is best effort, enforcement
// is not affected.
func (p *Publisher) Run(ctx context.Context, js jetstream.JetStream) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var backlog []*summary.Summary
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tick.C:
			backlog = append(backlog, p.coll.Take(now)...)
			if n := len(backlog) - 2; n > 0 {
				p.log.Warn("summary windows dropped: the bus is unreachable", "windows", n)
				p.count(func(s *PublisherStats) { s.Dropped += uint64(n) })
				backlog = backlog[n:]
			}
			for len(backlog) > 0 {
				if err := p.Publish(ctx, js, backlog[0]); err != nil {
					p.log.Warn("publish summary", "window", backlog[0].Start, "error", err)
					p.count(func(s *PublisherStats) { s.Failed++ })
					break
				}
				backlog = backlog[1:]
			}
		}
	}
}

// Publish encodes s (within summary.MaxSize) and publishes it, with a
// message id of node and window so that a republished window is stored
// once.
func (p *Publisher) Publish(ctx context.Context, js jetstream.JetStream, s *summary.Summary) error {
	b, err := s.Marshal()
	if err != nil {
		return err
	}
	if !p.streamCreated {
		if _, err := EnsureStream(ctx, js, p.stream, p.replicas, p.window); err != nil {
			return err
		}
		p.streamCreated = true
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	id := fmt.Sprintf("%s-%d", s.Node, s.Start.Unix())
	if _, err := js.Publish(pctx, Subject(p.stream, p.node), b, jetstream.WithMsgID(id), jetstream.WithExpectStream(p.stream)); err != nil {
		return fmt.Errorf("publish summary %s: %w", id, err)
	}
	p.count(func(st *PublisherStats) {
		st.Published++
		st.Bytes, st.Sources, st.Omitted = uint64(len(b)), uint64(len(s.Entries)), s.OmittedSources
	})
	if s.OmittedSources > 0 {
		p.log.Debug("summary bounded", "window", s.Start, "kept", len(s.Entries), "omitted", s.OmittedSources)
	}
	return nil
}
