package agent

import (
	"net/netip"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/agent/fleet"
)

// The explain component keeps what the aggregator decided and the applier
// put in force: the narrowest target holding the address, until expiry.
func TestFleetFindings(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	agg := func(target string, expires time.Time) fleet.Change {
		p := netip.MustParsePrefix(target)
		return fleet.Change{Target: p, Winner: &fleet.Verdict{Target: p, Action: fleet.ActionBlock, Issuer: "aggregate",
			Origin: "aggregate", Reason: "fleet: seen on 4 hosts, 3 ports each (12 distinct) in 60 s", IssuedAt: now, Expires: expires}}
	}
	var r fleetFindings
	if r.explain(netip.MustParseAddr("198.18.0.1"), now) != nil {
		t.Fatal("empty: a finding")
	}
	r.note(agg("198.18.0.0/24", now.Add(time.Hour)), true)
	r.note(agg("198.18.0.1/32", now.Add(time.Minute)), true)
	r.note(agg("198.18.1.1/32", now.Add(time.Hour)), false) // refused here
	scorer := agg("198.18.2.2/32", now.Add(time.Hour))
	scorer.Winner.Origin = "scorer"
	r.note(scorer, true)

	if f := r.explain(netip.MustParseAddr("198.18.0.1"), now); f == nil || f.Target != "198.18.0.1/32" || f.Reason != "fleet: seen on 4 hosts, 3 ports each (12 distinct) in 60 s" {
		t.Errorf("198.18.0.1: %+v", f)
	}
	if f := r.explain(netip.MustParseAddr("198.18.0.1"), now.Add(2*time.Minute)); f == nil || f.Target != "198.18.0.0/24" {
		t.Errorf("198.18.0.1 after its /32 expired: %+v, want the /24", f)
	}
	if f := r.explain(netip.MustParseAddr("::ffff:198.18.0.9"), now); f == nil || f.Target != "198.18.0.0/24" {
		t.Errorf("mapped 198.18.0.9: %+v", f)
	}
	for _, a := range []string{"198.18.1.1", "198.18.2.2", "2001:2::1"} {
		if f := r.explain(netip.MustParseAddr(a), now); f != nil {
			t.Errorf("%s: %+v, want none", a, f)
		}
	}
	r.note(fleet.Change{Target: netip.MustParsePrefix("198.18.0.0/24"), Remove: true}, false)
	if f := r.explain(netip.MustParseAddr("198.18.0.9"), now); f != nil {
		t.Errorf("after the /24's removal: %+v", f)
	}
}
