package fleet

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func TestKeyRoundTrip(t *testing.T) {
	for _, tc := range []struct{ issuer, target, key string }{
		{"edge-1", "198.18.0.7/32", "edge-1.4-c6120007-32"},
		{"a_b", "198.18.4.0/22", "a_b.4-c6120400-22"},
		{"n", "2001:2::1/128", "n.6-20010002000000000000000000000001-128"},
		{"n", "2001:2::/48", "n.6-20010002000000000000000000000000-48"},
	} {
		if got := Key(tc.issuer, pfx(tc.target)); got != tc.key {
			t.Errorf("Key(%s, %s) = %s, want %s", tc.issuer, tc.target, got, tc.key)
		}
		issuer, target, err := ParseKey(tc.key)
		if err != nil || issuer != tc.issuer || target != pfx(tc.target) {
			t.Errorf("ParseKey(%s) = %s %s %v", tc.key, issuer, target, err)
		}
	}
	for _, bad := range []string{"", "edge", "e.4-c6120007", "e.4-c61200-32", "e.5-c6120007-32", "e.4-C6120007-32",
		"e.4-c6120007-33", "e.4-c6120007-032", "e.4-c6120007-24", "é.4-c6120007-32", "e.4-c6120007-x",
		strings.Repeat("x", 65) + ".4-c6120007-32", "e.6-2001-128"} {
		if _, _, err := ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q): no error", bad)
		}
	}
}

func verdict(issuer, target string, a Action, issued, expires time.Duration) Verdict {
	return Verdict{Target: pfx(target), Action: a, Issuer: issuer, Origin: "cli",
		IssuedAt: t0.Add(issued), Expires: t0.Add(expires)}
}

func TestDecodeRefuses(t *testing.T) {
	good := verdict("a", "198.18.0.1/32", ActionBlock, 0, time.Hour)
	good.Reason, good.Score = "flood", 700
	data, err := encode(good)
	if err != nil {
		t.Fatal(err)
	}
	// The layout by hand: version, action, family, bits, address, score,
	// issued_at, expires, issuer, origin, reason.
	want := []byte{1, 2, 4, 32, 198, 18, 0, 1, 0x02, 0xbc}
	want = binary.BigEndian.AppendUint64(want, uint64(t0.UnixNano()))
	want = binary.BigEndian.AppendUint64(want, uint64(t0.Add(time.Hour).UnixNano()))
	want = append(want, 1, 'a', 3, 'c', 'l', 'i', 0, 5, 'f', 'l', 'o', 'o', 'd')
	if !bytes.Equal(data, want) {
		t.Fatalf("encode(v) = % x\nwant        % x", data, want)
	}
	key := Key("a", good.Target)
	if v, _, err := decode(key, data, 24*time.Hour); err != nil || !sameVerdict(v, good) {
		t.Fatalf("decode(encode(v)) = %+v, %v", v, err)
	}
	legacy, err := json.Marshal(good) // what the first releases wrote
	if err != nil {
		t.Fatal(err)
	}
	if v, _, err := decode(key, legacy, 24*time.Hour); err != nil || !sameVerdict(v, good) {
		t.Fatalf("decode(legacy JSON) = %+v, %v", v, err)
	}
	long := good
	long.Reason = strings.Repeat("r", MaxReasonLen+1)
	longJSON := []byte(strings.Replace(string(legacy), `"flood"`, `"`+long.Reason+`"`, 1))
	longBin := append(slices.Clone(data[:len(data)-7]), byte(len(long.Reason)>>8), byte(len(long.Reason)))
	longBin = append(longBin, long.Reason...)
	patch := func(i int, b byte) []byte { d := slices.Clone(data); d[i] = b; return d }
	for name, tc := range map[string]struct {
		key    string
		data   []byte
		reason string
	}{
		"garbage":           {key, []byte("{not json"), RefusedInvalid},
		"oversized":         {key, []byte(`{"x":"` + strings.Repeat("a", MaxValueSize) + `"}`), RefusedInvalid},
		"other issuer":      {Key("b", good.Target), data, RefusedInvalid},
		"other target":      {Key("a", pfx("198.18.0.2/32")), data, RefusedInvalid},
		"bad key":           {"a.nope", data, RefusedInvalid},
		"long reason":       {key, longJSON, RefusedInvalid},
		"long reason (bin)": {key, longBin, RefusedInvalid},
		"bad action":        {key, []byte(strings.Replace(string(legacy), `"block"`, `"nuke"`, 1)), RefusedInvalid},
		"bad action code":   {key, patch(1, 9), RefusedInvalid},
		"version 2":         {key, patch(0, 2), RefusedInvalid},
		"family 5":          {key, patch(2, 5), RefusedInvalid},
		"bits 33":           {key, patch(3, 33), RefusedInvalid},
		"truncated":         {key, data[:len(data)-1], RefusedInvalid},
		"trailing byte":     {key, append(slices.Clone(data), 0), RefusedInvalid},
		"beyond max_ttl":    {key, data, RefusedTTL},
		"empty":             {key, nil, RefusedInvalid},
	} {
		maxTTL := 24 * time.Hour
		if name == "beyond max_ttl" {
			maxTTL = time.Minute // life 1h > 1m + 1m slack
		}
		if _, reason, err := decode(tc.key, tc.data, maxTTL); err == nil || reason != tc.reason {
			t.Errorf("%s: reason %q, error %v; want %q", name, reason, err, tc.reason)
		}
	}
}

// FuzzDecodeValue: no input panics; what decodes and passes the checks
// encodes back to the same bytes (binary) and decodes to the same verdict.
func FuzzDecodeValue(f *testing.F) {
	for _, v := range []Verdict{
		verdict("a", "198.18.0.1/32", ActionBlock, 0, time.Hour),
		verdict("edge-1", "2001:2::/48", ActionRevoke, time.Second, time.Hour),
	} {
		b, err := encode(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(Key(v.Issuer, v.Target), b)
		j, _ := json.Marshal(v)
		f.Add(Key(v.Issuer, v.Target), j)
	}
	f.Add("a.4-c6120001-32", []byte{1, 2, 4, 32})
	f.Fuzz(func(t *testing.T, key string, data []byte) {
		v, reason, err := decode(key, data, 24*time.Hour)
		if err != nil {
			if reason == "" {
				t.Fatalf("error %v without a refusal reason", err)
			}
			return
		}
		b, err := encode(v)
		if err != nil {
			t.Fatalf("decoded %+v does not encode: %v", v, err)
		}
		if len(data) > 0 && data[0] == valueV1 && !bytes.Equal(b, data) {
			t.Fatalf("re-encoded % x, read % x", b, data)
		}
		if w, _, err := decode(key, b, 24*time.Hour); err != nil || !sameVerdict(v, w) {
			t.Fatalf("round trip %+v -> %+v, %v", v, w, err)
		}
	})
}

func TestWinner(t *testing.T) {
	e := func(v Verdict, rev uint64) *entry { return &entry{v: v, rev: rev, rateOK: true} }
	for _, tc := range []struct {
		name    string
		entries []*entry
		want    string // issuer, "" for none
		action  Action
	}{
		{"block beats a longer throttle", []*entry{
			e(verdict("a", "198.18.0.1/32", ActionThrottle, 0, 2*time.Hour), 1),
			e(verdict("b", "198.18.0.1/32", ActionBlock, 0, time.Hour), 2)}, "b", ActionBlock},
		{"later expiry wins among blocks", []*entry{
			e(verdict("a", "198.18.0.1/32", ActionBlock, 0, 2*time.Hour), 1),
			e(verdict("b", "198.18.0.1/32", ActionBlock, 0, time.Hour), 2)}, "a", ActionBlock},
		{"smallest issuer on a tie", []*entry{
			e(verdict("b", "198.18.0.1/32", ActionBlock, 0, time.Hour), 1),
			e(verdict("a", "198.18.0.1/32", ActionBlock, time.Second, time.Hour), 2)}, "a", ActionBlock},
		{"revoke cancels what was issued before it", []*entry{
			e(verdict("a", "198.18.0.1/32", ActionBlock, 0, time.Hour), 1),
			e(verdict("c", "198.18.0.1/32", ActionRevoke, time.Minute, time.Hour), 2)}, "", ""},
		{"revoke spares what was issued after it", []*entry{
			e(verdict("a", "198.18.0.1/32", ActionBlock, 0, time.Hour), 1),
			e(verdict("b", "198.18.0.1/32", ActionThrottle, 2*time.Minute, time.Hour), 3),
			e(verdict("c", "198.18.0.1/32", ActionRevoke, time.Minute, time.Hour), 2)}, "b", ActionThrottle},
		{"over the rate is ignored", []*entry{
			{v: verdict("a", "198.18.0.1/32", ActionBlock, 0, time.Hour), rev: 1},
			e(verdict("b", "198.18.0.1/32", ActionThrottle, 0, time.Hour), 2)}, "b", ActionThrottle},
	} {
		w, _, ok := winner(tc.entries)
		if ok != (tc.want != "") || ok && (w.Issuer != tc.want || w.Action != tc.action) {
			t.Errorf("%s: winner %s %s (%v), want %q %s", tc.name, w.Issuer, w.Action, ok, tc.want, tc.action)
		}
	}
}

// TestRateScan: rate 2/s, burst 3; 5 entries at t0 (3 pass, 2 refused:
// tokens 3 -> 0), one at t0+1s (2 tokens back: passes, 1 left), two at
// t0+1.25s (+0.5: 1.5 -> the first passes with 0.5 left, the second is
// refused).
func TestRateScan(t *testing.T) {
	offs := []time.Duration{0, 0, 0, 0, 0, time.Second, 1250 * time.Millisecond, 1250 * time.Millisecond}
	want := []bool{true, true, true, false, false, true, true, false}
	var list []*entry
	for i, d := range offs {
		list = append(list, &entry{rev: uint64(i + 1), ts: t0.Add(d).UnixNano()})
	}
	changed := 0
	rateScan(list, 0, 2, 3, func(*entry) { changed++ })
	for i, e := range list {
		if e.rateOK != want[i] {
			t.Errorf("entry %d: rateOK %v, want %v", i, e.rateOK, want[i])
		}
	}
	if changed != 5 { // five turned from the zero value false to true
		t.Errorf("%d changed, want 5", changed)
	}
	// Dropping entry 0 and scanning again from it: the refused entry 3
	// passes now (3 tokens for entries 1..3), entry 4 is still refused.
	list = list[1:]
	rateScan(list, 0, 2, 3, func(*entry) {})
	if !list[2].rateOK || list[3].rateOK {
		t.Errorf("after the removal: rateOK %v %v, want true false", list[2].rateOK, list[3].rateOK)
	}
}

func TestCapActive(t *testing.T) {
	first := map[netip.Prefix]winning{pfx("198.18.0.3/32"): {first: 1}, pfx("198.18.0.1/32"): {first: 5},
		pfx("198.18.0.2/32"): {first: 5}, pfx("198.18.0.4/32"): {first: ^uint64(0)}}
	over := capActive(first, 2)
	if len(over) != 2 || over[0] != pfx("198.18.0.2/32") || over[1] != pfx("198.18.0.4/32") {
		t.Fatalf("over the cap of 2: %v, want 198.18.0.2/32 198.18.0.4/32", over)
	}
	if over := capActive(first, 4); over != nil {
		t.Fatalf("under the cap: %v", over)
	}
}

// TestDigest checks the digest against SHA-256 of the lines written out by
// hand, and that an expired winner is left out.
func TestDigest(t *testing.T) {
	ptr := func(v Verdict) *Verdict { return &v }
	set := map[netip.Prefix]*Verdict{
		pfx("198.18.0.2/32"): ptr(verdict("a", "198.18.0.2/32", ActionBlock, 0, 2*time.Second)),
		pfx("198.18.0.1/32"): ptr(verdict("b", "198.18.0.1/32", ActionThrottle, 0, time.Second)),
		pfx("2001:2::/48"):   ptr(verdict("b", "2001:2::/48", ActionBlock, 0, time.Second)),
	}
	lines := "198.18.0.1/32 throttle 1767323046000000000\n" +
		"198.18.0.2/32 block 1767323047000000000\n" +
		"2001:2::/48 block 1767323046000000000\n"
	sum := sha256.Sum256([]byte(lines))
	if got := Digest(maps.All(set), t0); got != hex.EncodeToString(sum[:]) {
		t.Errorf("digest at t0: %s, want %s", got, hex.EncodeToString(sum[:]))
	}
	sum = sha256.Sum256([]byte("198.18.0.2/32 block 1767323047000000000\n"))
	if got := Digest(maps.All(set), t0.Add(time.Second)); got != hex.EncodeToString(sum[:]) {
		t.Errorf("digest at t0+1s: %s, want %s", got, hex.EncodeToString(sum[:]))
	}
}

// statePut returns a function that reads v into s as the watch would, at
// revision rev.
func statePut(t *testing.T, s *state) func(v Verdict, rev uint64) {
	return func(v Verdict, rev uint64) {
		data, err := encode(v)
		if err != nil {
			t.Fatal(err)
		}
		s.put(Key(v.Issuer, v.Target), data, rev, t0)
	}
}

// TestStateMerge drives the state as a watch would: two issuers, a revoke,
// an invalid value, expiry, and the active cap.
func TestStateMerge(t *testing.T) {
	s := newState(limits{node: "me", maxTTL: 24 * time.Hour, issuerRate: 1000, issuerBurst: 1000, maxActive: 2})
	put := statePut(t, s)
	put(verdict("a", "198.18.0.1/32", ActionThrottle, 0, time.Hour), 1)
	put(verdict("b", "198.18.0.1/32", ActionBlock, 0, time.Minute), 2)
	put(verdict("a", "198.18.0.2/32", ActionBlock, 0, time.Hour), 3)
	put(verdict("a", "198.18.0.3/32", ActionBlock, 0, time.Hour), 4) // over max_active 2
	s.process()
	changes := s.takeChanges()
	if len(changes) != 2 || s.active != 2 || s.activeOn(pfx("198.18.0.1/32")).Issuer != "b" {
		t.Fatalf("changes %v, active %v", changes, activePtrs(s))
	}
	if r := s.takeRefusals(); len(r) != 1 || r[0].Reason != RefusedActiveCap || r[0].Verdict.Target != pfx("198.18.0.3/32") {
		t.Fatalf("refusals %v, want the active cap on 198.18.0.3", r)
	}
	// b's block expires: a's throttle takes over on .1.
	s.prune(t0.Add(2 * time.Minute))
	s.process()
	if v := s.activeOn(pfx("198.18.0.1/32")); v.Action != ActionThrottle || v.Issuer != "a" {
		t.Fatalf("after b's block expired: %+v", v)
	}
	// A revoke by c of .2 issued later: .2 goes, .3 comes in under the cap.
	put(verdict("c", "198.18.0.2/32", ActionRevoke, time.Minute, time.Hour), 5)
	s.process()
	if s.activeOn(pfx("198.18.0.2/32")) != nil || s.activeOn(pfx("198.18.0.3/32")).Issuer != "a" {
		t.Fatalf("after the revoke: %v", activePtrs(s))
	}
	// An invalid value on a's key of .3 removes the old one and is refused.
	s.put(Key("a", pfx("198.18.0.3/32")), []byte("garbage"), 6, t0)
	s.process()
	if s.activeOn(pfx("198.18.0.3/32")) != nil {
		t.Fatal("an invalid value left the old verdict in force")
	}
	if r := s.takeRefusals(); len(r) != 1 || r[0].Reason != RefusedInvalid {
		t.Fatalf("refusals %v, want one invalid", r)
	}
	if s.lastRev != 6 {
		t.Fatalf("last revision %d, want 6", s.lastRev)
	}
}

// TestStateResync reads the bucket again as a resync does: a key read
// again stays (with its new value), a key not read again is gone at the
// end of the resync, a key read as deleted is gone, and the entries read
// in the resync come from its slab; a resync given up removes nothing.
func TestStateResync(t *testing.T) {
	s := newState(limits{node: "me", maxTTL: 24 * time.Hour, issuerRate: 1000, issuerBurst: 1000, maxActive: 100})
	put := statePut(t, s)
	for i, a := range []string{"198.18.0.1/32", "198.18.0.2/32", "198.18.0.3/32"} {
		put(verdict("a", a, ActionBlock, 0, time.Hour), uint64(i+1))
	}
	s.process()
	s.beginResync()
	put(verdict("a", "198.18.0.1/32", ActionThrottle, 0, time.Hour), 10) // read again, changed
	s.del(Key("a", pfx("198.18.0.2/32")), 11)                            // read as deleted
	put(verdict("b", "198.18.0.4/32", ActionBlock, 0, time.Hour), 12)    // new
	// .3 is not read again: it is gone from the bucket.
	if got := len(s.slab); got != 2 {
		t.Fatalf("%d entries in the resync's slab, want 2", got)
	}
	s.endResync()
	s.process()
	want := map[netip.Prefix]Action{pfx("198.18.0.1/32"): ActionThrottle, pfx("198.18.0.4/32"): ActionBlock}
	if s.active != len(want) || s.entries != len(want) {
		t.Fatalf("after the resync: active %v, %d entries; want %v", activePtrs(s), s.entries, want)
	}
	for p, a := range want {
		if v := s.activeOn(p); v == nil || v.Action != a {
			t.Fatalf("after the resync: %v is %+v, want %s", p, v, a)
		}
	}
	if s.slab != nil {
		t.Fatal("the slab outlived the resync")
	}
	// Given up: nothing read before it is removed.
	s.beginResync()
	put(verdict("c", "198.18.0.5/32", ActionBlock, 0, time.Hour), 13)
	s.dropResync()
	s.process()
	if s.active != 3 || s.slab != nil {
		t.Fatalf("after a resync given up: active %v, slab %v", activePtrs(s), s.slab != nil)
	}
}

// TestStateIncremental drives the state with random puts, deletes, own
// verdicts and expiry over few targets, with a small active cap, and after
// each batch checks the merged set against one computed from scratch from
// the live entries with winner and capActive; the changes, taken after a
// random number of batches (coalesced), leave an Applier holding it.
func TestStateIncremental(t *testing.T) {
	const maxActive = 5
	s := newState(limits{node: "me", maxTTL: 24 * time.Hour, issuerRate: 1000, issuerBurst: 1000, maxActive: maxActive})
	put := statePut(t, s)
	r := rand.New(rand.NewPCG(1, 2))
	actions := []Action{ActionThrottle, ActionBlock, ActionRevoke}
	issuers := []string{"a", "b", "c", "me"}
	now, rev := t0, uint64(0)
	held := map[netip.Prefix]Verdict{}
	for batch := range 400 {
		for range 1 + r.IntN(8) {
			tgt := fmt.Sprintf("198.18.0.%d/32", r.IntN(10))
			v := verdict(issuers[r.IntN(len(issuers))], tgt, actions[r.IntN(3)], now.Sub(t0), now.Sub(t0)+time.Duration(1+r.IntN(30))*time.Second)
			rev++
			switch r.IntN(5) {
			case 0:
				s.del(Key(v.Issuer, v.Target), rev)
			case 1:
				v.Issuer = "me"
				s.publish(v)
			default:
				put(v, rev)
			}
		}
		if r.IntN(4) == 0 {
			now = now.Add(time.Duration(r.IntN(10)) * time.Second)
			s.prune(now)
		}
		s.process()
		if r.IntN(3) == 0 { // the apply loop takes what was merged, coalesced per target
			applied(held, s.takeChanges())
			if d := sameSet(held, activeSet(s)); d != "" {
				t.Fatalf("batch %d: the Applier does not hold the merged set: %s", batch, d)
			}
		}
		want := fromScratch(s, maxActive)
		if got := activePtrs(s); len(want) != len(got) || s.active != len(got) {
			t.Fatalf("batch %d: %d active (counted %d), want %d: %v vs %v", batch, len(got), s.active, len(want), got, want)
		}
		for p, w := range want {
			if v := s.activeOn(p); v != w {
				t.Fatalf("batch %d: %v is %+v, want %+v", batch, p, v, w)
			}
		}
	}
}

// fromScratch is the merged set within the cap of s's live entries and own
// verdicts, computed without the state's incremental bookkeeping.
func fromScratch(s *state, maxActive int) map[netip.Prefix]*Verdict {
	byTarget := map[netip.Prefix][]*entry{}
	n := 0
	for _, list := range s.issuers {
		for _, e := range list {
			if !e.live || s.targets[e.v.Target] != e.t || e.t.entryOf(e.v.Issuer) != e {
				panic(fmt.Sprintf("the entry of %s on %v is not on its target", e.v.Issuer, e.v.Target))
			}
			byTarget[e.v.Target] = append(byTarget[e.v.Target], e)
			n++
		}
	}
	if n != s.entries {
		panic(fmt.Sprintf("%d entries by issuer, %d counted", n, s.entries))
	}
	for p, o := range s.own {
		byTarget[p] = append(slices.DeleteFunc(byTarget[p], func(e *entry) bool { return e.v.Issuer == o.v.Issuer }), o)
	}
	all := map[netip.Prefix]winning{}
	for p, es := range byTarget {
		if w, first, ok := winner(es); ok {
			all[p] = winning{w, first}
		}
	}
	over := capActive(all, maxActive)
	set := map[netip.Prefix]*Verdict{}
	for p, w := range all {
		if !slices.Contains(over, p) {
			set[p] = w.v
		}
	}
	return set
}

// activePtrs is the state's active set as a map.
func activePtrs(s *state) map[netip.Prefix]*Verdict {
	return maps.Collect(s.activeSet())
}
