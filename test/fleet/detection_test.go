package fleet_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/agent/api"
	fleetsummary "github.com/bulwark-filter/bulwark/agent/fleet/summary"
	"github.com/bulwark-filter/bulwark/test/agenttest"
	testbed "github.com/bulwark-filter/bulwark/test/fleet"
)

// detectWindow is the detection window of scenario 8, shortened from the
// default minute (the logic is the same).
const detectWindow = 5 * time.Second

// Scenario 8: a distributed slow scan, one source probing 2 ports on each
// host per window (ports 1000+2i and 1001+2i on host i), is flagged within
// 2 windows, with zero false verdicts on the benign traffic running
// meanwhile: a client of port 9000 and 443 on every host (2 ports
// fleet-wide), one local client per host, and a source that probes 14
// ports on only 2 hosts (fewer than min_hosts). Two aggregators run (agent
// 1 with role aggregate and a standalone `bulwark fleet aggregate`): one
// verdict, explained on every host.
func TestFleetDistributedSlowScan(t *testing.T) {
	agents := pick(3, 10)
	// The scan reaches 2 ports per host: 2n fleet-wide; the rule asks for
	// fewer, and for more than the benign client's 2.
	minPorts := min(12, 2*agents-1)
	detection := func(i int) string {
		role := "publish"
		if i == 0 {
			role = "aggregate"
		}
		return fmt.Sprintf("  detection {\n    role = %q\n    window = %q\n    min_hosts = 3\n    min_ports = %d\n  }\n",
			role, detectWindow, minPorts)
	}
	b := testbed.New(t, testbed.Options{Servers: 3, Agents: agents, Config: config(0, ""),
		Fleet: func(i int) string { return caps(0)(i) + detection(i) }})
	b.StartAll()
	converge(t, b, time.Now(), time.Minute, 0)
	standalone := startAggregator(t, b, minPorts)

	scanner := netip.MustParseAddr("198.18.66.6")
	client := netip.MustParseAddr("198.18.50.1")
	wide := netip.MustParseAddr("198.18.51.1")
	// Start at a window's beginning so that each round is one window.
	time.Sleep(time.Until(fleetsummary.WindowStart(time.Now(), detectWindow).Add(detectWindow + 100*time.Millisecond)))
	first := fleetsummary.WindowStart(time.Now(), detectWindow)
	flagged := func(a *testbed.Agent) bool {
		x := explain(t, a, scanner)
		return x.Fleet != nil
	}
	for round := 0; round < 2 && !flagged(b.Agents[agents-1]); round++ {
		for i, a := range b.Agents {
			a.SendPorts(scanner, []uint16{uint16(1000 + 2*i), uint16(1001 + 2*i)})
			a.SendPorts(client, []uint16{agenttest.UDPPort, 443})
			a.SendPorts(netip.AddrFrom4([4]byte{198, 18, 52, byte(i + 1)}), []uint16{agenttest.UDPPort, agenttest.UDPPort})
			if i < 2 {
				a.SendPorts(wide, []uint16{22, 25, 53, 80, 123, 443, 3306, 5432, 6379, 8080, 8443, 9000, 9200, 27017})
			}
		}
		// Wait for the next window (rounds are one window apart).
		time.Sleep(time.Until(fleetsummary.WindowStart(time.Now(), detectWindow).Add(detectWindow + 100*time.Millisecond)))
	}
	b.WaitAll(time.Now(), 2*time.Minute, "the fleet verdict on the scanner", flagged)

	// Within 2 windows: the verdict is of the first or second window.
	wantReason := fmt.Sprintf("fleet: seen on %d hosts, 2 ports each", agents)
	for _, a := range b.Agents {
		f := explain(t, a, scanner).Fleet
		if f.Issuer != "aggregate" || f.Action != "block" || f.Target != "198.18.66.6/32" || !strings.HasPrefix(f.Reason, wantReason) {
			t.Errorf("%s: fleet component %+v, want a block by aggregate, %q...", a.Node, f, wantReason)
		}
		if end := f.IssuedAt; end.After(first.Add(2*detectWindow)) || !end.After(first) {
			t.Errorf("%s: the verdict is of the window ending %s; the scan began in the window from %s", a.Node, end, first)
		}
	}
	// The scanner is dropped everywhere; the benign sources get through.
	expectFrames(t, b.Agents, scanner, false)
	expectFrames(t, b.Agents, client, true)
	// Zero false verdicts: one verdict on every host, the scanner's, from
	// the aggregate issuer; one active fleet verdict (two aggregators, one
	// verdict).
	for _, a := range b.Agents {
		var vs []api.Verdict
		if err := json.Unmarshal([]byte(a.MustCLI("verdicts", "list", "--json")), &vs); err != nil {
			t.Fatal(err)
		}
		if len(vs) != 1 || vs[0].Source != "198.18.66.6/32" || vs[0].Origin != "fleet:aggregate" {
			t.Errorf("%s: verdicts %+v, want only 198.18.66.6/32 from fleet:aggregate", a.Node, vs)
		}
		if st := a.FleetStatus(); st.Active != 1 {
			t.Errorf("%s: %d active fleet verdicts, want 1", a.Node, st.Active)
		}
	}
	if !strings.Contains(standalone(), "window decided") {
		t.Errorf("the standalone aggregator decided no window:\n%s", standalone())
	}
	summary(t, "%d agents, %s windows: distributed scan flagged (%s), no false verdict", agents, detectWindow,
		explain(t, b.Agents[0], scanner).Fleet.Reason)
}

// explain is `bulwark explain IP --json` on a.
func explain(t *testing.T, a *testbed.Agent, ip netip.Addr) api.Explanation {
	t.Helper()
	var x api.Explanation
	if err := json.Unmarshal([]byte(a.MustCLI("explain", ip.String(), "--json")), &x); err != nil {
		t.Fatalf("%s: explain: %v", a.Node, err)
	}
	return x
}

// startAggregator runs `bulwark fleet aggregate` (debug log) in a host
// namespace of the fabric, with the scenario's detection settings; it is
// stopped when the test ends. It returns a function that reads its log.
func startAggregator(t *testing.T, b *testbed.Bed, minPorts int) func() string {
	t.Helper()
	ns := b.Host()
	var urls []string
	for _, u := range b.URLs() {
		urls = append(urls, fmt.Sprintf("%q", u))
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "aggregator.hcl")
	cfg := fmt.Sprintf(`interface "unused" {}
log { level = "debug" }
fleet {
  servers  = [%s]
  node     = "aggregator"
  replicas = %d
  detection {
    window    = %q
    min_hosts = 3
    min_ports = %d
  }
}
`, strings.Join(urls, ", "), b.Replicas(), detectWindow, minPorts)
	if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, agenttest.Bin, "fleet", "aggregate", "--config", conf)
	logf, err := os.Create(filepath.Join(dir, "aggregator.log"))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		cancel()
		logf.Close()
		t.Fatal(err)
	}
	log := func() string {
		b, _ := os.ReadFile(logf.Name())
		return string(b)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			t.Logf("standalone aggregator log:\n%s", log())
		}
	})
	return log
}
