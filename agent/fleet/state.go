package fleet

import (
	"container/heap"
	"net/netip"
	"slices"
	"time"
)

// limits are the Options that the merge and the caps use.
type limits struct {
	node        string
	maxTTL      time.Duration
	issuerRate  float64
	issuerBurst int
	maxActive   int
}

// state is the raw set of bucket entries a Client (or BucketDigest) has
// read, kept merged incrementally: after process, active is the merged
// set within the caps, a pure function of the unexpired entries.
type state struct {
	lim      limits
	entries  map[string]*entry         // bucket entries by key
	byTarget map[netip.Prefix][]*entry // bucket entries by target
	issuers  map[string][]*entry       // bucket entries by issuer, in revision order
	own      map[netip.Prefix]*entry   // the node's own verdicts not yet read back
	won      map[netip.Prefix]dirtyWin // process's view of the dirty targets, reused
	active   map[netip.Prefix]*Verdict // winners within the cap (their entries' verdicts, never changed)
	capped   map[netip.Prefix]bool     // winners over the cap
	dirty    map[netip.Prefix]bool     // targets to merge again
	rescan   map[string]int            // issuers to rate-scan again, from index
	exp      expiryHeap                // entries by expiry
	lastRev  uint64                    // highest revision read
	version  uint64                    // counts the changes of active
	refusals []Refusal                 // to report
	changes  []Change                  // process's result, reused
	pruned   time.Time                 // expired entries are gone up to here
	// gen counts the resyncs: put marks each entry with it, so that at
	// the end of a resync the entries not read again are the ones of an
	// older gen (no set of the keys read).
	gen uint32
	// slab is where put allocates entries during a resync (nil outside):
	// a chunk of slabEntries at a time instead of one object per entry,
	// which the GC scans as one.
	slab []entry
}

// slabEntries is the size of a resync's chunks of entries: about 230
// KiB. A chunk lives as long as one of its entries does (never reused), so
// after a resync the chunks' memory is at most the resync's own.
const slabEntries = 1024

func newState(lim limits) *state {
	return &state{lim: lim, entries: map[string]*entry{}, byTarget: map[netip.Prefix][]*entry{},
		issuers: map[string][]*entry{}, own: map[netip.Prefix]*entry{}, won: map[netip.Prefix]dirtyWin{},
		active: map[netip.Prefix]*Verdict{}, capped: map[netip.Prefix]bool{},
		dirty: map[netip.Prefix]bool{}, rescan: map[string]int{}}
}

// refuse records a refusal to report.
func (s *state) refuse(v Verdict, reason string) {
	s.refusals = append(s.refusals, Refusal{Verdict: v, Reason: reason})
}

// put reads one bucket value: a valid unexpired verdict replaces the key's
// entry; an invalid one is refused and removes it (the bucket no longer
// holds the old value either).
func (s *state) put(key string, data []byte, rev uint64, ts time.Time) {
	s.lastRev = max(s.lastRev, rev)
	v, reason, err := decode(key, data, s.lim.maxTTL)
	if err != nil {
		s.refuse(v, reason)
		s.remove(key)
		return
	}
	s.remove(key)
	if !v.Expires.After(s.pruned) {
		return
	}
	e := s.newEntry()
	*e = entry{key: key, v: v, rev: rev, ts: ts, rateOK: true, gen: s.gen} // rateOK until rate-scanned
	s.entries[key] = e
	s.byTarget[v.Target] = append(s.byTarget[v.Target], e)
	list := s.issuers[v.Issuer]
	i := len(list)
	if i > 0 && list[i-1].rev > rev { // out of order: only on a resync's snapshot
		i, _ = slices.BinarySearchFunc(list, rev, func(e *entry, r uint64) int { return cmpU(e.rev, r) })
	}
	s.issuers[v.Issuer] = slices.Insert(list, i, e)
	s.markIssuer(v.Issuer, i)
	heap.Push(&s.exp, e)
	s.dirty[v.Target] = true
	if o := s.own[v.Target]; o != nil && o.key == key && o.rev != 0 && rev >= o.rev {
		delete(s.own, v.Target) // the published verdict came back
	}
}

// newEntry allocates an entry: from the slab during a resync, else on its
// own (a long-lived entry would otherwise keep a whole chunk).
func (s *state) newEntry() *entry {
	if s.slab == nil {
		return &entry{}
	}
	if len(s.slab) == cap(s.slab) {
		s.slab = make([]entry, 0, slabEntries)
	}
	s.slab = s.slab[:len(s.slab)+1]
	return &s.slab[len(s.slab)-1]
}

// beginResync starts reading the whole bucket again: the entries read from
// here on are of a new gen.
func (s *state) beginResync() {
	s.gen++
	s.slab = make([]entry, 0, slabEntries)
}

// endResync ends a resync at the initial-values marker: every key the
// bucket holds has been read again since beginResync, so an entry of an
// older gen is gone from the bucket.
func (s *state) endResync() {
	for key, e := range s.entries {
		if e.gen != s.gen {
			s.remove(key)
		}
	}
	s.slab = nil
}

// dropResync gives a resync up: the entries of older gens stay.
func (s *state) dropResync() { s.slab = nil }

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// del reads a delete or purge of key.
func (s *state) del(key string, rev uint64) {
	s.lastRev = max(s.lastRev, rev)
	s.remove(key)
}

// remove drops key's entry, if any.
func (s *state) remove(key string) {
	e := s.entries[key]
	if e == nil {
		return
	}
	delete(s.entries, key)
	t := e.v.Target
	s.byTarget[t] = slices.DeleteFunc(s.byTarget[t], func(x *entry) bool { return x == e })
	if len(s.byTarget[t]) == 0 {
		delete(s.byTarget, t)
	}
	list := s.issuers[e.v.Issuer]
	if i, found := slices.BinarySearchFunc(list, e.rev, func(x *entry, r uint64) int { return cmpU(x.rev, r) }); found {
		s.issuers[e.v.Issuer] = slices.Delete(list, i, i+1)
		s.markIssuer(e.v.Issuer, i)
	}
	if len(s.issuers[e.v.Issuer]) == 0 {
		delete(s.issuers, e.v.Issuer)
	}
	s.dirty[t] = true
}

func (s *state) markIssuer(issuer string, from int) {
	if i, ok := s.rescan[issuer]; !ok || from < i {
		s.rescan[issuer] = from
	}
}

// publish merges one of the node's own verdicts at once, before it is read
// back from the bucket.
func (s *state) publish(v Verdict) *entry {
	e := &entry{key: Key(v.Issuer, v.Target), v: v, pending: true, rateOK: true}
	s.own[v.Target] = e
	s.dirty[v.Target] = true
	return e
}

// prune drops the entries expired at now (and own ones), so that every
// later merge is over unexpired entries only.
func (s *state) prune(now time.Time) {
	s.pruned = now
	for s.exp.Len() > 0 && !s.exp[0].v.Expires.After(now) {
		e := heap.Pop(&s.exp).(*entry)
		if s.entries[e.key] == e {
			s.remove(e.key)
		}
	}
	for t, e := range s.own {
		if !e.v.Expires.After(now) {
			delete(s.own, t)
			s.dirty[t] = true
		}
	}
}

// process merges the dirty targets again and applies the caps; it returns
// the changes to the active set since the last call, in a slice that is
// the state's again at the next call (reused: a batch of changes is about
// 200 bytes each, and growing it anew every batch was a seventh of a cold
// sync's CPU).
func (s *state) process() []Change {
	for issuer, from := range s.rescan {
		list := s.issuers[issuer]
		if from < len(list) {
			rateScan(list, from, s.lim.issuerRate, s.lim.issuerBurst, func(e *entry) {
				s.dirty[e.v.Target] = true
				if !e.rateOK && !e.reported {
					e.reported = true
					s.refuse(e.v, RefusedRate)
				}
			})
		}
	}
	clear(s.rescan)
	clear(s.changes)
	changes := s.changes[:0]
	if cap(changes) > 4*batchEntries {
		changes = nil // after a big change (a resync, an expiry wave), let it go
	}
	change := func(t netip.Prefix, old *Verdict, had bool, v *Verdict, in bool) {
		switch {
		case in && (!had || !sameVerdict(*old, *v)):
			s.active[t] = v
			changes = append(changes, Change{Target: t, Winner: *v})
			s.version++
		case !in && had:
			delete(s.active, t)
			changes = append(changes, Change{Target: t, Remove: true})
			s.version++
		}
	}
	set := func(t netip.Prefix, v *Verdict, in bool) {
		old, had := s.active[t]
		change(t, old, had, v, in)
	}
	// The targets in force after the last process are the active ones
	// and the capped ones (capped is part of them, active the rest), so
	// their number follows from the dirty targets' winners alone; every
	// target's winner is needed only over the cap.
	inForce := len(s.active) + len(s.capped)
	for t := range s.dirty {
		old, was := s.active[t]
		w, _, ok := s.winnerOf(t)
		s.won[t] = dirtyWin{w, ok, old, was}
		switch {
		case ok && !was && !s.capped[t]:
			inForce++
		case !ok && (was || s.capped[t]):
			inForce--
		}
	}
	if inForce <= s.lim.maxActive && len(s.capped) == 0 {
		for t, d := range s.won {
			change(t, d.old, d.had, d.v, d.ok)
		}
	} else {
		// Over the cap (or just back under it): settle every target.
		all := s.allInForce()
		over := capActive(all, s.lim.maxActive)
		wasCapped := s.capped
		s.capped = map[netip.Prefix]bool{}
		for _, t := range over {
			s.capped[t] = true
			if !wasCapped[t] {
				s.refuse(*all[t].v, RefusedActiveCap)
			}
		}
		for t := range wasCapped {
			if !s.capped[t] {
				s.dirty[t] = true
			}
		}
		for t := range s.dirty {
			w, ok := all[t]
			set(t, w.v, ok && !s.capped[t])
		}
		for t, w := range all {
			set(t, w.v, !s.capped[t])
		}
	}
	s.dirty = reuse(s.dirty)
	s.won = reuse(s.won)
	s.changes = changes
	return changes
}

// dirtyWin is what process learnt of a dirty target: its winner (ok
// false when nothing is in force) and its verdict in the active set
// before (had false when none).
type dirtyWin struct {
	v   *Verdict
	ok  bool
	old *Verdict
	had bool
}

// winnerOf is the winner on target t (see winner) among its bucket
// entries and the node's own pending verdict, which replaces its bucket
// entry.
func (s *state) winnerOf(t netip.Prefix) (*Verdict, uint64, bool) {
	es := s.byTarget[t]
	if o := s.own[t]; o != nil {
		es = append(slices.DeleteFunc(slices.Clone(es), func(e *entry) bool { return e.key == o.key }), o)
	}
	return winner(es)
}

// allInForce is every target's winner, for the active cap.
func (s *state) allInForce() map[netip.Prefix]winning {
	all := make(map[netip.Prefix]winning, len(s.byTarget)+len(s.own))
	add := func(t netip.Prefix) {
		if w, first, ok := s.winnerOf(t); ok {
			all[t] = winning{w, first}
		}
	}
	for t := range s.byTarget {
		add(t)
	}
	for t := range s.own {
		add(t)
	}
	return all
}

// smallMap is the size up to which reuse empties a map in place, and
// from which grow sizes the state's maps.
const smallMap = 1 << 14

// reuse empties m for the next batch: in place up to smallMap entries (a
// batch of batchEntries then costs no new map and no growth), else a new
// map (clear walks every slot of a big map: after expiring a million
// verdicts it would stay that big).
func reuse[K comparable, V any](m map[K]V) map[K]V {
	if len(m) > smallMap {
		return map[K]V{}
	}
	clear(m)
	return m
}

// grow sizes the state's maps for n more entries before a resync reads
// them, so that they do not grow by rehashing one entry at a time.
func (s *state) grow(n int) {
	if len(s.entries) > 0 || n <= smallMap {
		return
	}
	s.entries = make(map[string]*entry, n)
	s.byTarget = make(map[netip.Prefix][]*entry, n)
	s.exp = slices.Grow(s.exp, n)
	if len(s.active) == 0 {
		s.active = make(map[netip.Prefix]*Verdict, n)
	}
}

// sameVerdict compares two verdicts field by field, times by the instant.
func sameVerdict(a, b Verdict) bool {
	return a.Target == b.Target && a.Action == b.Action && a.Issuer == b.Issuer && a.Origin == b.Origin &&
		a.Reason == b.Reason && a.Score == b.Score && a.IssuedAt.Equal(b.IssuedAt) && a.Expires.Equal(b.Expires)
}

// acked records that the node's own pending verdict e is in the bucket at
// rev; it stays merged until the watch reads that revision back.
func (s *state) acked(e *entry, rev uint64) {
	e.rev = rev
	if s.own[e.v.Target] != e {
		return
	}
	if b := s.entries[e.key]; b != nil && b.rev >= rev || s.lastRev >= rev {
		delete(s.own, e.v.Target)
		s.dirty[e.v.Target] = true
	}
}

// takeRefusals returns and forgets the refusals to report.
func (s *state) takeRefusals() []Refusal {
	r := s.refusals
	s.refusals = nil
	return r
}

// expiryHeap orders entries by expiry (a min-heap).
type expiryHeap []*entry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].v.Expires.Before(h[j].v.Expires) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }

// Push adds an entry (container/heap).
func (h *expiryHeap) Push(x any) { *h = append(*h, x.(*entry)) }

// Pop removes the last entry (container/heap).
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}
