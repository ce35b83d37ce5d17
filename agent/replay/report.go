package replay

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/bulwark-filter/bulwark/agent/desired"
	"github.com/bulwark-filter/bulwark/agent/reputation"
	"github.com/bulwark-filter/bulwark/maps"
)

// The report stage: what the policy would have done, counted in capture
// order, and every dropped frame written out.

// Report is what a policy would have done to the captures.
type Report struct {
	Packets  uint64            `json:"packets"`
	Actions  map[string]uint64 `json:"actions"`
	Reasons  map[string]uint64 `json:"reasons"`
	Rules    map[string]uint64 `json:"rules"`
	Lists    map[string]uint64 `json:"lists"`
	Sources  []Source          `json:"sources"`
	Verdicts []Verdict         `json:"verdicts"`
	// Runts are frames a NIC would never hand to XDP (shorter than an
	// Ethernet header), counted as malformed in Reasons too.
	Runts    uint64 `json:"runts"`
	Duration string `json:"capture_duration"`
	// Signatures are those signature detection wrote (signatures block).
	Signatures []Signature `json:"signatures"`
}

// Source is one source's fate (IPv6 aggregated at the configured prefix).
type Source struct {
	Source  string            `json:"source"`
	Packets uint64            `json:"packets"`
	Passed  uint64            `json:"passed"`
	Dropped uint64            `json:"dropped"`
	Reasons map[string]uint64 `json:"reasons"`
}

// Verdict is a verdict the scorer issued during the replay, at the capture
// time it would have been issued.
type Verdict struct {
	Source     string             `json:"source"`
	Action     string             `json:"action"`
	Score      float64            `json:"score"`
	At         string             `json:"at"`
	For        string             `json:"for"`
	Enforced   bool               `json:"enforced"`
	Components map[string]float64 `json:"components"`
}

// collector builds the report from frames and verdicts in capture order.
type collector struct {
	rep         *Report
	want        *desired.State
	prefix      int // the IPv6 source prefix
	counts      tally
	sources     map[[16]byte]*Source
	dropped     *droppedWriter // nil: dropped frames are not written
	first, last time.Time
}

// newCollector starts a report with every action, reason and rule of want
// at zero.
func newCollector(want *desired.State, dropped *droppedWriter) *collector {
	rep := &Report{Actions: map[string]uint64{}, Reasons: map[string]uint64{}, Rules: map[string]uint64{},
		Lists: map[string]uint64{}, Verdicts: []Verdict{}}
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
	return &collector{rep: rep, want: want, prefix: want.Policy.SourcePrefix(),
		counts: tally{lists: map[uint32]uint64{}}, sources: map[[16]byte]*Source{}, dropped: dropped}
}

// frame counts one frame and its decision, and writes it out if dropped.
func (c *collector) frame(f *frame, dec decision) error {
	if c.first.IsZero() {
		c.first = f.ts
	}
	c.last = f.ts
	if dec.runt {
		c.rep.Runts++
	}
	c.counts.count(dec.Decision)
	if f.family != 0 {
		s := c.sources[f.key]
		if s == nil {
			s = &Source{Source: f.name(c.prefix), Reasons: map[string]uint64{}}
			c.sources[f.key] = s
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
	if c.dropped != nil && dec.Action == maps.ActionDrop {
		if err := c.dropped.write(f.ci.Timestamp, f.eth, f.ci.Length+len(f.eth)-f.ci.CaptureLength); err != nil {
			return fmt.Errorf("--write-dropped: %w", err)
		}
	}
	return nil
}

// verdicts adds the verdicts of one scorer cycle, at the time of the
// capture they were issued in (offset is that capture's shift on the
// timeline), ordered by source: the engine hands them over in no fixed
// order, and two replays of the same captures give the same report.
func (c *collector) verdicts(vs []reputation.Verdict, offset time.Duration) {
	start := len(c.rep.Verdicts)
	defer func() {
		slices.SortStableFunc(c.rep.Verdicts[start:], func(a, b Verdict) int { return strings.Compare(a.Source, b.Source) })
	}()
	for _, v := range vs {
		v.At = v.At.Add(-offset)
		src := v.Source.String()
		if v.Source.IsSingleIP() {
			src = v.Source.Addr().String()
		}
		c.rep.Verdicts = append(c.rep.Verdicts, Verdict{Source: src, Action: v.Action, Score: v.Score,
			At: v.At.UTC().Format(time.RFC3339Nano), For: v.For.String(), Enforced: v.Enforced, Components: v.Components})
	}
}

// report finishes the report: the counts under their names, the replayed
// time (gaps between captures included) and the sources, most dropped
// first.
func (c *collector) report() *Report {
	rep := c.rep
	c.counts.into(rep, c.want)
	rep.Duration = c.last.Sub(c.first).String()
	rep.Sources = []Source{}
	for _, s := range c.sources {
		rep.Sources = append(rep.Sources, *s)
	}
	slices.SortFunc(rep.Sources, func(a, b Source) int {
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
	return rep
}

func cmpDesc(a, b uint64) int {
	if a > b {
		return -1
	}
	return 1
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
func (t *tally) into(rep *Report, want *desired.State) {
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
