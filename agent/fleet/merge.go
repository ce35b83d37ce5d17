package fleet

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"iter"
	"net/netip"
	"slices"
	"time"
)

// This file is the merge rule and the caps as pure functions of the
// bucket's entries, the same on every host.

// entry is one key's current value (the key is Key(v.Issuer, v.Target)):
// a bucket entry (rev > 0, ts the server's timestamp in Unix ns, 0 for
// none) or one of the Client's own verdicts not yet read back from the
// bucket (pending). Its fields are laid out for size (200 bytes): a
// million of them are a cold sync's memory.
type entry struct {
	v   Verdict
	rev uint64
	ts  int64
	// tokens is the issuer's bucket after the entry (see rateOK).
	tokens float64
	// t is the state's target of v.Target; next is the target's next
	// bucket entry.
	t    *target
	next *entry
	gen  uint32 // the state's gen when put (see state.gen)
	// rateOK: within the issuer's rate cap (always for pending entries,
	// which the publisher paces).
	rateOK   bool
	pending  bool
	reported bool // a refusal of this entry was reported
	live     bool // a bucket entry still on its target
}

// strength orders the actions a winner can have.
func strength(a Action) int {
	switch a {
	case ActionBlock:
		return 2
	case ActionThrottle:
		return 1
	}
	return 0
}

// winner is the verdict in force on one target among its entries (all
// unexpired): entries over their issuer's rate are ignored; a revoke
// cancels every verdict issued before it; of the rest the strongest action
// wins, then the latest expiry, then the smallest issuer name. ok is false
// when nothing is in force. first is the smallest revision among the
// entries in force (a pending entry counts as after every revision), which
// orders targets for the active cap.
func winner(es []*entry) (w *Verdict, first uint64, ok bool) {
	var revoked time.Time
	for _, e := range es {
		if e.rateOK && e.v.Action == ActionRevoke && e.v.IssuedAt.After(revoked) {
			revoked = e.v.IssuedAt
		}
	}
	first = ^uint64(0)
	for _, e := range es {
		if !e.rateOK || e.v.Action == ActionRevoke || e.v.IssuedAt.Before(revoked) {
			continue
		}
		if !e.pending {
			first = min(first, e.rev)
		}
		if !ok || better(e.v, *w) {
			w, ok = &e.v, true
		}
	}
	return w, first, ok
}

// better reports whether a beats b by the merge rule.
func better(a, b Verdict) bool {
	if sa, sb := strength(a.Action), strength(b.Action); sa != sb {
		return sa > sb
	}
	if !a.Expires.Equal(b.Expires) {
		return a.Expires.After(b.Expires)
	}
	return a.Issuer < b.Issuer
}

// rateScan runs one issuer's token bucket (rate per second, burst) over its
// entries in revision order from index from, given the bucket after entry
// from-1 (full before the first), with the server timestamps as the clock;
// it sets rateOK and tokens and calls changed for each entry whose rateOK
// changed.
func rateScan(list []*entry, from int, rate float64, burst int, changed func(*entry)) {
	tokens, last := float64(burst), int64(0)
	if from > 0 {
		tokens, last = list[from-1].tokens, list[from-1].ts
	}
	for _, e := range list[from:] {
		if last != 0 && e.ts > last {
			tokens = min(float64(burst), tokens+time.Duration(e.ts-last).Seconds()*rate)
		}
		if e.ts > last {
			last = e.ts
		}
		ok := tokens >= 1
		if ok {
			tokens--
		}
		e.tokens = tokens
		if ok != e.rateOK {
			e.rateOK = ok
			changed(e)
		}
	}
}

// winning is the verdict in force on a target (its entry's) and the
// first revision among the target's entries in force (see winner).
type winning struct {
	v     *Verdict
	first uint64
}

// capActive keeps, of the targets in force, the maxActive that came first
// (smallest first revision, then the target's order); it returns the
// targets over the cap.
func capActive(inForce map[netip.Prefix]winning, maxActive int) []netip.Prefix {
	if len(inForce) <= maxActive {
		return nil
	}
	targets := make([]netip.Prefix, 0, len(inForce))
	for t := range inForce {
		targets = append(targets, t)
	}
	slices.SortFunc(targets, func(a, b netip.Prefix) int {
		if c := cmp.Compare(inForce[a].first, inForce[b].first); c != 0 {
			return c
		}
		return comparePrefix(a, b)
	})
	return targets[maxActive:]
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

// Digest is the hex SHA-256 of the sorted lines "target action
// expires_unix_ns" of a merged set, leaving out what expired at now.
func Digest(set iter.Seq2[netip.Prefix, *Verdict], now time.Time) string {
	var lines []string
	for t, v := range set {
		if v.Expires.After(now) {
			lines = append(lines, fmt.Sprintf("%s %s %d\n", t, v.Action, v.Expires.UnixNano()))
		}
	}
	slices.Sort(lines)
	h := sha256.New()
	for _, l := range lines {
		h.Write([]byte(l))
	}
	return hex.EncodeToString(h.Sum(nil))
}
