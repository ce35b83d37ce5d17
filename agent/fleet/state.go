package fleet

import (
	"container/heap"
	"iter"
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
// read, kept merged incrementally: after process, the targets' active
// verdicts are the merged set within the caps, a pure function of the
// unexpired entries, and out holds the changes to it not yet taken.
type state struct {
	lim     limits
	targets map[netip.Prefix]*target // bucket entries and merged verdict by target
	entries int                      // bucket entries
	issuers map[string][]*entry      // bucket entries by issuer, in revision order
	own     map[netip.Prefix]*entry  // the node's own verdicts not yet read back
	capped  map[netip.Prefix]bool    // winners over the cap
	dirty   []*target                // targets to merge again (their dirty set)
	wins    []dirtyWin               // process's view of dirty, reused
	rescan  map[string]int           // issuers to rate-scan again, from index
	exp     expiryHeap               // entries by expiry
	active  int                      // targets with an active verdict
	lastRev uint64                   // highest revision read
	version uint64                   // counts the changes of the active set
	// out are the changes of the active set not taken yet (takeChanges),
	// one per target at most: a target's later change replaces the one
	// at its outAt while its outGen is outGen (a take starts a new gen).
	out      []Change
	outGen   uint64
	noOut    bool      // out is not kept: nothing takes it (BucketDigest's state)
	refusals []Refusal // to report
	pruned   time.Time // expired entries are gone up to here
	// gen counts the resyncs: put marks each entry with it, so that at
	// the end of a resync the entries not read again are the ones of an
	// older gen (no set of the keys read); older counts those left.
	gen   uint32
	older int
	// slab and tslab are where put allocates entries and targets during a
	// resync (nil outside): a chunk of slabEntries at a time instead of
	// one object each, which the GC scans as one.
	slab  []entry
	tslab []target
}

// target is what the state holds on one target: its bucket entries, its
// verdict in the active set, and its place in dirty and out (64 bytes:
// a million of them are a cold sync's memory).
type target struct {
	prefix netip.Prefix
	first  *entry   // the bucket entries on it, linked by entry.next
	active *Verdict // its verdict in the active set (an entry's, never changed), nil if none
	outGen uint64   // out[outAt] is its change while outGen is state.outGen
	outAt  uint32   // (a batch holds a change per target at most: fewer than 2^32)
	dirty  bool     // in state.dirty
}

// slabEntries is the size of a resync's chunks of entries and targets
// (about 230 and 70 KiB). A chunk lives as long as one of its objects
// does (never reused), so after a resync the chunks' memory is at most
// the resync's own.
const slabEntries = 1024

func newState(lim limits) *state {
	return &state{lim: lim, targets: map[netip.Prefix]*target{},
		issuers: map[string][]*entry{}, own: map[netip.Prefix]*entry{}, capped: map[netip.Prefix]bool{},
		rescan: map[string]int{}, outGen: 1}
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
		s.del(key, rev)
		return
	}
	t := s.targets[v.Target]
	if t != nil {
		if old := t.entryOf(v.Issuer); old != nil {
			s.remove(old)
		}
	}
	if !v.Expires.After(s.pruned) {
		return
	}
	if t == nil {
		t = s.newTarget(v.Target)
	}
	e := s.newEntry()
	*e = entry{v: v, rev: rev, rateOK: true, gen: s.gen, t: t, next: t.first, live: true} // rateOK until rate-scanned
	if !ts.IsZero() {
		e.ts = ts.UnixNano()
	}
	t.first = e
	s.entries++
	list := s.issuers[v.Issuer]
	i := len(list)
	if i > 0 && list[i-1].rev > rev { // out of order: only on a resync's snapshot
		i, _ = slices.BinarySearchFunc(list, rev, func(e *entry, r uint64) int { return cmpU(e.rev, r) })
	}
	s.issuers[v.Issuer] = slices.Insert(list, i, e)
	s.markIssuer(v.Issuer, i)
	heap.Push(&s.exp, e)
	s.markDirty(t)
	if o := s.ownOf(v.Target); o != nil && o.v.Issuer == v.Issuer && o.rev != 0 && rev >= o.rev {
		delete(s.own, v.Target) // the published verdict came back
	}
}

// entryOf is issuer's bucket entry on t, nil if none.
func (t *target) entryOf(issuer string) *entry {
	for e := t.first; e != nil; e = e.next {
		if e.v.Issuer == issuer {
			return e
		}
	}
	return nil
}

// targetOf is the state's target p, made if it has none.
func (s *state) targetOf(p netip.Prefix) *target {
	if t := s.targets[p]; t != nil {
		return t
	}
	return s.newTarget(p)
}

// newTarget makes the state's target p: from the slab during a resync.
func (s *state) newTarget(p netip.Prefix) *target {
	var t *target
	if s.tslab == nil {
		t = &target{}
	} else {
		if len(s.tslab) == cap(s.tslab) {
			s.tslab = make([]target, 0, slabEntries)
		}
		s.tslab = s.tslab[:len(s.tslab)+1]
		t = &s.tslab[len(s.tslab)-1]
	}
	t.prefix = p
	s.targets[p] = t
	return t
}

// ownOf is the node's own pending verdict on p, nil if none.
func (s *state) ownOf(p netip.Prefix) *entry {
	if len(s.own) == 0 {
		return nil // most of the time: no hashing
	}
	return s.own[p]
}

// markDirty queues t to be merged again.
func (s *state) markDirty(t *target) {
	if !t.dirty {
		t.dirty = true
		s.dirty = append(s.dirty, t)
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
	s.older = s.entries
	s.slab = make([]entry, 0, slabEntries)
	s.tslab = make([]target, 0, slabEntries)
}

// endResync ends a resync at the initial-values marker: every key the
// bucket holds has been read again since beginResync, so an entry of an
// older gen is gone from the bucket.
func (s *state) endResync() {
	for _, t := range s.targets {
		if s.older == 0 {
			break // none left (always in a cold sync): no walk
		}
		for e := t.first; e != nil; {
			next := e.next
			if e.gen != s.gen {
				s.remove(e)
			}
			e = next
		}
	}
	s.slab, s.tslab = nil, nil
}

// dropResync gives a resync up: the entries of older gens stay.
func (s *state) dropResync() { s.slab, s.tslab = nil, nil }

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// del reads a delete or purge of key (a key that ParseKey refuses has
// no entry).
func (s *state) del(key string, rev uint64) {
	s.lastRev = max(s.lastRev, rev)
	issuer, p, err := ParseKey(key)
	if err != nil {
		return
	}
	if t := s.targets[p]; t != nil {
		if e := t.entryOf(issuer); e != nil {
			s.remove(e)
		}
	}
}

// remove drops a bucket entry.
func (s *state) remove(e *entry) {
	t := e.t
	for p := &t.first; *p != nil; p = &(*p).next {
		if *p == e {
			*p = e.next
			break
		}
	}
	e.next, e.live = nil, false
	s.entries--
	if e.gen != s.gen {
		s.older--
	}
	list := s.issuers[e.v.Issuer]
	if i, found := slices.BinarySearchFunc(list, e.rev, func(x *entry, r uint64) int { return cmpU(x.rev, r) }); found {
		s.issuers[e.v.Issuer] = slices.Delete(list, i, i+1)
		s.markIssuer(e.v.Issuer, i)
	}
	if len(s.issuers[e.v.Issuer]) == 0 {
		delete(s.issuers, e.v.Issuer)
	}
	s.markDirty(t)
}

func (s *state) markIssuer(issuer string, from int) {
	if i, ok := s.rescan[issuer]; !ok || from < i {
		s.rescan[issuer] = from
	}
}

// publish merges one of the node's own verdicts at once, before it is read
// back from the bucket.
func (s *state) publish(v Verdict) *entry {
	t := s.targetOf(v.Target)
	e := &entry{v: v, pending: true, rateOK: true, t: t}
	s.own[v.Target] = e
	s.markDirty(t)
	return e
}

// prune drops the entries expired at now (and own ones), so that every
// later merge is over unexpired entries only.
func (s *state) prune(now time.Time) {
	s.pruned = now
	for s.exp.Len() > 0 && !s.exp[0].v.Expires.After(now) {
		if e := heap.Pop(&s.exp).(*entry); e.live {
			s.remove(e)
		}
	}
	for p, e := range s.own {
		if !e.v.Expires.After(now) {
			delete(s.own, p)
			s.markDirty(e.t)
		}
	}
}

// process merges the dirty targets again and applies the caps; the
// changes of the active set go to out, for takeChanges.
func (s *state) process() {
	for issuer, from := range s.rescan {
		list := s.issuers[issuer]
		if from < len(list) {
			rateScan(list, from, s.lim.issuerRate, s.lim.issuerBurst, func(e *entry) {
				s.markDirty(e.t)
				if !e.rateOK && !e.reported {
					e.reported = true
					s.refuse(e.v, RefusedRate)
				}
			})
		}
	}
	clear(s.rescan)
	// The targets in force after the last process are the active ones
	// and the capped ones (capped is part of them, active the rest), so
	// their number follows from the dirty targets' winners alone; every
	// target's winner is needed only over the cap.
	inForce := s.active + len(s.capped)
	wins := s.wins[:0]
	for _, t := range s.dirty {
		w, _, ok := s.winnerOf(t)
		wins = append(wins, dirtyWin{w, ok})
		capped := s.capped[t.prefix]
		switch {
		case ok && t.active == nil && !capped:
			inForce++
		case !ok && (t.active != nil || capped):
			inForce--
		}
	}
	if inForce <= s.lim.maxActive && len(s.capped) == 0 {
		for i, t := range s.dirty {
			s.set(t, wins[i].v, wins[i].ok)
		}
	} else {
		s.settleCap()
	}
	for _, t := range s.dirty {
		t.dirty = false
		if t.first == nil && t.active == nil && !s.capped[t.prefix] && s.ownOf(t.prefix) == nil {
			delete(s.targets, t.prefix)
		}
	}
	clear(wins)
	s.wins = shrink(wins)
	clear(s.dirty)
	s.dirty = shrink(s.dirty)
}

// settleCap settles every target in force when they are over the active
// cap (or just back under it).
func (s *state) settleCap() {
	all := s.allInForce()
	over := capActive(all, s.lim.maxActive)
	wasCapped := s.capped
	s.capped = map[netip.Prefix]bool{}
	for _, p := range over {
		s.capped[p] = true
		if !wasCapped[p] {
			s.refuse(*all[p].v, RefusedActiveCap)
		}
	}
	for p := range wasCapped {
		if t := s.targets[p]; t != nil && !s.capped[p] {
			s.markDirty(t)
		}
	}
	for _, t := range s.dirty {
		w, ok := all[t.prefix]
		s.set(t, w.v, ok && !s.capped[t.prefix])
	}
	for p, w := range all {
		s.set(s.targets[p], w.v, !s.capped[p])
	}
}

// shrink empties a slice for reuse, or lets it go after a big change (a
// resync, an expiry wave).
func shrink[E any](s []E) []E {
	if cap(s) > 4*batchEntries {
		return nil
	}
	return s[:0]
}

// set makes v (in: in force) or nothing t's verdict in the active set, and
// records the change, if any.
func (s *state) set(t *target, v *Verdict, in bool) {
	switch {
	case in && (t.active == nil || !sameVerdict(*t.active, *v)):
		if t.active == nil {
			s.active++
		}
		t.active = v
		s.emit(t, Change{Target: t.prefix, Winner: v})
	case !in && t.active != nil:
		t.active = nil
		s.active--
		s.emit(t, Change{Target: t.prefix, Remove: true})
	}
}

// emit records a change of t's verdict in out, in place of t's change not
// taken yet, if any.
func (s *state) emit(t *target, ch Change) {
	s.version++
	if s.noOut {
		return
	}
	if t.outGen == s.outGen {
		s.out[t.outAt] = ch
		return
	}
	t.outGen, t.outAt = s.outGen, uint32(len(s.out))
	s.out = append(s.out, ch)
}

// takeChanges returns the changes of the active set since the last take,
// in the order of their targets' first change, and starts a new batch.
func (s *state) takeChanges() []Change {
	out := s.out
	s.out = nil
	s.outGen++
	return out
}

// outKeep is the room for changes (48 bytes each) that giveBack keeps
// between batches: 3 MiB.
const outKeep = 1 << 16

// giveBack lets takeChanges' slice, applied, be the next batch's room,
// unless it is larger than outKeep (the memory of a resync's batch is let
// go) or a batch has started.
func (s *state) giveBack(batch []Change) {
	clear(batch)
	if len(s.out) == 0 && cap(batch) <= outKeep {
		s.out = batch[:0]
	}
}

// activeSet is the merged set within the caps.
func (s *state) activeSet() iter.Seq2[netip.Prefix, *Verdict] {
	return func(yield func(netip.Prefix, *Verdict) bool) {
		for p, t := range s.targets {
			if t.active != nil && !yield(p, t.active) {
				return
			}
		}
	}
}

// activeOn is the verdict in force on p, nil if none.
func (s *state) activeOn(p netip.Prefix) *Verdict {
	if t := s.targets[p]; t != nil {
		return t.active
	}
	return nil
}

// dirtyWin is what process learnt of a dirty target: its winner (ok
// false when nothing is in force).
type dirtyWin struct {
	v  *Verdict
	ok bool
}

// winnerOf is the winner on t (see winner) among its bucket entries and
// the node's own pending verdict, which replaces its bucket entry.
func (s *state) winnerOf(t *target) (*Verdict, uint64, bool) {
	var room [8]*entry
	es := room[:0]
	o := s.ownOf(t.prefix)
	for e := t.first; e != nil; e = e.next {
		if o == nil || e.v.Issuer != o.v.Issuer {
			es = append(es, e)
		}
	}
	if o != nil {
		es = append(es, o)
	}
	return winner(es)
}

// allInForce is every target's winner, for the active cap.
func (s *state) allInForce() map[netip.Prefix]winning {
	all := make(map[netip.Prefix]winning, len(s.targets))
	for p, t := range s.targets {
		if w, first, ok := s.winnerOf(t); ok {
			all[p] = winning{w, first}
		}
	}
	return all
}

// smallMap is the size from which grow sizes the state's maps.
const smallMap = 1 << 14

// grow sizes the state's maps for n more entries before a resync reads
// them, so that they do not grow by rehashing one entry at a time.
func (s *state) grow(n int) {
	if len(s.targets) > 0 || n <= smallMap {
		return
	}
	s.targets = make(map[netip.Prefix]*target, n)
	s.exp = slices.Grow(s.exp, n)
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
	if b := e.t.entryOf(e.v.Issuer); b != nil && b.rev >= rev || s.lastRev >= rev {
		delete(s.own, e.v.Target)
		s.markDirty(e.t)
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
