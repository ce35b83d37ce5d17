package bpf_test

import (
	"net/netip"
	"testing"

	"github.com/bulwark-filter/bulwark/bpf/model"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// TestLimitsWithoutPerSourceState checks the limits that hold when
// per-source state does not: the aggregate of a source's /24 (IPv6 /48)
// and the ceiling on new sources. Each frame is also decided by the model.
func TestLimitsWithoutPerSourceState(t *testing.T) {
	u := func(src string) []byte { return testutil.UDP4(t, src, "198.18.1.1", 80, 20) }
	u6 := func(src string) []byte { return testutil.UDP6(t, src, "2001:2:0:1::1", 80, 20) }
	type step struct {
		frame  []byte
		at     uint64 // ns after the base
		reason maps.Reason
		rule   int
	}
	ok := maps.ReasonPassed
	rl := maps.ReasonRatelimit
	tests := []struct {
		name   string
		policy maps.Policy
		steps  []step
	}{
		{
			name:   "aggregate per /24",
			policy: maps.Policy{Aggregate: maps.Limit{PPS: 1, Burst: 3}},
			steps: []step{
				{u("198.18.5.1"), 0, ok, 0}, {u("198.18.5.2"), 0, ok, 0}, {u("198.18.5.3"), 0, ok, 0},
				{u("198.18.5.4"), 0, rl, maps.RuleAggregate}, // the /24's burst is spent
				{u("198.18.6.1"), 0, ok, 0},                  // another /24
				{u("198.18.5.4"), 1e9, ok, 0},                // a second refills one
				{u("198.18.5.5"), 1e9, rl, maps.RuleAggregate},
			},
		},
		{
			name:   "aggregate per /16 and IPv6 /56",
			policy: maps.Policy{Aggregate: maps.Limit{PPS: 1, Burst: 1}, AggregatePrefix4: 16, AggregatePrefix6: 56},
			steps: []step{
				{u("198.18.5.1"), 0, ok, 0}, {u("198.18.200.1"), 0, rl, maps.RuleAggregate},
				{u6("2001:2:0:1::1"), 0, ok, 0}, {u6("2001:2:0:ff::9"), 0, rl, maps.RuleAggregate},
				{u6("2001:2:0:100::1"), 0, ok, 0},
			},
		},
		{
			name: "aggregate scaled by class",
			policy: maps.Policy{Aggregate: maps.Limit{PPS: 1, Burst: 1},
				Classes: []maps.Class{{Name: "x2", CIDRs: []netip.Prefix{netip.MustParsePrefix("198.18.7.0/24")}, Multiplier: 2}}},
			steps: []step{{u("198.18.7.1"), 0, ok, 0}, {u("198.18.7.2"), 0, ok, 0}, {u("198.18.7.3"), 0, rl, maps.RuleAggregate}},
		},
		{
			name:   "new-source ceiling",
			policy: maps.Policy{NewSources: maps.Limit{PPS: 10, Burst: 2}},
			steps: []step{
				{u("198.18.8.1"), 0, ok, 0}, {u("198.18.8.2"), 0, ok, 0},
				{u("198.18.8.3"), 0, rl, maps.RuleNewSources}, // over the ceiling: not tracked
				{u("198.18.8.1"), 0, ok, 0},                   // tracked sources are served
				{u("198.18.8.2"), 0, ok, 0},
				{u("198.18.8.3"), 1e8, ok, 0}, // 100 ms: one new source may come in
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := testutil.Load(t, testutil.Setup{ReplayClock: true, Policy: tt.policy})
			m, err := model.New(tt.policy, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			before, _ := d.Maps.RuleCounters(256)
			const base = uint64(1e15)
			for i, s := range tt.steps {
				_, _, why, dec := runAt(t, d, s.frame, base+s.at)
				if why != s.reason || (why == rl && int(dec.Detail) != s.rule) {
					t.Errorf("step %d: %s rule %d, want %s rule %d", i, why, dec.Detail, s.reason, s.rule)
				}
				md := m.Decide(s.frame, base+s.at)
				if md.Reason != why || (why == rl && md.Rule != int(dec.Detail)) {
					t.Errorf("step %d: model says %s rule %d, kernel %s rule %d", i, md.Reason, md.Rule, why, dec.Detail)
				}
			}
			after, _ := d.Maps.RuleCounters(256)
			for _, id := range []int{maps.RuleAggregate, maps.RuleNewSources} {
				want := uint64(0)
				for _, s := range tt.steps {
					if s.reason == rl && s.rule == id {
						want++
					}
				}
				if got := after[id].Dropped - before[id].Dropped; got != want {
					t.Errorf("rule %s dropped %d, want %d", tt.policy.RuleName(id), got, want)
				}
			}
			if tt.policy.NewSources.PPS > 0 {
				if _, ok, _ := d.Maps.LookupSource(netip.MustParseAddr("198.18.8.3")); !ok {
					t.Errorf("198.18.8.3 not tracked after it was let in")
				}
				misc, _ := d.Maps.Misc()
				if misc.NewSourceLimited != 1 {
					t.Errorf("new-source limited %d, want 1", misc.NewSourceLimited)
				}
			}
		})
	}
}
