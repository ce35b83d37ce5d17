package agent_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/agent/api"
	"github.com/bulwark-filter/bulwark/test/agenttest"
	"github.com/bulwark-filter/bulwark/test/natstest"
)

// fleetBlock is the fleet block of an agent named node that connects to
// server; max_active fits the test's small verdict map.
func fleetBlock(node, server string) string {
	return fmt.Sprintf("\nfleet {\n  servers    = [%q]\n  node       = %q\n  replicas   = 1\n  max_active = 1000\n}\n", server, node)
}

// fleetVerdict returns the verdict on source in e's `verdicts list`.
func fleetVerdict(e *env, source string) (api.Verdict, bool) {
	var vs []api.Verdict
	if err := json.Unmarshal([]byte(e.MustCLI("verdicts", "list", "--json")), &vs); err != nil {
		e.T.Fatal(err)
	}
	for _, v := range vs {
		if v.Source == source {
			return v, true
		}
	}
	return api.Verdict{}, false
}

// fleetStatus is e's `fleet status --json`.
func fleetStatus(e *env) api.FleetStatus {
	var st api.FleetStatus
	if err := json.Unmarshal([]byte(e.MustCLI("fleet", "status", "--json")), &st); err != nil {
		e.T.Fatal(err)
	}
	return st
}

// TestFleetOperatorBlock runs two agents, each on its own testbed, that
// share verdicts through a real nats-server (in agent A's namespace, which
// a veth links to B's): `block add --fleet` on A drops the source's frames
// at B's XDP, and at A's at once; B's allow list wins over the fleet's
// block (refused and audited there); `verdicts del --fleet` on A lets the
// source through B again; both agents report being in sync with the bucket.
func TestFleetOperatorBlock(t *testing.T) {
	t.Parallel()
	a, b := newEnv(t), newEnv(t)
	// A link between the two server namespaces, for the fleet only (XDP is
	// on the testbeds' own veths).
	linkA, linkB := "bwkf"+agenttest.RandHex(4), "bwkg"+agenttest.RandHex(4)
	for _, args := range [][]string{
		{"-n", a.TB.Server, "link", "add", linkA, "type", "veth", "peer", "name", linkB, "netns", b.TB.Server},
		{"-n", a.TB.Server, "addr", "add", "198.19.0.1/30", "dev", linkA},
		{"-n", b.TB.Server, "addr", "add", "198.19.0.2/30", "dev", linkB},
		{"-n", a.TB.Server, "link", "set", linkA, "up"},
		{"-n", b.TB.Server, "link", "set", linkB, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	nats := natstest.Cluster(t, 1, natstest.Options{Netns: []string{a.TB.Server}, Hosts: []string{"0.0.0.0"}})
	u, err := url.Parse(nats.URL(0))
	if err != nil {
		t.Fatal(err)
	}
	port := u.Port()

	const (
		source  = "198.18.1.66" // blocked by the fleet, then revoked
		allowed = "198.18.1.77" // blocked by the fleet, allowed at B
		frames  = 20
	)
	a.WriteConfig("", agenttest.Config{Extra: fleetBlock("edge-a", "nats://127.0.0.1:"+port)})
	b.WriteConfig("", agenttest.Config{Allow: []string{allowed + "/32"}, Extra: fleetBlock("edge-b", "nats://198.19.0.1:"+port)})
	agentA, agentB := a.Start(), b.Start()
	for _, e := range []*env{a, b} {
		agenttest.WaitFor(t, time.Minute, "the agent connects to the fleet", func() bool { return fleetStatus(e).Connected })
	}
	for _, src := range []string{source, allowed} {
		if got := b.Send(agenttest.Addr(src), frames); got != frames {
			t.Fatalf("before any fleet verdict B received %d of %d frames from %s", got, frames, src)
		}
	}

	a.MustCLI("block", "add", "--fleet", source, allowed, "--ttl", "1h", "--reason", "fleet e2e")
	// A enforces its own verdict at once, not waiting for the bus.
	if got := a.Send(agenttest.Addr(source), frames); got != 0 {
		t.Errorf("A received %d of %d frames from %s after block add --fleet", got, frames, source)
	}
	agenttest.WaitFor(t, time.Minute, "the fleet verdict reaches B", func() bool {
		_, ok := fleetVerdict(b, source+"/32")
		return ok
	})
	v, _ := fleetVerdict(b, source+"/32")
	if v.Action != "block" || v.Origin != "fleet:edge-a" || v.ExpiresIn <= 3000 || v.ExpiresIn > 3600 {
		t.Errorf("B's verdict on %s: %+v, want a block of origin fleet:edge-a expiring within the hour", source, v)
	}
	if got := b.Send(agenttest.Addr(source), frames); got != 0 {
		t.Errorf("B received %d of %d frames from %s under the fleet's block", got, frames, source)
	}
	// B allows the other source: its frames pass, and the fleet verdict on
	// it was refused there and audited.
	if got := b.Send(agenttest.Addr(allowed), frames); got != frames {
		t.Errorf("B received %d of %d frames from its allow-listed %s", got, frames, allowed)
	}
	if _, ok := fleetVerdict(b, allowed+"/32"); ok {
		t.Errorf("B holds a verdict on its allow-listed %s", allowed)
	}
	agenttest.WaitFor(t, time.Minute, "B audits the refusal", func() bool {
		for _, r := range b.auditLog() {
			if r.Who == "fleet:edge-a" && r.Result == "refused" && len(r.Target) == 1 && r.Target[0] == allowed+"/32" && r.Detail == "local_allow" {
				return true
			}
		}
		return false
	})
	applied := false
	for _, r := range b.auditLog() {
		applied = applied || (r.Who == "fleet:edge-a" && r.What == "fleet.block" && r.Result == "ok" && len(r.Target) == 1 && r.Target[0] == source+"/32")
	}
	if !applied {
		t.Errorf("B's audit log has no record of the fleet verdict on %s applied: %+v", source, b.auditLog())
	}

	a.MustCLI("verdicts", "del", "--fleet", source)
	agenttest.WaitFor(t, time.Minute, "the revoke reaches B", func() bool {
		_, ok := fleetVerdict(b, source+"/32")
		return !ok
	})
	if got := b.Send(agenttest.Addr(source), frames); got != frames {
		t.Errorf("B received %d of %d frames from %s after verdicts del --fleet", got, frames, source)
	}
	if got := a.Send(agenttest.Addr(source), frames); got != frames {
		t.Errorf("A received %d of %d frames from %s after verdicts del --fleet", got, frames, source)
	}
	for _, e := range []*env{a, b} {
		agenttest.WaitFor(t, time.Minute, "the agent is in sync with the bucket", func() bool {
			st := fleetStatus(e)
			return st.InSync && st.Lag == 0
		})
		if got := e.Metrics().Get("bulwark_fleet_connected"); got != 1 {
			t.Errorf("bulwark_fleet_connected %g, want 1", got)
		}
	}
	// A published two blocks and one revoke; B refused the allowed source.
	if got := a.WaitMetric(time.Minute, 3, "bulwark_fleet_published_total"); got != 3 {
		t.Errorf("A's bulwark_fleet_published_total %g, want 3", got)
	}
	if got := b.Metrics().Get("bulwark_fleet_refused_total", "reason", "local_allow"); got < 1 {
		t.Errorf("B's bulwark_fleet_refused_total{reason=\"local_allow\"} %g, want at least 1", got)
	}
	for _, ag := range []*agenttest.Agent{agentA, agentB} {
		if ag.Exited() {
			t.Errorf("an agent exited: %v\n%s", ag.Err, ag.LogText())
		}
	}
}

// TestFleetFlagWithoutFleet: without a fleet block, --fleet and `fleet
// status` are refused with exit 4 and say why, and nothing changes.
func TestFleetFlagWithoutFleet(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.WriteConfig("", agenttest.Config{})
	e.Start()
	for _, args := range [][]string{
		{"block", "add", "--fleet", "198.18.1.66"},
		{"verdicts", "del", "--fleet", "198.18.1.66"},
		{"fleet", "status"},
	} {
		r := e.CLI(args...)
		if r.Code != 4 || !strings.Contains(r.Stderr, "no fleet block in the config") {
			t.Errorf("bulwark %s: %s, want exit 4 saying there is no fleet block", strings.Join(args, " "), r)
		}
	}
	if es := e.List("block"); len(es) != 0 {
		t.Errorf("block list after refused --fleet: %v", es)
	}
	if r := e.CLI("allow", "add", "--fleet", "198.18.1.66"); r.Code != 2 {
		t.Errorf("allow add --fleet: %s, want a usage error (exit 2)", r)
	}
	if got := e.Send(agenttest.Addr("198.18.1.66"), 10); got != 10 {
		t.Errorf("received %d of 10 frames after the refused --fleet", got)
	}
}
