package fleet_test

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/test/agenttest"
	testbed "github.com/bulwark-filter/bulwark/test/fleet"
)

// Scenario 7: an issuer over its rate cap is refused on every host, the
// same verdicts everywhere, counted and audited; another issuer is
// unaffected. Agent 1 plays the compromised host: its own caps are loose
// (it publishes everything); every other host caps each issuer at 5/s
// with a burst of 20, driven by the server's timestamps, so they all
// refuse the same entries.
func TestFleetIssuerRateCap(t *testing.T) {
	agents, flood, other := pick(3, 10), pick(100, 1000), 10
	const rate, burst = 5, 20
	fl := func(i int) string {
		if i == 0 {
			return caps(flood + other)(i)
		}
		return fmt.Sprintf("  issuer_rate  = %d\n  issuer_burst = %d\n  max_active   = %d\n", rate, burst, mapSize(flood+other))
	}
	b := testbed.New(t, testbed.Options{Servers: 3, Agents: agents, Config: config(flood+other, ""), Fleet: fl})
	b.StartAll()
	converge(t, b, time.Now(), time.Minute, 0)
	bad, good := b.Agents[0], b.Agents[1]
	observers := others(b, bad)
	start := time.Now()
	blockFleet(bad, "1h", targets(0, flood))
	blockFleet(good, "1h", targets(flood, flood+other))
	b.WaitAll(start, 2*time.Minute, "every verdict seen", func(a *testbed.Agent) bool {
		s := a.FleetStatus()
		return s.Connected && s.Lag == 0 && s.InSync
	})
	elapsed := time.Since(start)
	// What the observers admitted from the flood: at least the burst, at
	// most the burst plus the refill over the whole exchange (the server's
	// timestamps fall within it), plus one for rounding.
	hi := burst + int(math.Ceil(rate*elapsed.Seconds())) + 1
	var accepted, refused []int
	for _, a := range observers {
		s := a.FleetStatus()
		acc := s.Active - other
		ref := int(a.Metrics().Get("bulwark_fleet_refused_total", "reason", "issuer_rate"))
		accepted, refused = append(accepted, acc), append(refused, ref)
		if acc < burst || acc > hi {
			t.Errorf("%s admitted %d of %s's %d verdicts, want %d..%d (burst %d, %d/s over %s)", a.Node, acc, bad.Node, flood, burst, hi, burst, rate, elapsed.Round(time.Millisecond))
		}
		if acc+ref != flood {
			t.Errorf("%s: %d admitted + %d refused (issuer_rate) = %d, want %s's %d", a.Node, acc, ref, acc+ref, bad.Node, flood)
		}
		if n := auditCount(a, "issuer_rate", bad.Node); n != ref {
			t.Errorf("%s: %d audit records of issuer_rate refusals of %s, want %d", a.Node, n, bad.Node, ref)
		}
	}
	for i := range observers {
		if accepted[i] != accepted[0] || refused[i] != refused[0] {
			t.Errorf("observers disagree: admitted %v, refused %v (by %s)", accepted, refused, names(observers))
			break
		}
	}
	// The other issuer is unaffected: its verdicts are in force on every
	// host, the flood's last one (refused) on none of the observers.
	expectFrames(t, b.Agents, target(flood), false)
	expectFrames(t, b.Agents, target(flood+other-1), false)
	expectFrames(t, observers, target(flood-1), true)
	summary(t, "%s published %d at once under a %d/s burst %d cap: %d admitted, %d refused, identical on %d observers, audited; %s's %d all applied",
		bad.Node, flood, rate, burst, accepted[0], refused[0], len(observers), good.Node, other)
}

// auditRecord is the part of an audit log line auditCount reads.
type auditRecord struct {
	Who, Result, Detail string
}

// auditCount is the number of a's audit records of fleet verdicts from
// issuer refused for reason.
func auditCount(a *testbed.Agent, reason, issuer string) int {
	a.T.Helper()
	n := 0
	for _, r := range agenttest.AuditLog[auditRecord](a.Env) {
		if r.Who == "fleet:"+issuer && r.Result == "refused" && r.Detail == reason {
			n++
		}
	}
	return n
}

// Scenario 8, the distributed slow scan (one source, 2 ports per host per
// minute across the hosts, flagged within 2 windows, no false verdicts on
// benign traffic), belongs to the fleet-wide detection work: it is
// TestFleetDistributedSlowScan, built on this testbed (testbed.New with
// the detection block in Options.Fleet, Agent.SendPorts for the probes,
// Agent.Send for benign traffic, Agent.OpenVerdicts to check verdicts).
