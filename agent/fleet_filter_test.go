package agent

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/fleet"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// TestFleetApplierLookups applies fleet verdicts over pinned maps that an
// earlier run wrote (a restart), where the applier looks up only the
// sources the verdict map may hold (maps.Set.MayHoldVerdicts), and checks
// the merge rule on each, with expected results from the rule: the
// earlier run's fleet verdicts in force (same action, expiry within a
// second) are neither written again nor audited; an expired one, or a
// weaker one, is replaced; a local verdict of the earlier run or written
// after the applier's first batch (the filter built) wins when it is
// stronger, or as strong and as long; one that is weaker, shorter or
// expired loses; a verdict the applier wrote itself, given again by
// another issuer with the same expiry, is in force already.
func TestFleetApplierLookups(t *testing.T) {
	load := testutil.PinnedLoader(t)
	earlier := load().Maps
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, 40, byte(i)}) }
	const (
		a1, a2, a3, a5, l0, n1 = 1, 2, 3, 5, 10, 20 // sources of the first batch
		l1, l2, l3, l4         = 11, 12, 13, 14     // local verdicts written after it
	)
	hour := uint64(time.Hour)
	mono0 := monotonicNow()
	for _, v := range []struct {
		i       int
		act     maps.VerdictAction
		expires uint64
		origin  maps.Origin
	}{
		{a1, maps.VerdictBlock, mono0 + hour, maps.OriginFleet},    // in force: kept as it is
		{a2, maps.VerdictBlock, mono0 + hour, maps.OriginFleet},    // in force: kept as it is
		{a3, maps.VerdictBlock, mono0, maps.OriginFleet},           // expired: written
		{a5, maps.VerdictThrottle, mono0 + hour, maps.OriginFleet}, // weaker than the fleet's block now: written
		{l0, maps.VerdictBlock, mono0 + 2*hour, maps.OriginScorer}, // stronger than the fleet's throttle: kept
	} {
		if err := earlier.PutVerdict(addr(v.i), v.act, v.expires, v.origin, 7); err != nil {
			t.Fatal(err)
		}
	}

	d := load() // the restart: a new Set over the pinned maps
	f, auditPath := fleetTestAgent(t, &config.Config{}, d)
	m := d.Maps
	block := func(i int, issuer string) fleet.Verdict {
		v := fleetVerdict(netip.PrefixFrom(addr(i), 32).String(), fleet.ActionBlock, time.Hour)
		v.Issuer = issuer
		return v
	}
	throttle := fleetVerdict(netip.PrefixFrom(addr(l0), 32).String(), fleet.ActionThrottle, time.Hour)
	if refused := f.Apply(put(block(a1, "edge-2"), block(a2, "edge-2"), block(a3, "edge-2"), block(a5, "edge-2"),
		throttle, block(n1, "edge-2"))); len(refused) != 0 {
		t.Fatalf("refused %v", refused)
	}

	mono := monotonicNow()
	for _, v := range []struct {
		i       int
		act     maps.VerdictAction
		expires uint64
	}{
		{l1, maps.VerdictBlock, mono + 2*hour},                 // as strong, longer: kept
		{l2, maps.VerdictThrottle, mono + 2*hour},              // weaker: replaced
		{l3, maps.VerdictBlock, mono},                          // expired: replaced
		{l4, maps.VerdictBlock, mono + uint64(10*time.Minute)}, // as strong, shorter: replaced
	} {
		if err := m.PutVerdict(addr(v.i), v.act, v.expires, maps.OriginScorer, 7); err != nil {
			t.Fatal(err)
		}
	}
	if refused := f.Apply(put(block(l1, "edge-2"), block(l2, "edge-2"), block(l3, "edge-2"), block(l4, "edge-2"),
		block(n1, "edge-3"), block(a1, "edge-3"))); len(refused) != 0 {
		t.Fatalf("refused %v", refused)
	}

	for _, w := range []struct {
		i       int
		act     maps.VerdictAction
		origin  maps.Origin
		expires uint64 // the exact expiry an entry kept holds; 0: written by the fleet (an hour from its write)
	}{
		{a1, maps.VerdictBlock, maps.OriginFleet, mono0 + hour},
		{a2, maps.VerdictBlock, maps.OriginFleet, mono0 + hour},
		{a3, maps.VerdictBlock, maps.OriginFleet, 0},
		{a5, maps.VerdictBlock, maps.OriginFleet, 0},
		{l0, maps.VerdictBlock, maps.OriginScorer, mono0 + 2*hour},
		{n1, maps.VerdictBlock, maps.OriginFleet, 0},
		{l1, maps.VerdictBlock, maps.OriginScorer, mono + 2*hour},
		{l2, maps.VerdictBlock, maps.OriginFleet, 0},
		{l3, maps.VerdictBlock, maps.OriginFleet, 0},
		{l4, maps.VerdictBlock, maps.OriginFleet, 0},
	} {
		got, ok, err := m.Verdict(addr(w.i))
		if err != nil || !ok {
			t.Fatalf("verdict on %s: held %v (%v), want one", addr(w.i), ok, err)
		}
		switch {
		case got.Action != w.act || got.Origin != w.origin:
			t.Errorf("verdict on %s: %v of %v, want %v of %v", addr(w.i), got.Action, got.Origin, w.act, w.origin)
		case w.expires != 0 && (got.ExpiresNS != w.expires || got.Score != 7):
			t.Errorf("verdict on %s: expires %d score %d, want kept as it was: %d, 7", addr(w.i), got.ExpiresNS, got.Score, w.expires)
		case w.expires == 0 && (got.Score != 0 || !near(got.ExpiresNS, mono0+hour) && !near(got.ExpiresNS, mono+hour)):
			t.Errorf("verdict on %s: expires %d score %d, want the fleet's (an hour from its write, score 0)", addr(w.i), got.ExpiresNS, got.Score)
		}
	}

	var audited []string
	for _, r := range readAudit(t, auditPath) {
		if strings.HasPrefix(r.What, "fleet.") && r.Result == "ok" {
			audited = append(audited, r.Target...)
		}
	}
	slices.Sort(audited)
	var want []string
	for _, i := range []int{a3, a5, n1, l2, l3, l4} {
		want = append(want, netip.PrefixFrom(addr(i), 32).String())
	}
	slices.Sort(want)
	if !slices.Equal(audited, want) {
		t.Errorf("fleet verdicts audited as applied: %v, want %v", audited, want)
	}
}
