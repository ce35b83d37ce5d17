package crowdsec

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Filter says which decisions a Book takes: the scopes (ip, range), the
// origins (empty: all), the decision types and the action of each, and
// how many decisions it holds at most.
type Filter struct {
	Scopes  []string
	Origins []string
	Actions map[string]Action // decision type (lower case) -> action
	Max     int
}

// Change is what a merge changed on one target (in no particular order): the decision now in force
// there (the strongest, then the longest), or Remove when none is left.
type Change struct {
	Target netip.Prefix
	Remove bool
	Winner Entry
}

// Counts are what one merge did with the decisions it read.
type Counts struct {
	Taken   int // decisions now in the book (new or replaced)
	Deleted int // decisions deleted from the book
	Refused int // decisions not taken: bad value, unknown type, expired, over the cap
	// FirstRefusal says why the first refused decision was refused.
	FirstRefusal string
}

func (c *Counts) refuse(d Decision, why string) {
	c.Refused++
	if c.FirstRefusal == "" {
		c.FirstRefusal = fmt.Sprintf("decision %d (%s %s %s): %s", d.ID, d.Scope, d.Type, d.Value, why)
	}
}

// Book holds the decisions a bouncer enforces, by id and by target. It is
// not safe for concurrent use.
type Book struct {
	filter   Filter
	byID     map[int64]Entry
	byTarget map[netip.Prefix][]int64
}

// NewBook makes an empty book taking what f lets through.
func NewBook(f Filter) *Book {
	return &Book{filter: f, byID: map[int64]Entry{}, byTarget: map[netip.Prefix][]int64{}}
}

// Len is how many decisions the book holds.
func (b *Book) Len() int { return len(b.byID) }

// Winner is the decision in force on target, if any.
func (b *Book) Winner(target netip.Prefix) (Entry, bool) {
	ids := b.byTarget[target]
	if len(ids) == 0 {
		return Entry{}, false
	}
	w := b.byID[ids[0]]
	for _, id := range ids[1:] {
		if e := b.byID[id]; beats(e, w) {
			w = e
		}
	}
	return w, true
}

// Winners are the decisions in force, one per target.
func (b *Book) Winners() []Entry {
	out := make([]Entry, 0, len(b.byTarget))
	for t := range b.byTarget {
		w, _ := b.Winner(t)
		out = append(out, w)
	}
	return out
}

// beats orders decisions on one target: block over throttle, then the
// later expiry, then the lower id (so that the order is total).
func beats(a, b Entry) bool {
	if a.Action != b.Action {
		return a.Action == ActionBlock
	}
	if !a.Expires.Equal(b.Expires) {
		return a.Expires.After(b.Expires)
	}
	return a.ID < b.ID
}

// Replace makes the book hold exactly the decisions of a startup answer
// (startup=true lists every active decision) and returns the changes
// against what it held: this is how a bouncer converges after an outage,
// whatever happened meanwhile.
func (b *Book) Replace(s Stream, now time.Time) ([]Change, Counts) {
	old, prev := b.snapshot(), b.byID
	b.byID = map[int64]Entry{}
	b.byTarget = map[netip.Prefix][]int64{}
	var c Counts
	for _, d := range s.New {
		b.add(d, now, &c)
		// The same decision read again keeps its expiry, unless the
		// LAPI's says otherwise by more than the clocks' slack: a
		// resync rewrites only what changed.
		if e, ok := b.byID[d.ID]; ok {
			if p, ok := prev[d.ID]; ok && p.Target == e.Target && p.Action == e.Action && absDur(p.Expires.Sub(e.Expires)) < expirySlack {
				e.Expires = p.Expires
				b.byID[d.ID] = e
			}
		}
	}
	touched := make(map[netip.Prefix]bool, len(old)+len(b.byTarget))
	for t := range old {
		touched[t] = true
	}
	for t := range b.byTarget {
		touched[t] = true
	}
	return b.changes(old, touched), c
}

// Merge applies a delta answer: deleted decisions first, then new ones.
func (b *Book) Merge(s Stream, now time.Time) ([]Change, Counts) {
	touched := map[netip.Prefix]bool{}
	for _, d := range s.Deleted {
		if e, ok := b.byID[d.ID]; ok {
			touched[e.Target] = true
		}
	}
	for _, d := range s.New {
		if t, err := Target(d.Scope, d.Value); err == nil {
			touched[t] = true
		}
		if e, ok := b.byID[d.ID]; ok {
			touched[e.Target] = true
		}
	}
	old := make(map[netip.Prefix]Entry, len(touched))
	for t := range touched {
		if w, ok := b.Winner(t); ok {
			old[t] = w
		}
	}
	var c Counts
	for _, d := range s.Deleted {
		if b.remove(d.ID) {
			c.Deleted++
		}
	}
	for _, d := range s.New {
		b.add(d, now, &c)
	}
	return b.changes(old, touched), c
}

// expirySlack is how far apart two readings of one decision's expiry may
// be and still be the same expiry.
const expirySlack = time.Second

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// snapshot is the winner of every target.
func (b *Book) snapshot() map[netip.Prefix]Entry {
	out := make(map[netip.Prefix]Entry, len(b.byTarget))
	for t := range b.byTarget {
		out[t], _ = b.Winner(t)
	}
	return out
}

// changes compares the winners of touched targets with old.
func (b *Book) changes(old map[netip.Prefix]Entry, touched map[netip.Prefix]bool) []Change {
	var out []Change
	for t := range touched {
		was, had := old[t]
		now, has := b.Winner(t)
		switch {
		case !has && had:
			out = append(out, Change{Target: t, Remove: true})
		case has && (!had || was != now):
			out = append(out, Change{Target: t, Winner: now})
		}
	}
	return out
}

// add takes one decision if the filter lets it through.
func (b *Book) add(d Decision, now time.Time, c *Counts) {
	e, why := b.entry(d, now)
	if why != "" {
		c.refuse(d, why)
		return
	}
	b.remove(d.ID) // a decision id seen again replaces the old one
	if b.filter.Max > 0 && len(b.byID) >= b.filter.Max {
		c.refuse(d, fmt.Sprintf("over the cap of %d decisions", b.filter.Max))
		return
	}
	b.byID[d.ID] = e
	b.byTarget[e.Target] = append(b.byTarget[e.Target], d.ID)
	c.Taken++
}

// remove deletes decision id; false when the book does not hold it.
func (b *Book) remove(id int64) bool {
	e, ok := b.byID[id]
	if !ok {
		return false
	}
	delete(b.byID, id)
	ids := slices.DeleteFunc(b.byTarget[e.Target], func(x int64) bool { return x == id })
	if len(ids) == 0 {
		delete(b.byTarget, e.Target)
	} else {
		b.byTarget[e.Target] = ids
	}
	return true
}

// entry checks a decision against the filter; why says why it is refused.
func (b *Book) entry(d Decision, now time.Time) (e Entry, why string) {
	scope := strings.ToLower(d.Scope)
	if !slices.Contains(b.filter.Scopes, scope) {
		return e, "scope not taken"
	}
	if len(b.filter.Origins) > 0 && !slices.Contains(b.filter.Origins, d.Origin) {
		return e, "origin not taken"
	}
	act, ok := b.filter.Actions[strings.ToLower(d.Type)]
	if !ok {
		return e, "decision type not taken"
	}
	t, err := Target(scope, d.Value)
	if err != nil {
		return e, err.Error()
	}
	left, err := time.ParseDuration(d.Duration)
	if err != nil {
		return e, fmt.Sprintf("duration %q: %v", d.Duration, err)
	}
	if left <= 0 {
		return e, "expired"
	}
	return Entry{ID: d.ID, Target: t, Action: act, Expires: now.Add(left), Origin: d.Origin, Scenario: d.Scenario}, ""
}
