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

// Book holds the decisions a bouncer enforces, by id and by target, and
// the winner of every target (kept as decisions come and go, so that a
// merge of 100,000 decisions compares each target once). The decisions
// are kept in slots, the maps hold slot numbers: maps of 100,000 entries
// this small stay in the CPU's caches, maps of entries did not. It is not
// safe for concurrent use.
type Book struct {
	filter Filter
	ents   []Entry // by slot; a free slot is listed in free
	won    []bool  // by slot: the decision in force on its target
	free   []int32
	byID   map[int64]int32        // decision id -> slot
	win    map[netip.Prefix]int32 // the slot of the decision in force on each target
	others map[netip.Prefix][]int64
}

// NewBook makes an empty book taking what f lets through.
func NewBook(f Filter) *Book {
	return &Book{filter: f, byID: map[int64]int32{}, win: map[netip.Prefix]int32{}, others: map[netip.Prefix][]int64{}}
}

// Len is how many decisions the book holds.
func (b *Book) Len() int { return len(b.byID) }

// Winner is the decision in force on target, if any.
func (b *Book) Winner(target netip.Prefix) (Entry, bool) {
	i, ok := b.win[target]
	if !ok {
		return Entry{}, false
	}
	return b.ents[i], true
}

// Winners are the decisions in force, one per target (read in slot
// order: 100,000 entries in the order of memory, not of a map).
func (b *Book) Winners() []Entry {
	out := make([]Entry, 0, len(b.win))
	for i, w := range b.won {
		if w {
			out = append(out, b.ents[i])
		}
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
	oldWin, prev, oldEnts := b.win, b.byID, b.ents
	b.ents, b.won = make([]Entry, 0, len(s.New)), make([]bool, 0, len(s.New))
	b.free = nil
	b.byID = make(map[int64]int32, len(s.New))
	b.win = make(map[netip.Prefix]int32, len(s.New))
	b.others = map[netip.Prefix][]int64{}
	var c Counts
	for _, d := range s.New {
		e, ok := b.take(d, now, &c)
		if !ok {
			continue
		}
		// The same decision read again keeps its expiry, unless the
		// LAPI's says otherwise by more than the clocks' slack: a
		// resync rewrites only what changed.
		if i, ok := prev[d.ID]; ok {
			if p := oldEnts[i]; p.Target == e.Target && p.Action == e.Action && absDur(p.Expires.Sub(e.Expires)) < expirySlack {
				e.Expires = p.Expires
			}
		}
		b.insert(e)
		c.Taken++
	}
	var out []Change
	if len(oldWin) == 0 {
		out = make([]Change, 0, len(b.win)) // a first pull: every target changes
		for i, w := range b.won {
			if w {
				out = append(out, Change{Target: b.ents[i].Target, Winner: b.ents[i]})
			}
		}
	} else {
		for t, i := range b.win {
			w := b.ents[i]
			if o, had := oldWin[t]; !had || oldEnts[o] != w {
				out = append(out, Change{Target: t, Winner: w})
			}
		}
	}
	for t := range oldWin {
		if _, has := b.win[t]; !has {
			out = append(out, Change{Target: t, Remove: true})
		}
	}
	return out, c
}

// Merge applies a delta answer: deleted decisions first, then new ones.
func (b *Book) Merge(s Stream, now time.Time) ([]Change, Counts) {
	touched := map[netip.Prefix]bool{}
	for _, d := range s.Deleted {
		if i, ok := b.byID[d.ID]; ok {
			touched[b.ents[i].Target] = true
		}
	}
	for _, d := range s.New {
		if t, err := Target(d.Scope, d.Value); err == nil {
			touched[t] = true
		}
		if i, ok := b.byID[d.ID]; ok {
			touched[b.ents[i].Target] = true
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
		if e, ok := b.take(d, now, &c); ok {
			b.insert(e)
			c.Taken++
		}
	}
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
	return out, c
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

// take checks one decision against the filter and the cap, the decision
// of the same id it replaces removed; false when it is refused (counted).
func (b *Book) take(d Decision, now time.Time, c *Counts) (Entry, bool) {
	e, why := b.entry(d, now)
	if why != "" {
		c.refuse(d, why)
		return e, false
	}
	b.remove(d.ID) // a decision id seen again replaces the old one
	if b.filter.Max > 0 && len(b.byID) >= b.filter.Max {
		c.refuse(d, fmt.Sprintf("over the cap of %d decisions", b.filter.Max))
		return e, false
	}
	return e, true
}

// insert adds a taken decision and makes it its target's winner if it
// beats the one in force.
func (b *Book) insert(e Entry) {
	var i int32
	if n := len(b.free); n > 0 {
		i, b.free = b.free[n-1], b.free[:n-1]
		b.ents[i] = e
	} else {
		i = int32(len(b.ents))
		b.ents, b.won = append(b.ents, e), append(b.won, false)
	}
	b.byID[e.ID] = i
	w, ok := b.win[e.Target]
	switch {
	case !ok:
		b.win[e.Target], b.won[i] = i, true
	case beats(e, b.ents[w]):
		b.others[e.Target] = append(b.others[e.Target], b.ents[w].ID)
		b.win[e.Target], b.won[i], b.won[w] = i, true, false
	default:
		b.others[e.Target] = append(b.others[e.Target], e.ID)
	}
}

// remove deletes decision id; false when the book does not hold it. When
// it was its target's winner, the best of the others takes its place.
func (b *Book) remove(id int64) bool {
	i, ok := b.byID[id]
	if !ok {
		return false
	}
	t := b.ents[i].Target
	delete(b.byID, id)
	b.ents[i], b.won[i] = Entry{}, false // no strings kept alive by a free slot
	b.free = append(b.free, i)
	ids := b.others[t]
	if w := b.win[t]; w != i {
		ids = slices.DeleteFunc(ids, func(x int64) bool { return x == id })
	} else if len(ids) == 0 {
		delete(b.win, t)
	} else {
		best := 0
		for j, x := range ids[1:] {
			if beats(b.ents[b.byID[x]], b.ents[b.byID[ids[best]]]) {
				best = j + 1
			}
		}
		b.win[t] = b.byID[ids[best]]
		b.won[b.win[t]] = true
		ids = slices.Delete(ids, best, best+1)
	}
	if len(ids) == 0 {
		delete(b.others, t)
	} else {
		b.others[t] = ids
	}
	return true
}

// entry checks a decision against the filter; why says why it is refused.
func (b *Book) entry(d Decision, now time.Time) (e Entry, why string) {
	// The filter's scopes are lower case; the LAPI writes "Ip" and
	// "Range": a fold, not a lower-cased copy per decision.
	i := slices.IndexFunc(b.filter.Scopes, func(s string) bool { return strings.EqualFold(s, d.Scope) })
	if i < 0 {
		return e, "scope not taken"
	}
	scope := b.filter.Scopes[i]
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
