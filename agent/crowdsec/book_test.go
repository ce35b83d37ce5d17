package crowdsec

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

var filter = Filter{Scopes: []string{ScopeIP, ScopeRange}, Actions: map[string]Action{"ban": ActionBlock, "captcha": ActionThrottle}, Max: 10}

func dec(id int64, scope, value, typ, dur string) Decision {
	return Decision{ID: id, Origin: "cscli", Scenario: "test/s", Scope: scope, Type: typ, Value: value, Duration: dur}
}

// show renders changes as "+target action expiry-offset" and "-target".
func show(cs []Change, now time.Time) string {
	cs = slices.Clone(cs)
	slices.SortFunc(cs, func(x, y Change) int { return x.Target.Addr().Compare(y.Target.Addr()) })
	var out []string
	for _, c := range cs {
		if c.Remove {
			out = append(out, "-"+c.Target.String())
			continue
		}
		out = append(out, "+"+c.Target.String()+" "+string(c.Winner.Action)+" "+c.Winner.Expires.Sub(now).String())
	}
	return strings.Join(out, ", ")
}

func TestTarget(t *testing.T) {
	for _, c := range []struct{ scope, value, want string }{
		{"Ip", "198.18.0.5", "198.18.0.5/32"},
		{"ip", "::ffff:198.18.0.5", "198.18.0.5/32"},
		{"Ip", "2001:2::5", "2001:2::5/128"},
		{"Range", "198.18.1.7/24", "198.18.1.0/24"},
		{"range", "::ffff:198.18.1.0/120", "198.18.1.0/24"},
		{"Range", "2001:2::/48", "2001:2::/48"},
		{"Ip", "198.18.0.300", ""},
		{"Ip", "fe80::1%eth0", ""},
		{"Range", "198.18.0.0", ""},
		{"Country", "FR", ""},
	} {
		got, err := Target(c.scope, c.value)
		if (c.want == "") != (err != nil) || (err == nil && got.String() != c.want) {
			t.Errorf("Target(%s, %s) = %v, %v; want %q", c.scope, c.value, got, err, c.want)
		}
	}
}

func TestBookMergeAndWinner(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	b := NewBook(filter)
	cs, n := b.Replace(Stream{New: []Decision{
		dec(1, "Ip", "198.18.0.1", "ban", "1h"),
		dec(2, "Ip", "198.18.0.1", "captcha", "2h"), // weaker than the ban on the same target
		dec(3, "Range", "198.18.1.0/24", "ban", "30m"),
		dec(4, "Ip", "198.18.0.2", "unknown", "1h"), // type not taken
		dec(5, "Ip", "198.18.0.3", "ban", "-1s"),    // expired
		dec(6, "Country", "FR", "ban", "1h"),        // scope not taken
	}}, now)
	if got, want := show(cs, now), "+198.18.0.1/32 block 1h0m0s, +198.18.1.0/24 block 30m0s"; got != want {
		t.Errorf("startup changes: %s; want %s", got, want)
	}
	if n.Taken != 3 || n.Refused != 3 || b.Len() != 3 || !strings.Contains(n.FirstRefusal, "decision 4") {
		t.Errorf("counts %+v, len %d; want 3 taken, 3 refused (first: decision 4), 3 held", n, b.Len())
	}
	// Deleting the ban leaves the captcha in force: a change to throttle.
	cs, n = b.Merge(Stream{Deleted: []Decision{dec(1, "Ip", "198.18.0.1", "ban", "-1s")}}, now)
	if got, want := show(cs, now), "+198.18.0.1/32 throttle 2h0m0s"; got != want || n.Deleted != 1 {
		t.Errorf("after deleting decision 1: %s (%+v); want %s and 1 deleted", got, n, want)
	}
	// A longer ban on the range wins; deleting the shorter changes nothing.
	cs, _ = b.Merge(Stream{New: []Decision{dec(7, "Range", "198.18.1.0/24", "ban", "3h")}}, now)
	if got, want := show(cs, now), "+198.18.1.0/24 block 3h0m0s"; got != want {
		t.Errorf("a longer ban: %s; want %s", got, want)
	}
	cs, _ = b.Merge(Stream{Deleted: []Decision{dec(3, "Range", "198.18.1.0/24", "ban", "0s")}}, now)
	if len(cs) != 0 {
		t.Errorf("deleting the shorter ban changed %s", show(cs, now))
	}
	// Deleting an unknown id changes nothing and counts nothing.
	if cs, n = b.Merge(Stream{Deleted: []Decision{dec(99, "Ip", "198.18.9.9", "ban", "0s")}}, now); len(cs) != 0 || n.Deleted != 0 {
		t.Errorf("unknown id: %s, %+v", show(cs, now), n)
	}
	cs, _ = b.Merge(Stream{Deleted: []Decision{dec(2, "Ip", "198.18.0.1", "captcha", "0s"), dec(7, "Range", "198.18.1.0/24", "ban", "0s")}}, now)
	if got, want := show(cs, now), "-198.18.0.1/32, -198.18.1.0/24"; got != want || b.Len() != 0 {
		t.Errorf("deleting the rest: %s, %d held; want %s, 0", got, b.Len(), want)
	}
}

// TestBookResync: a startup answer after an outage converges, whatever the
// deltas missed: gone decisions are removed, new ones added, unchanged ones
// (read again with a slightly different duration) not rewritten.
func TestBookResync(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	b := NewBook(filter)
	b.Replace(Stream{New: []Decision{dec(1, "Ip", "198.18.0.1", "ban", "1h"), dec(2, "Ip", "198.18.0.2", "ban", "1h")}}, now)
	later := now.Add(10 * time.Second)
	cs, _ := b.Replace(Stream{New: []Decision{
		dec(1, "Ip", "198.18.0.1", "ban", "59m49.6s"), // the same decision, 0.4 s off the first reading
		dec(3, "Ip", "2001:2::3", "ban", "2h"),
	}}, later)
	if got, want := show(cs, later), "-198.18.0.2/32, +2001:2::3/128 block 2h0m0s"; got != want {
		t.Errorf("resync: %s; want %s", got, want)
	}
	if w, _ := b.Winner(netip.MustParsePrefix("198.18.0.1/32")); !w.Expires.Equal(now.Add(time.Hour)) {
		t.Errorf("the unchanged decision's expiry moved to %v", w.Expires)
	}
}

func TestBookCap(t *testing.T) {
	b := NewBook(Filter{Scopes: []string{ScopeIP}, Actions: map[string]Action{"ban": ActionBlock}, Max: 2})
	_, n := b.Replace(Stream{New: []Decision{dec(1, "Ip", "198.18.0.1", "ban", "1h"), dec(2, "Ip", "198.18.0.2", "ban", "1h"),
		dec(3, "Ip", "198.18.0.3", "ban", "1h"), dec(4, "Range", "198.18.1.0/24", "ban", "1h")}}, time.Now())
	if n.Taken != 2 || n.Refused != 2 || b.Len() != 2 {
		t.Errorf("cap 2: %+v, %d held; want 2 taken, 2 refused (one over the cap, one range not in scopes)", n, b.Len())
	}
	// A decision seen again replaces itself, within the cap.
	if _, n = b.Merge(Stream{New: []Decision{dec(2, "Ip", "198.18.0.2", "ban", "2h")}}, time.Now()); n.Taken != 1 || n.Refused != 0 {
		t.Errorf("the same id again at the cap: %+v; want taken", n)
	}
}

func TestBookOrigins(t *testing.T) {
	b := NewBook(Filter{Scopes: []string{ScopeIP}, Origins: []string{"crowdsec"}, Actions: map[string]Action{"ban": ActionBlock}})
	d := dec(1, "Ip", "198.18.0.1", "ban", "1h")
	if _, n := b.Replace(Stream{New: []Decision{d}}, time.Now()); n.Refused != 1 {
		t.Errorf("origin cscli with origins [crowdsec]: %+v; want refused", n)
	}
	d.Origin = "crowdsec"
	if _, n := b.Replace(Stream{New: []Decision{d}}, time.Now()); n.Taken != 1 {
		t.Errorf("origin crowdsec: %+v; want taken", n)
	}
}

// TestBookWinnersRandom: after random merges and resyncs of decisions on
// a few targets, each target's winner is the best of the decisions held
// on it (by beats, over every held decision), and Winners lists exactly
// those.
func TestBookWinnersRandom(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	rng := rand.New(rand.NewPCG(1, 2))
	b := NewBook(Filter{Scopes: []string{ScopeIP}, Actions: map[string]Action{"ban": ActionBlock, "captcha": ActionThrottle}})
	random := func() Decision {
		return dec(rng.Int64N(40), "Ip", fmt.Sprintf("198.18.0.%d", rng.IntN(6)), []string{"ban", "captcha"}[rng.IntN(2)],
			fmt.Sprintf("%dm", 1+rng.IntN(5)))
	}
	for round := range 300 {
		var s Stream
		for range rng.IntN(8) {
			s.New = append(s.New, random())
		}
		for range rng.IntN(4) {
			s.Deleted = append(s.Deleted, Decision{ID: rng.Int64N(40)})
		}
		if round%25 == 0 {
			b.Replace(s, now)
		} else {
			b.Merge(s, now)
		}
		best := map[netip.Prefix]Entry{}
		for _, i := range b.byID {
			e := b.ents[i]
			if w, ok := best[e.Target]; !ok || beats(e, w) {
				best[e.Target] = e
			}
		}
		got := map[netip.Prefix]Entry{}
		for _, w := range b.Winners() {
			got[w.Target] = w
		}
		if len(got) != len(best) || len(b.Winners()) != len(best) {
			t.Fatalf("round %d: winners %v; want %v", round, got, best)
		}
		for tg, w := range best {
			if g, ok := b.Winner(tg); !ok || g != w || got[tg] != w {
				t.Fatalf("round %d: %s: winner %+v, listed %+v; want %+v", round, tg, g, got[tg], w)
			}
		}
	}
}
