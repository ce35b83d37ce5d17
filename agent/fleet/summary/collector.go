package summary

import (
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/bulwark-filter/bulwark/maps"
)

// DefaultWindow is the detection window's default length.
const DefaultWindow = time.Minute

// DefaultMaxTracked caps the sources a Collector accumulates per window.
const DefaultMaxTracked = 200000

// accKey is a source on one of the host's interfaces (each interface's
// datapath counts on its own; the summary adds them up).
type accKey struct {
	iface  int
	source netip.Prefix
}

// acc is one source's accumulation in the current window.
type acc struct {
	ports      Sketch
	base, last uint64 // the datapath's cumulative packet counter: at the window's start (or first sight), latest
}

// Collector accumulates, on one agent, what each source did in the current
// window from the datapath's per-source state, which the agent reads every
// scoring cycle (Observe is given the same batches as the scorer).
//
// Ports: the datapath keeps a 256-bit sketch per source per ~1.07 s kernel
// window and resets it at the source's first packet in a new kernel window;
// the Collector ORs the sketch at each read. A slow scan (a few packets a
// minute) is captured whole; a source that sends in two kernel windows
// between reads loses the first one's ports, which only matters for fast
// sources, which the local scorer judges anyway. Packets: the increase of
// the source's cumulative counter over the window (from its first sight
// when it was already active before the window and not seen in the one
// before). Sources over the tracking cap are not accumulated; the most seen
// over it in one read is reported as omitted.
type Collector struct {
	mu         sync.Mutex
	node       string
	length     time.Duration
	maxTracked int

	start     time.Time // the current window's start; zero before the first call
	cur, prev map[accKey]*acc
	readAt    time.Time // the read the over-cap count is of
	readOver  uint64    // sources over the cap in that read
	over      uint64    // most sources over the cap in one read this window
	done      []*Summary
}

// NewCollector accumulates windows of length for node; maxTracked caps the
// sources per window (0: DefaultMaxTracked).
func NewCollector(node string, length time.Duration, maxTracked int) (*Collector, error) {
	if !validNode(node) {
		return nil, fmt.Errorf("summary collector: node %q: want 1 to 64 of [A-Za-z0-9_-]", node)
	}
	if err := checkWindow(time.Unix(0, 0), length); err != nil {
		return nil, fmt.Errorf("summary collector: %w", err)
	}
	if maxTracked <= 0 {
		maxTracked = DefaultMaxTracked
	}
	return &Collector{node: node, length: length, maxTracked: maxTracked, cur: map[accKey]*acc{}}, nil
}

// roll closes the current window if now is past it. Caller holds mu.
func (c *Collector) roll(now time.Time) {
	ws := WindowStart(now, c.length)
	if c.start.Equal(ws) {
		return
	}
	if !c.start.IsZero() && ws.After(c.start) {
		c.done = append(c.done, c.summary())
	}
	c.start, c.prev, c.cur = ws, c.cur, map[accKey]*acc{}
	c.over, c.readOver, c.readAt = 0, 0, time.Time{}
	if len(c.done) > 2 {
		// Nobody took them: keep the latest two windows only.
		c.done = c.done[len(c.done)-2:]
	}
}

func (c *Collector) summary() *Summary {
	c.over = max(c.over, c.readOver)
	by := make(map[netip.Prefix]*Entry, len(c.cur))
	for k, a := range c.cur {
		e := by[k.source]
		if e == nil {
			e = &Entry{Source: k.source}
			by[k.source] = e
		}
		e.Ports.Or(a.ports)
		e.Packets = addSat(e.Packets, a.last-min(a.base, a.last))
	}
	s := &Summary{Node: c.node, Start: c.start, Length: c.length, OmittedSources: c.over,
		Entries: make([]Entry, 0, len(by))}
	for _, e := range by {
		s.Entries = append(s.Entries, *e)
	}
	Sort(s.Entries)
	return s
}

// Observe accumulates one batch of the datapath's sources of interface
// iface (an index), read at wall time now and datapath (monotonic) time
// mono.
func (c *Collector) Observe(iface int, now time.Time, mono uint64, batch []maps.Source) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.roll(now)
	if !now.Equal(c.readAt) {
		c.over, c.readOver, c.readAt = max(c.over, c.readOver), 0, now
	}
	into := uint64(now.Sub(c.start))
	if into > mono {
		into = mono
	}
	monoStart := mono - into
	for i := range batch {
		src := &batch[i]
		if src.LastSeenNS < monoStart {
			continue
		}
		k := accKey{iface, src.Source}
		a, ok := c.cur[k]
		if !ok {
			if len(c.cur) >= c.maxTracked {
				c.readOver++
				continue
			}
			a = &acc{base: src.Packets}
			if src.FirstSeenNS >= monoStart {
				a.base = 0
			} else if p, ok := c.prev[k]; ok {
				a.base = p.last
			}
			c.cur[k] = a
		}
		a.last = src.Packets
		// The kernel window's bits count if it ends after our window began.
		if (uint64(src.PortWindow)+1)<<30 > monoStart {
			a.ports.Or(Sketch(src.PortBits))
		}
	}
}

// Take returns the windows completed by now (at most the last two), each
// with its entries sorted as Marshal keeps them, and forgets them.
func (c *Collector) Take(now time.Time) []*Summary {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.roll(now)
	out := c.done
	c.done = nil
	return out
}
