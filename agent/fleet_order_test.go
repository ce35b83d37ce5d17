package agent

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/desired"
	"github.com/bulwark-filter/bulwark/agent/fleet"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/natstest"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// nopApplier is the Applier of a fleet client whose kernel is not looked
// at.
type nopApplier struct{}

func (nopApplier) Apply([]fleet.Change) map[netip.Prefix]string { return nil }

// TestFleetPublishApplyOrder: an operator's or the scorer's verdict
// published here is written to the kernel as the merged winner, in order
// with the fleet client's own applies. With another host's block on a
// source in force here (fleet origin), this host's weaker throttle on it,
// published with a later expiry, leaves the block in the kernel, at once
// and after the throttle is read back from the bucket; this host's block on
// a source where the other host's throttle is in force replaces it at once.
// (The agent used to write its own verdict as is: the throttle replaced
// the block here and stayed, the client's merged set unchanged.)
func TestFleetPublishApplyOrder(t *testing.T) {
	d := testutil.Load(t, testutil.Setup{})
	f, _ := fleetTestAgent(t, &config.Config{}, d)
	servers := natstest.Cluster(t, 1, natstest.Options{})
	options := func(node string) fleet.Options {
		o := fleet.DefaultOptions()
		o.Servers, o.Node, o.Replicas, o.MaxTTL = servers.URLs(), node, 1, 4*time.Hour
		return o
	}
	run := func(c *fleet.Client) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := c.Run(ctx); err != nil {
				t.Errorf("Run: %v", err)
			}
		}()
		t.Cleanup(func() { cancel(); <-done })
	}
	other, err := fleet.New(options("edge-2"), nopApplier{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	run(other)
	settings := &desired.Fleet{Options: options("edge-1"), PublishCLI: true}
	link, err := newFleetLink(settings, f, f.log, f.audit)
	if err != nil {
		t.Fatal(err)
	}
	run(link.client.(*fleet.Client))

	x, y := netip.MustParsePrefix("198.18.9.1/32"), netip.MustParsePrefix("198.18.9.2/32")
	now := time.Now()
	for _, v := range []fleet.Verdict{
		{Target: x, Action: fleet.ActionBlock, Origin: "cli", IssuedAt: now, Expires: now.Add(time.Hour)},
		{Target: y, Action: fleet.ActionThrottle, Origin: "cli", IssuedAt: now, Expires: now.Add(time.Hour)},
	} {
		if err := other.Publish(v); err != nil {
			t.Fatal(err)
		}
	}
	kernel := func(p netip.Prefix) maps.VerdictEntry {
		v, ok, err := d.Maps.Verdict(p.Addr())
		if err != nil || !ok {
			return maps.VerdictEntry{}
		}
		return v
	}
	deadline := time.Now().Add(3 * time.Minute) // against a hung test, not a speed bound
	for kernel(x).Action != maps.VerdictBlock || kernel(y).Action != maps.VerdictThrottle {
		if time.Now().After(deadline) {
			t.Fatalf("edge-2's verdicts not applied here: %v %v", kernel(x), kernel(y))
		}
		time.Sleep(20 * time.Millisecond)
	}

	if why, err := link.publish(x, fleet.ActionThrottle, "cli", "weaker", 0, time.Now(), 2*time.Hour); err != nil || why != "" {
		t.Fatalf("publish the throttle: %q %v", why, err)
	}
	if v := kernel(x); v.Action != maps.VerdictBlock || v.Origin != maps.OriginFleet {
		t.Errorf("%v after this host's throttle: %s (%s), want edge-2's block kept", x, v.Action, v.Origin)
	}
	if why, err := link.publish(y, fleet.ActionBlock, "cli", "stronger", 0, time.Now(), time.Hour); err != nil || why != "" {
		t.Fatalf("publish the block: %q %v", why, err)
	}
	if v := kernel(y); v.Action != maps.VerdictBlock || v.Origin != maps.OriginFleet {
		t.Errorf("%v after this host's block: %s (%s), want the block at once", y, v.Action, v.Origin)
	}
	// Both read back from the bucket: the same.
	deadline = time.Now().Add(3 * time.Minute)
	for st := link.client.Status(); st.Buffered != 0 || st.Lag != 0 || st.AppliedRevision < 4; st = link.client.Status() {
		if time.Now().After(deadline) {
			t.Fatalf("this host's verdicts not read back: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if iss, _ := link.client.Issuer(x); iss != "edge-2" || kernel(x).Action != maps.VerdictBlock {
		t.Errorf("%v read back: issuer %s, kernel %s, want edge-2's block", x, iss, kernel(x).Action)
	}
	if iss, _ := link.client.Issuer(y); iss != "edge-1" || kernel(y).Action != maps.VerdictBlock {
		t.Errorf("%v read back: issuer %s, kernel %s, want edge-1's block", y, iss, kernel(y).Action)
	}
}
