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
	"github.com/bulwark-filter/bulwark/agent/feeds"
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
	Logger       hclog.Logger
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
		return nil, &ConfigError{Text: config.FormatDiagnostics(diags)}
	}
	want, err := desiredFrom(cfg)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
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
	if len(readers) == 0 {
		return nil, errors.New("no capture given")
	}

	sizes, err := replaySizes(o.Captures, want)
	if err != nil {
		return nil, err
	}
	d, err := loader.Load(loader.Options{Sizes: sizes, ReplayClock: true, Logger: log})
	if err != nil {
		return nil, err
	}
	defer d.Close()
	m := d.Maps
	if err := m.ApplyPolicy(&want.policy); err != nil {
		return nil, err
	}
	if _, _, err := reconcileList(m.Allow, want.allow); err != nil {
		return nil, fmt.Errorf("allow list: %w", err)
	}
	if _, _, err := reconcileList(m.Block, want.block); err != nil {
		return nil, fmt.Errorf("block list: %w", err)
	}
	scoreFeeds, err := replayFeeds(cfg, want, m, log)
	if err != nil {
		return nil, err
	}

	var engine *reputation.Engine
	if cfg.Reputation.Mode != "off" {
		geo := &geoSource{}
		if err := geo.update(cfg.GeoIP); err != nil {
			return nil, fmt.Errorf("geoip: %w", err)
		}
		defer geo.close()
		exempt := reputation.NewPrefixSet(exemptPrefixes(cfg, nil))
		ev := reputation.Evidence{
			Exempt: exempt.Contains, Locate: geo.locate, CountryWeight: geo.countryWeight, ASNWeight: geo.asnWeight,
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
		engine = reputation.New(engineConfig(cfg), ev, ifaceSink{m}, m.IPv6Prefix())
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
	for i := range want.policy.Rules {
		rep.Rules[want.policy.RuleName(i+1)] = 0
	}
	if want.policy.Default.Active() {
		rep.Rules["default"] = 0
	}
	sources := map[[16]byte]*ReplaySource{}
	counts := &tally{lists: map[uint32]uint64{}}
	runner := d.NewRunner()
	prefix := m.IPv6Prefix()

	var first, last time.Time
	var nextCycle time.Time
	interval := cfg.Reputation.Interval
	// Reading and parsing run ahead on another goroutine (another core):
	// this loop keeps only what needs the datapath in capture order.
	frames := make(chan frameBatch, 4)
	stop := make(chan struct{})
	defer close(stop)
	go readFrames(readers, prefix, frames, stop)
	for batch := range frames {
		if batch.err != nil {
			return nil, batch.err
		}
		for i := range batch.items {
			f := &batch.items[i]
			ts := f.ts
			if first.IsZero() {
				first, nextCycle = ts, ts.Add(interval)
			}
			last = ts
			mono := replayBase + uint64(ts.Sub(first))
			if engine != nil && !ts.Before(nextCycle) {
				// The cycle that was due; a quiet gap in the capture (hours,
				// or the years between two files) is one long interval, not
				// a cycle per second of it.
				if err := engine.Cycle(nextCycle, replayBase+uint64(nextCycle.Sub(first)), m.IterateSources); err != nil {
					return nil, err
				}
				rep.addVerdicts(engine.TakeVerdicts(), f.offset)
				nextCycle = nextCycle.Add(interval)
				if !ts.Before(nextCycle) {
					nextCycle = nextCycle.Add(ts.Sub(nextCycle).Truncate(interval) + interval)
				}
			}

			dec, err := replayFrame(m, runner, f.frame, mono, want)
			if err != nil {
				return nil, fmt.Errorf("capture %s, record %d: %w", f.path, f.record, err)
			}
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
	frame  []byte
	ci     gopacket.CaptureInfo
	ts     time.Time     // on the replay's timeline
	offset time.Duration // the timeline's shift of this capture
	path   string
	record int
	family int
	src    netip.Addr
	key    [16]byte // the source's tracking key
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

// readFrames reads the captures in order, lays them on one timeline and
// parses each frame's source, in batches, until done or stop is closed.
// Captures replay on one timeline: one that starts before the previous
// ended (another day, another host) is laid after it, a second later, on
// its own time base; within a capture time never goes backwards.
func readFrames(readers []*captureReader, prefix int, out chan<- frameBatch, stop <-chan struct{}) {
	defer close(out)
	send := func(b frameBatch) bool {
		select {
		case out <- b:
			return true
		case <-stop:
			return false
		}
	}
	var last time.Time
	var offset time.Duration
	n := 0
	batch := make([]replayedFrame, 0, frameBatchSize)
	for fi, r := range readers {
		fileStart := true
		for {
			frame, ci, err := r.Next(n)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				send(frameBatch{err: err})
				return
			}
			n++
			if fileStart && fi > 0 && ci.Timestamp.Add(offset).Before(last) {
				offset = last.Add(time.Second).Sub(ci.Timestamp)
			}
			fileStart = false
			ts := ci.Timestamp.Add(offset)
			if ts.Before(last) {
				ts = last // capture order wins over a clock that stepped back
			}
			last = ts
			// The reader reuses its buffer for frames it built an
			// Ethernet header for: keep a copy.
			f := replayedFrame{frame: append([]byte(nil), frame...), ci: ci, ts: ts, offset: offset, path: r.path, record: n}
			if p, _ := model.Parse(f.frame); p.Family != 0 {
				f.family, f.src = p.Family, p.Src
				if p.Family == 4 {
					f.key = maps.SourceKey(p.Src, prefix)
				} else {
					pp, _ := p.Src.Prefix(prefix)
					f.key = pp.Addr().As16()
				}
			}
			batch = append(batch, f)
			if len(batch) == frameBatchSize {
				if !send(frameBatch{items: batch}) {
					return
				}
				batch = make([]replayedFrame, 0, frameBatchSize)
			}
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
func replayFrame(m *maps.Set, run *loader.Runner, frame []byte, mono uint64, want *desired) (replayDecision, error) {
	if len(frame) < 14 {
		act := maps.ActionDrop
		if want.policy.MalformedPass {
			act = maps.ActionPass
		}
		if act == maps.ActionDrop && want.policy.Mode == maps.ModeMonitor {
			act = maps.ActionWouldDrop
		}
		return replayDecision{maps.Decision{Action: act, Reason: maps.ReasonMalformed}, true}, nil
	}
	if err := m.SetReplayClock(mono); err != nil {
		return replayDecision{}, err
	}
	if _, err := run.Run(frame); err != nil {
		return replayDecision{}, err
	}
	dec, err := m.LastDecision()
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
func (t *tally) into(rep *ReplayReport, want *desired) {
	for _, a := range maps.Actions {
		rep.Actions[a.String()] += t.actions[a]
		rep.Packets += t.actions[a]
	}
	for _, r := range maps.Reasons {
		rep.Reasons[r.String()] += t.reasons[r]
	}
	for id, n := range t.rules {
		if n > 0 {
			rep.Rules[want.policy.RuleName(id)] += n
		}
	}
	for id, n := range t.lists {
		name := want.listNames[id]
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

// replaySizes sizes the preallocated per-source tables to the captures: a
// table at least twice the distinct sources it will hold never evicts, so
// it decides exactly as one of the config's size would, and it loads in a
// fraction of the time (1M preallocated entries take half a second to
// create). A capture with more sources than the config's table gets the
// config's size, so evictions happen as they would live.
func replaySizes(captures []string, want *desired) (loader.Sizes, error) {
	s := want.sizes
	prefix := want.policy.SourcePrefix()
	seen := map[[16]byte]struct{}{}
	for _, path := range captures {
		r, err := openCapture(path)
		if err != nil {
			return s, err
		}
		for n := 0; ; n++ {
			frame, _, err := r.Next(n)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				r.Close()
				return s, err
			}
			if p, _ := model.Parse(frame); p.Family != 0 {
				if p.Family == 4 {
					seen[maps.SourceKey(p.Src, prefix)] = struct{}{}
				} else {
					pp, _ := p.Src.Prefix(prefix)
					seen[pp.Addr().As16()] = struct{}{}
				}
			}
		}
		r.Close()
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
	return s, nil
}

type scoreFeed struct {
	name   string
	weight float64
	set    *reputation.PrefixSet
}

// replayFeeds loads the config's feeds that have a path (a replay fetches
// nothing from the network): block feeds into the block list under their
// list ids, score feeds as evidence.
func replayFeeds(cfg *config.Config, want *desired, m *maps.Set, log hclog.Logger) ([]scoreFeed, error) {
	var out []scoreFeed
	exemptList := exemptPrefixes(cfg, nil)
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
		id := want.feedIDs[f.Name]
		var es []maps.Entry
		for _, p := range list.Prefixes {
			if !exemptOverlap(p, exempt, exemptList) {
				es = append(es, maps.Entry{Prefix: p, ListID: id})
			}
		}
		if err := m.Block.Add(es); err != nil {
			return nil, fmt.Errorf("feed %q: %w", f.Name, err)
		}
	}
	return out, nil
}
