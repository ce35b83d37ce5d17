package fleet

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// This file checks that the merged set is a pure function of the bucket's
// values, whatever the order in which they (and the node's own publishes
// and their acknowledgements) arrive, and that the changes handed to the
// Applier, applied in order, always leave it holding the merged set.

// logEntry is one revision of the bucket: a put of v under key, or (del)
// the delete of key.
type logEntry struct {
	key string
	v   Verdict
	del bool
}

// orderLog is a bucket's history (revision i+1 at index i) as written by
// a, b, obs and rogue, with what the merge rule makes of it, worked out by
// hand for two caps on the active set.
type orderLog struct {
	entries []logEntry
	own     []int // the revisions (indexes) of node a's own publishes, in order
	want    map[int]map[netip.Prefix]Verdict
}

func newOrderLog(t *testing.T) orderLog {
	t0 := time.Now().UTC().Truncate(time.Second).Add(-time.Minute)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	tgt := func(i int) netip.Prefix { return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 3, byte(i)}), 32) }
	x, y, w, v := tgt(1), tgt(2), tgt(3), tgt(4)
	mk := func(issuer string, target netip.Prefix, act Action, ms int, life time.Duration) logEntry {
		vd := Verdict{Target: target, Action: act, Issuer: issuer, Origin: "cli", Reason: "order",
			IssuedAt: at(ms), Expires: at(ms).Add(life)}
		return logEntry{key: Key(issuer, target), v: vd}
	}
	l := orderLog{entries: []logEntry{
		mk("a", x, ActionThrottle, 1, 2*time.Hour), // 1: a's own
		mk("b", x, ActionBlock, 2, time.Hour),      // 2: beats a's throttle: block beats throttle
		mk("b", y, ActionBlock, 3, time.Hour),      // 3
		mk("a", y, ActionBlock, 4, 2*time.Hour),    // 4: a's own, beats b's: later expiry
		mk("rogue", tgt(10), ActionBlock, 5, time.Hour),
		mk("rogue", tgt(11), ActionBlock, 6, time.Hour),
		mk("rogue", tgt(12), ActionBlock, 7, time.Hour),
		mk("rogue", tgt(13), ActionBlock, 8, time.Hour), // 8: over rogue's burst of 3
		mk("b", w, ActionBlock, 9, time.Hour),           // 9
		{key: Key("b", w), del: true},                   // 10: b deletes it
		mk("obs", x, ActionRevoke, 11, 2*time.Hour),     // 11: cancels a's and b's on x
		mk("a", v, ActionBlock, 12, 30*time.Minute),     // 12: a's own
		mk("a", v, ActionBlock, 13, 3*time.Hour),        // 13: a's own, replaces it
	}, own: []int{0, 3, 11, 12}}
	win := func(i int) Verdict { return l.entries[i].v }
	l.want = map[int]map[netip.Prefix]Verdict{
		1 << 20: {y: win(3), tgt(10): win(4), tgt(11): win(5), tgt(12): win(6), v: win(12)},
		// The 3 targets in force first (by their first revision in force):
		// y (3), 10 (5), 11 (6); 12 (7) and v (13) are over the cap.
		3: {y: win(3), tgt(10): win(4), tgt(11): win(5)},
	}
	for _, e := range l.entries {
		if e.del {
			continue
		}
		if _, err := check(e.v, DefaultOptions().MaxTTL); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// orderLimits caps each issuer at a burst of 3 (and no refill to speak of),
// the active set at maxActive.
func orderLimits(maxActive int) limits {
	return limits{node: "a", maxTTL: DefaultOptions().MaxTTL, issuerRate: 1e-6, issuerBurst: 3, maxActive: maxActive}
}

// applied replays changes, in order, into set, as the Applier gets them.
func applied(set map[netip.Prefix]Verdict, changes []Change) {
	for _, c := range changes {
		if c.Remove {
			delete(set, c.Target)
		} else {
			set[c.Target] = *c.Winner
		}
	}
}

// sameSet reports how got differs from want, "" when it does not.
func sameSet(got map[netip.Prefix]Verdict, want map[netip.Prefix]Verdict) string {
	for t, w := range want {
		if g, ok := got[t]; !ok || !sameVerdict(g, w) {
			return fmt.Sprintf("%v: got %s %s expiring %s (held %v), want %s %s expiring %s",
				t, g.Issuer, g.Action, g.Expires.Format(time.TimeOnly), ok, w.Issuer, w.Action, w.Expires.Format(time.TimeOnly))
		}
	}
	for t, g := range got {
		if _, ok := want[t]; !ok {
			return fmt.Sprintf("%v: got %s's %s, want nothing", t, g.Issuer, g.Action)
		}
	}
	return ""
}

func activeSet(s *state) map[netip.Prefix]Verdict {
	out := make(map[netip.Prefix]Verdict, s.active)
	for t, v := range s.activeSet() {
		out[t] = *v
	}
	return out
}

// TestMergeArrivalOrder: node a publishes 4 of the bucket's 13 revisions;
// its publishes, their acknowledgements and its watcher's reads (in
// revision order, each after the publish that made it) arrive in 3,000
// random orders, merged in batches of random size. Whatever the order, the
// changes handed to the Applier leave it holding the merged set after
// every batch, and once all has arrived both are the set the rule makes
// of the bucket (block beats throttle, then the later expiry; a revoke
// cancels what came before; over an issuer's burst refused; over the
// active cap, the targets in force last are left out), with a's own
// verdicts all read back.
func TestMergeArrivalOrder(t *testing.T) {
	l := newOrderLog(t)
	for _, maxActive := range []int{1 << 20, 3} {
		rng := rand.New(rand.NewPCG(12, uint64(maxActive)))
		for trial := range 3000 {
			s := newState(orderLimits(maxActive))
			held := map[netip.Prefix]Verdict{}
			var (
				pending   []int // own revisions published, not acknowledged
				published = map[int]*entry{}
				nextRead  int
				nextOwn   int
				trace     []string
			)
			for nextRead < len(l.entries) || len(pending) > 0 {
				type step struct {
					what string
					i    int
				}
				var can []step
				if nextRead < len(l.entries) && (!slices.Contains(l.own, nextRead) || published[nextRead] != nil) {
					can = append(can, step{"read", nextRead})
				}
				if nextOwn < len(l.own) {
					can = append(can, step{"publish", l.own[nextOwn]})
				}
				for _, i := range pending {
					can = append(can, step{"ack", i})
				}
				st := can[rng.IntN(len(can))]
				trace = append(trace, fmt.Sprintf("%s %d", st.what, st.i+1))
				e := l.entries[st.i]
				switch st.what {
				case "read":
					if e.del {
						s.del(e.key, uint64(st.i+1))
					} else {
						data, err := encode(e.v)
						if err != nil {
							t.Fatal(err)
						}
						s.put(e.key, data, uint64(st.i+1), e.v.IssuedAt)
					}
					nextRead++
				case "publish":
					published[st.i] = s.publish(e.v)
					pending = append(pending, st.i)
					nextOwn++
				case "ack":
					s.acked(published[st.i], uint64(st.i+1))
					pending = slices.DeleteFunc(pending, func(i int) bool { return i == st.i })
				}
				if rng.IntN(2) == 0 {
					continue // merged with what comes next
				}
				applied(held, processed(s))
				if d := sameSet(held, activeSet(s)); d != "" {
					t.Fatalf("cap %d, trial %d: the Applier does not hold the merged set after %v: %s", maxActive, trial, trace, d)
				}
			}
			applied(held, processed(s))
			for _, set := range []map[netip.Prefix]Verdict{activeSet(s), held} {
				if d := sameSet(set, l.want[maxActive]); d != "" {
					t.Fatalf("cap %d, trial %d: after %v: %s", maxActive, trial, trace, d)
				}
			}
			if len(s.own) != 0 {
				t.Fatalf("cap %d, trial %d: own verdicts still pending after all were read back: %d", maxActive, trial, len(s.own))
			}
		}
	}
}

// TestMergeSnapshotOrder: the bucket's current values (its last revision
// of each key: 10 of them) read in 5,000 random orders for each cap (a
// resync's snapshot may come out of revision order), merged one at a time,
// give the same set, and so does what the Applier holds.
func TestMergeSnapshotOrder(t *testing.T) {
	l := newOrderLog(t)
	last := map[string]int{}
	for i, e := range l.entries {
		last[e.key] = i
	}
	var current []int
	for _, i := range last {
		if !l.entries[i].del {
			current = append(current, i)
		}
	}
	if len(current) != 10 {
		t.Fatalf("%d current values, want 10", len(current))
	}
	data := make([][]byte, len(l.entries))
	for _, i := range current {
		var err error
		if data[i], err = encode(l.entries[i].v); err != nil {
			t.Fatal(err)
		}
	}
	for _, maxActive := range []int{1 << 20, 3} {
		rng := rand.New(rand.NewPCG(12, uint64(maxActive)))
		for range 5000 {
			rng.Shuffle(len(current), func(i, j int) { current[i], current[j] = current[j], current[i] })
			s := newState(orderLimits(maxActive))
			held := map[netip.Prefix]Verdict{}
			for _, i := range current {
				e := l.entries[i]
				s.put(e.key, data[i], uint64(i+1), e.v.IssuedAt)
				applied(held, processed(s))
			}
			for _, set := range []map[netip.Prefix]Verdict{activeSet(s), held} {
				if d := sameSet(set, l.want[maxActive]); d != "" {
					t.Fatalf("cap %d, revisions read in the order %v: %s", maxActive, current, d)
				}
			}
		}
	}
}

// processed merges what changed in s and takes the changes.
func processed(s *state) []Change {
	s.process()
	return s.takeChanges()
}
