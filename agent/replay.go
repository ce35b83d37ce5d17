package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/google/gopacket"
	"github.com/hashicorp/go-hclog"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/desired"
	"github.com/bulwark-filter/bulwark/agent/feeds"
	"github.com/bulwark-filter/bulwark/agent/geoip"
	"github.com/bulwark-filter/bulwark/agent/reputation"
	"github.com/bulwark-filter/bulwark/bpf/model"
	"github.com/bulwark-filter/bulwark/loader"
	"github.com/bulwark-filter/bulwark/maps"
)

// ReplayOptions say what to replay.
type ReplayOptions struct {
	Config       string   // the candidate config
	Captures     []string // pcap or pcapng files, replayed in this order
	WriteDropped string   // "" or a pcap file for every dropped frame
	// CPUs caps the CPUs the replay runs frames on: 0 means all of them
	// (at most 8). The result is the same for any value (replaypool.go).
	CPUs   int
	Logger hclog.Logger
}

// ReplayReport is what a policy would have done to the captures.
type ReplayReport struct {
	Packets  uint64            `json:"packets"`
	Actions  map[string]uint64 `json:"actions"`
	Reasons  map[string]uint64 `json:"reasons"`
	Rules    map[string]uint64 `json:"rules"`
	Lists    map[string]uint64 `json:"lists"`
	Sources  []ReplaySource    `json:"sources"`
	Verdicts []ReplayVerdict   `json:"verdicts"`
	// Skipped are frames a NIC would never hand to XDP (shorter than an
	// Ethernet header), counted as malformed in Reasons too.
	Runts    uint64 `json:"runts"`
	Duration string `json:"capture_duration"`
}

// ReplaySource is one source's fate (IPv6 aggregated at the configured
// prefix).
type ReplaySource struct {
	Source  string            `json:"source"`
	Packets uint64            `json:"packets"`
	Passed  uint64            `json:"passed"`
	Dropped uint64            `json:"dropped"`
	Reasons map[string]uint64 `json:"reasons"`
}

// ReplayVerdict is a verdict the scorer issued during the replay, at the
// capture time it would have been issued.
type ReplayVerdict struct {
	Source     string             `json:"source"`
	Action     string             `json:"action"`
	Score      float64            `json:"score"`
	At         string             `json:"at"`
	For        string             `json:"for"`
	Enforced   bool               `json:"enforced"`
	Components map[string]float64 `json:"components"`
}

// replayBase is where capture time starts on the replayed datapath's
// clock: far from 0, so buckets and expiries behave as on a running host.
const replayBase = uint64(1) << 40

// Replay runs the captures through a fresh copy of the datapath loaded with
// the candidate config (nothing attached, nothing pinned) on capture time.
func Replay(o ReplayOptions) (*ReplayReport, error) {
	log := o.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	cfg, diags := config.LoadWithOptions(o.Config, config.Options{SkipInterfaceCheck: true})
	if diags.HasErrors() {
		return nil, &config.Error{Text: config.FormatDiagnostics(diags)}
	}
	want, err := desired.From(cfg)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(o.Captures) == 0 {
		return nil, errors.New("no capture given")
	}
	if o.CPUs < 0 {
		return nil, fmt.Errorf("cpus %d: want 0 (all) or more", o.CPUs)
	}

	inMemory, sizes, nsources, err := scanCaptures(o.Captures, want)
	if err != nil {
		return nil, err
	}
	d, err := loader.Load(loader.Options{Sizes: sizes, ReplayClock: true, Logger: log})
	if err != nil {
		return nil, err
	}
	defer d.Close()
	m := d.Maps
	// Nothing reads drop events in a replay; sampling them would only make
	// the CPUs contend for the ring. Decisions do not depend on it.
	want.Policy.SampleEvery = 0
	if err := m.ApplyPolicy(&want.Policy); err != nil {
		return nil, err
	}
	if _, _, err := reconcileList(m.Allow, want.Allow); err != nil {
		return nil, fmt.Errorf("allow list: %w", err)
	}
	if _, _, err := reconcileList(m.Block, want.Block); err != nil {
		return nil, fmt.Errorf("block list: %w", err)
	}
	scoreFeeds, err := replayFeeds(cfg, want, m, log)
	if err != nil {
		return nil, err
	}

	var engine *reputation.Engine
	if cfg.Reputation.Mode != "off" {
		geo := &geoip.Source{}
		if err := geo.Update(cfg.GeoIP); err != nil {
			return nil, fmt.Errorf("geoip: %w", err)
		}
		defer geo.Close()
		exempt := reputation.NewPrefixSet(desired.Exempt(cfg))
		ev := reputation.Evidence{
			Exempt: exempt.Contains, Locate: geo.Locate, CountryWeight: geo.CountryWeight, ASNWeight: geo.ASNWeight,
			Feeds: func(a netip.Addr) []reputation.FeedHit {
				var hits []reputation.FeedHit
				for _, f := range scoreFeeds {
					if f.set.Contains(a) {
						hits = append(hits, reputation.FeedHit{Feed: f.name, Weight: f.weight})
					}
				}
				return hits
			},
		}
		engine = reputation.New(desired.Scorer(cfg), ev, reputation.MapSink{Maps: m}, m.IPv6Prefix())
	}

	var dropped *droppedWriter
	if o.WriteDropped != "" {
		if dropped, err = newDroppedWriter(o.WriteDropped); err != nil {
			return nil, err
		}
	}
	rep := &ReplayReport{Actions: map[string]uint64{}, Reasons: map[string]uint64{}, Rules: map[string]uint64{},
		Lists: map[string]uint64{}, Verdicts: []ReplayVerdict{}}
	for _, a := range maps.Actions {
		rep.Actions[a.String()] = 0
	}
	for _, r := range maps.Reasons {
		rep.Reasons[r.String()] = 0
	}
	for i := range want.Policy.Rules {
		rep.Rules[want.Policy.RuleName(i+1)] = 0
	}
	if want.Policy.Default.Active() {
		rep.Rules["default"] = 0
	}
	sources := map[[16]byte]*ReplaySource{}
	counts := &tally{lists: map[uint32]uint64{}}
	pool := newReplayPool(d, replayWorkers(&want.Policy, nsources, o.CPUs), want)
	prefix := m.IPv6Prefix()
	log.Debug("replay", "cpus", len(pool.runners), "sources", nsources)

	var first, last time.Time
	var nextCycle time.Time
	interval := cfg.Reputation.Interval
	span := maxSegmentSpan(&want.Policy)
	// The frames are in memory already, or (a capture too large for that)
	// are read and parsed again, ahead, on another goroutine. This loop
	// cuts them into segments that end at a scorer cycle, has the pool
	// decide each, and counts them in capture order.
	var frames chan frameBatch
	if inMemory != nil {
		frames = make(chan frameBatch, len(inMemory))
		for _, b := range inMemory {
			frames <- b
		}
		close(frames)
	} else {
		frames = make(chan frameBatch, 4)
		readers := make([]*captureReader, 0, len(o.Captures))
		defer func() {
			for _, r := range readers {
				r.Close()
			}
		}()
		for _, p := range o.Captures {
			r, err := openCapture(p)
			if err != nil {
				return nil, err
			}
			readers = append(readers, r)
		}
		stop := make(chan struct{})
		defer close(stop)
		go readFrames(newTimeline(readers, prefix, newPartitioner(&want.Policy)), frames, stop)
	}
	for batch := range frames {
		if batch.err != nil {
			return nil, batch.err
		}
		items := batch.items
		for len(items) > 0 {
			if first.IsZero() {
				first, nextCycle = items[0].ts, items[0].ts.Add(interval)
			}
			if engine != nil && !items[0].ts.Before(nextCycle) {
				// The cycle that was due; a quiet gap in the capture (hours,
				// or the years between two files) is one long interval, not
				// a cycle per second of it.
				if err := engine.Cycle(nextCycle, replayBase+uint64(nextCycle.Sub(first)), m.IterateSources); err != nil {
					return nil, err
				}
				rep.addVerdicts(engine.TakeVerdicts(), items[0].offset)
				nextCycle = nextCycle.Add(interval)
				if ts := items[0].ts; !ts.Before(nextCycle) {
					nextCycle = nextCycle.Add(ts.Sub(nextCycle).Truncate(interval) + interval)
				}
				continue
			}
			n := 1
			for n < len(items) && items[n].ts.Sub(items[0].ts) < span &&
				(engine == nil || items[n].ts.Before(nextCycle)) {
				n++
			}
			seg := items[:n]
			items = items[n:]
			decs, err := pool.decide(seg, first)
			if err != nil {
				return nil, err
			}
			for i := range seg {
				f, dec := &seg[i], decs[i]
				last = f.ts
				if dec.runt {
					rep.Runts++
				}
				counts.count(dec.Decision)
				if f.family != 0 {
					s := sources[f.key]
					if s == nil {
						s = &ReplaySource{Source: f.name(prefix), Reasons: map[string]uint64{}}
						sources[f.key] = s
					}
					s.Packets++
					if dec.Action == maps.ActionDrop {
						s.Dropped++
						s.Reasons[dec.Reason.String()]++
					} else {
						s.Passed++
						if dec.Action == maps.ActionWouldDrop {
							s.Reasons[dec.Reason.String()]++
						}
					}
				}
				if dropped != nil && dec.Action == maps.ActionDrop {
					if err := dropped.write(f.ci.Timestamp, f.frame, f.ci.Length+len(f.frame)-f.ci.CaptureLength); err != nil {
						return nil, fmt.Errorf("--write-dropped: %w", err)
					}
				}
			}
		}
	}
	if dropped != nil {
		if err := dropped.Close(); err != nil {
			return nil, err
		}
	}
	counts.into(rep, want)
	rep.Duration = last.Sub(first).String() // replayed time, gaps between captures included
	for _, s := range sources {
		rep.Sources = append(rep.Sources, *s)
	}
	slices.SortFunc(rep.Sources, func(a, b ReplaySource) int {
		switch {
		case a.Dropped != b.Dropped:
			return cmpDesc(a.Dropped, b.Dropped)
		case a.Packets != b.Packets:
			return cmpDesc(a.Packets, b.Packets)
		case a.Source < b.Source:
			return -1
		case a.Source > b.Source:
			return 1
		}
		return 0
	})
	if rep.Sources == nil {
		rep.Sources = []ReplaySource{}
	}
	return rep, nil
}

func cmpDesc(a, b uint64) int {
	if a > b {
		return -1
	}
	return 1
}

// replayedFrame is a frame read and parsed ahead of the datapath.
type replayedFrame struct {
	buf    []byte // room for the replay I/O, then the frame
	frame  []byte
	ci     gopacket.CaptureInfo
	ts     time.Time     // on the replay's timeline
	offset time.Duration // the timeline's shift of this capture
	path   string
	record int
	family int
	src    netip.Addr
	key    [16]byte // the source's tracking key
	part   uint32   // the hash of its partition (replaypool.go)
}

// name is how the report shows the frame's source.
func (f *replayedFrame) name(prefix int) string {
	if f.family == 6 {
		pp, _ := f.src.Prefix(prefix)
		return pp.String()
	}
	return f.src.Unmap().String()
}

type frameBatch struct {
	items []replayedFrame
	err   error
}

// frameBatchSize is how many frames travel together from the reader.
const frameBatchSize = 512

// timeline reads the captures in order, lays them on one timeline and
// parses each frame's source. Captures replay on one timeline: one that
// starts before the previous ended (another day, another host) is laid
// after it, a second later, on its own time base; within a capture time
// never goes backwards.
type timeline struct {
	readers   []*captureReader
	prefix    int
	part      partitioner
	fi        int // the file being read
	n         int // records read from it
	fileStart bool
	last      time.Time
	offset    time.Duration
	arena     []byte // frames are copied here, each after loader.ReplayHeadroom bytes
}

// copyFrame copies frame into the arena behind room for the replay I/O
// and returns the headroom and frame together.
func (t *timeline) copyFrame(frame []byte) []byte {
	n := loader.ReplayHeadroom + len(frame)
	if len(t.arena)+n > cap(t.arena) {
		t.arena = make([]byte, 0, max(1<<20, n))
	}
	b := t.arena[len(t.arena) : len(t.arena)+n : len(t.arena)+n]
	t.arena = t.arena[:len(t.arena)+n]
	copy(b[loader.ReplayHeadroom:], frame)
	return b
}

func newTimeline(readers []*captureReader, prefix int, part partitioner) *timeline {
	return &timeline{readers: readers, prefix: prefix, part: part, fileStart: true}
}

// next returns the next frame, or io.EOF after the last.
func (t *timeline) next() (replayedFrame, error) {
	for t.fi < len(t.readers) {
		r := t.readers[t.fi]
		frame, ci, err := r.Next(t.n)
		if errors.Is(err, io.EOF) {
			t.fi++
			t.n, t.fileStart = 0, true
			continue
		}
		if err != nil {
			return replayedFrame{}, err
		}
		t.n++
		if t.fileStart && t.fi > 0 && ci.Timestamp.Add(t.offset).Before(t.last) {
			t.offset = t.last.Add(time.Second).Sub(ci.Timestamp)
		}
		t.fileStart = false
		ts := ci.Timestamp.Add(t.offset)
		if ts.Before(t.last) {
			ts = t.last // capture order wins over a clock that stepped back
		}
		t.last = ts
		// The reader reuses its buffers: keep a copy.
		buf := t.copyFrame(frame)
		f := replayedFrame{buf: buf, frame: buf[loader.ReplayHeadroom:], ci: ci, ts: ts, offset: t.offset, path: r.path, record: t.n}
		if p, _ := model.Parse(f.frame); p.Family != 0 {
			f.family, f.src, f.part = p.Family, p.Src, t.part.of(p.Src)
			if p.Family == 4 {
				f.key = maps.SourceKey(p.Src, t.prefix)
			} else {
				pp, _ := p.Src.Prefix(t.prefix)
				f.key = pp.Addr().As16()
			}
		}
		return f, nil
	}
	return replayedFrame{}, io.EOF
}

// readFrames sends the timeline's frames in batches until done or stop is
// closed.
func readFrames(t *timeline, out chan<- frameBatch, stop <-chan struct{}) {
	defer close(out)
	send := func(b frameBatch) bool {
		select {
		case out <- b:
			return true
		case <-stop:
			return false
		}
	}
	batch := make([]replayedFrame, 0, frameBatchSize)
	for {
		f, err := t.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			send(frameBatch{err: err})
			return
		}
		batch = append(batch, f)
		if len(batch) == frameBatchSize {
			if !send(frameBatch{items: batch}) {
				return
			}
			batch = make([]replayedFrame, 0, frameBatchSize)
		}
	}
	if len(batch) > 0 {
		send(frameBatch{items: batch})
	}
}

type replayDecision struct {
	maps.Decision
	runt bool
}

// replayFrame runs one frame at time mono. A frame shorter than an
// Ethernet header cannot be test-run (no NIC hands XDP one); it is decided
// as malformed, as the datapath's model decides it.
//
// buf is the frame behind loader.ReplayHeadroom bytes of room for the
// replay I/O.
func replayFrame(run *loader.Runner, buf []byte, mono uint64, want *desired.State) (replayDecision, error) {
	if len(buf)-loader.ReplayHeadroom < 14 {
		act := maps.ActionDrop
		if want.Policy.MalformedPass {
			act = maps.ActionPass
		}
		if act == maps.ActionDrop && want.Policy.Mode == maps.ModeMonitor {
			act = maps.ActionWouldDrop
		}
		return replayDecision{maps.Decision{Action: act, Reason: maps.ReasonMalformed}, true}, nil
	}
	dec, _, err := run.RunIn(buf, mono)
	return replayDecision{Decision: dec}, err
}

// tally counts decisions in arrays on the per-frame path; names are
// attached once, at the end.
type tally struct {
	actions [8]uint64
	reasons [8]uint64
	rules   [256]uint64
	lists   map[uint32]uint64
}

func (t *tally) count(dec maps.Decision) {
	t.actions[dec.Action&7]++
	t.reasons[dec.Reason&7]++
	switch dec.Reason {
	case maps.ReasonRatelimit:
		t.rules[dec.Detail&255]++
	case maps.ReasonAllowlist, maps.ReasonBlocklist:
		t.lists[dec.Detail]++
	}
}

// into adds the tally to the report under the actions', reasons', rules'
// and lists' names.
func (t *tally) into(rep *ReplayReport, want *desired.State) {
	for _, a := range maps.Actions {
		rep.Actions[a.String()] += t.actions[a]
		rep.Packets += t.actions[a]
	}
	for _, r := range maps.Reasons {
		rep.Reasons[r.String()] += t.reasons[r]
	}
	for id, n := range t.rules {
		if n > 0 {
			rep.Rules[want.Policy.RuleName(id)] += n
		}
	}
	for id, n := range t.lists {
		name := want.ListNames[id]
		if name == "" {
			name = fmt.Sprintf("list%d", id)
		}
		rep.Lists[name] += n
	}
}

func (rep *ReplayReport) addVerdicts(vs []reputation.Verdict, offset time.Duration) {
	for _, v := range vs {
		v.At = v.At.Add(-offset)
		src := v.Source.String()
		if v.Source.IsSingleIP() {
			src = v.Source.Addr().String()
		}
		rep.Verdicts = append(rep.Verdicts, ReplayVerdict{Source: src, Action: v.Action, Score: v.Score,
			At: v.At.UTC().Format(time.RFC3339Nano), For: v.For.String(), Enforced: v.Enforced, Components: v.Components})
	}
}

// replayInMemory caps the memory a replay may take to hold the captures
// parsed, counted as each frame's bytes plus replayFrameOverhead. They are
// held in chunks of frameChunk frames.
const (
	replayInMemory      = 256 << 20
	replayFrameOverhead = 256
	frameChunk          = 4096
)

// scanCaptures reads the captures once, before the datapath is loaded. It
// returns every frame, parsed and on the replay's timeline, when they fit
// in replayInMemory (nil when not: the replay then reads them again as it
// goes), and sizes the preallocated per-source tables: a table at least
// twice the distinct sources it will hold never evicts, so it decides
// exactly as one of the config's size would, and it loads in a fraction of
// the time (1M preallocated entries take half a second to create). A
// capture with more sources than the config's table gets the config's
// size, so evictions happen as they would live.
func scanCaptures(captures []string, want *desired.State) ([]frameBatch, loader.Sizes, int, error) {
	s := want.Sizes
	readers := make([]*captureReader, 0, len(captures))
	defer func() {
		for _, r := range readers {
			r.Close()
		}
	}()
	for _, path := range captures {
		r, err := openCapture(path)
		if err != nil {
			return nil, s, 0, err
		}
		readers = append(readers, r)
	}
	t := newTimeline(readers, want.Policy.SourcePrefix(), newPartitioner(&want.Policy))
	seen := map[[16]byte]struct{}{}
	var frames []frameBatch
	kept, keep := 0, true
	for {
		f, err := t.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, s, 0, err
		}
		if f.family != 0 {
			seen[f.key] = struct{}{}
		}
		if keep {
			kept += len(f.frame) + replayFrameOverhead
			switch {
			case kept > replayInMemory:
				keep, frames = false, nil
			case len(frames) == 0 || len(frames[len(frames)-1].items) == frameChunk:
				frames = append(frames, frameBatch{items: make([]replayedFrame, 0, frameChunk)})
				fallthrough
			default:
				last := &frames[len(frames)-1]
				last.items = append(last.items, f)
			}
		}
	}
	room := func(per int, cfg uint32) uint32 {
		n := uint32(4096)
		for n < uint32(2*per*len(seen)) && n < cfg {
			n *= 2
		}
		return min(n, cfg)
	}
	// Each source may hold buckets of two rules; aggregates are fewer.
	s.Sources = room(1, s.Sources)
	s.RuleBuckets = room(2, s.RuleBuckets)
	s.Aggregates = room(1, s.Aggregates)
	if keep && frames == nil {
		frames = []frameBatch{}
	}
	return frames, s, len(seen), nil
}

type scoreFeed struct {
	name   string
	weight float64
	set    *reputation.PrefixSet
}

// replayFeeds loads the config's feeds that have a path (a replay fetches
// nothing from the network): block feeds into the block list under their
// list ids, score feeds as evidence.
func replayFeeds(cfg *config.Config, want *desired.State, m *maps.Set, log hclog.Logger) ([]scoreFeed, error) {
	var out []scoreFeed
	exemptList := desired.Exempt(cfg)
	exempt := reputation.NewPrefixSet(exemptList)
	for _, f := range cfg.Feeds {
		if f.Path == "" {
			log.Warn("replay: feed has a URL, not a path; it is left out", "feed", f.Name, "url", f.URL)
			fmt.Fprintf(os.Stderr, "replay: feed %q is fetched from a URL; replay reads feeds from files only, so it is left out\n", f.Name)
			continue
		}
		fetcher := feeds.NewFetcher(feeds.SourceFromConfig(f), nil)
		list, _, err := fetcher.Fetch(context.Background())
		if err != nil {
			return nil, fmt.Errorf("feed %q: %w", f.Name, err)
		}
		if f.Action == "score" {
			out = append(out, scoreFeed{f.Name, f.Weight, reputation.NewPrefixSet(list.Prefixes)})
			continue
		}
		id := want.FeedIDs[f.Name]
		var es []maps.Entry
		for _, p := range list.Prefixes {
			if !desired.ExemptOverlap(p, exempt, exemptList) {
				es = append(es, maps.Entry{Prefix: p, ListID: id})
			}
		}
		if err := m.Block.Add(es); err != nil {
			return nil, fmt.Errorf("feed %q: %w", f.Name, err)
		}
	}
	return out, nil
}
