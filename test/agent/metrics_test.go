package agent_test

import (
	"fmt"
	"math"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/bulwark-filter/bulwark/test/agenttest"
)

// TestMetricsMatchPackets sends exact numbers of frames from an
// allow-listed, a block-listed and a rate-limited source and checks the
// counters of /metrics against them.
func TestMetricsMatchPackets(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.WriteConfig("", agenttest.Config{PPS: 100, Burst: 100, Allow: []string{"198.18.20.1"}, Block: []string{"198.18.66.0/24"}})
	e.Start()
	base := e.Metrics()
	const N, M, K = 300, 200, 700
	allowed, blocked, limited := agenttest.Addr("198.18.20.1"), agenttest.Addr("198.18.66.7"), agenttest.Addr("198.18.3.3")
	frameLen := float64(len(e.Frame(allowed, 1)))

	if got := e.Send(allowed, N); got != N {
		t.Fatalf("%d of %d allow-listed frames delivered, want all", got, N)
	}
	if got := e.Send(blocked, M); got != 0 {
		t.Fatalf("%d of %d block-listed frames delivered, want 0", got, M)
	}
	delivered, ok := e.SendFlood(limited, K, 100, 100)
	if !ok {
		t.Fatalf("%d of %d rate-limited frames delivered, want about 100", delivered, K)
	}

	m := e.Metrics()
	delta := func(name string, labels ...string) float64 {
		return m.Get(name, labels...) - base.Get(name, labels...)
	}
	iface := e.TB.ServerIf
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"bulwark_packets_total", []string{"interface", iface, "action", "pass", "reason", "allowlist"}, N},
		{"bulwark_bytes_total", []string{"interface", iface, "action", "pass", "reason", "allowlist"}, N * frameLen},
		{"bulwark_packets_total", []string{"interface", iface, "action", "drop", "reason", "blocklist"}, M},
		{"bulwark_bytes_total", []string{"interface", iface, "action", "drop", "reason", "blocklist"}, M * frameLen},
		{"bulwark_packets_total", []string{"interface", iface, "action", "drop", "reason", "ratelimit"}, float64(K - delivered)},
		{"bulwark_bytes_total", []string{"interface", iface, "action", "drop", "reason", "ratelimit"}, float64(K-delivered) * frameLen},
		{"bulwark_list_hits_total", []string{"interface", iface, "list", "block"}, M},
		{"bulwark_list_hits_total", []string{"interface", iface, "list", "allow"}, N},
		{"bulwark_packets_total", []string{"action", "would_drop"}, 0},
		{"bulwark_packets_total", []string{"action", "drop", "reason", "malformed"}, 0},
		{"bulwark_packets_total", []string{"action", "drop", "reason", "verdict"}, 0},
	} {
		if got := delta(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v went up by %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// Passed (not list-matched, under the limit): the limited source's
	// delivered frames, plus whatever else the server veth saw (neighbour
	// discovery and the like).
	if got := delta("bulwark_packets_total", "interface", iface, "action", "pass", "reason", "passed"); got < float64(delivered) || got > float64(delivered)+20 {
		t.Errorf("pass/passed went up by %v, want %d (+ a little stray traffic)", got, delivered)
	}
	for _, c := range []struct {
		labels []string
		want   float64
	}{
		{[]string{"list", "allow", "family", "ipv4"}, 1},
		{[]string{"list", "block", "family", "ipv4"}, 1},
		{[]string{"list", "allow", "family", "ipv6"}, 0},
		{[]string{"list", "block", "family", "ipv6"}, 0},
	} {
		if got := m.Get("bulwark_list_entries", c.labels...); got != c.want {
			t.Errorf("bulwark_list_entries%v = %v, want %v", c.labels, got, c.want)
		}
	}
	if got := m.Get("bulwark_attach_mode", "interface", iface, "mode", "native"); got != 1 {
		t.Errorf("bulwark_attach_mode{mode=native} = %v, want 1", got)
	}
	if got := m.Get("bulwark_tracked_sources", "interface", iface); got < 1 {
		t.Errorf("bulwark_tracked_sources = %v, want >= 1 (the rate-limited source)", got)
	}
	if got := m.Get("bulwark_scrape_errors_total"); got != 0 {
		t.Errorf("bulwark_scrape_errors_total = %v, want 0", got)
	}
	if got := m.Get("bulwark_build_info"); got != 1 {
		t.Errorf("bulwark_build_info = %v, want 1", got)
	}

	// A runtime block shows up in the runtime-block list's hits.
	e.MustCLI("block", "add", "198.18.3.3")
	if got := e.Send(limited, 40); got != 0 {
		t.Fatalf("%d of 40 runtime-blocked frames delivered, want 0", got)
	}
	m2 := e.Metrics()
	if got := m2.Get("bulwark_list_hits_total", "interface", iface, "list", "runtime-block"); got != 40 {
		t.Errorf("list hits runtime-block = %v, want 40", got)
	}
	if got := m2.Get("bulwark_packets_total", "interface", iface, "action", "drop", "reason", "blocklist") - m.Get("bulwark_packets_total", "interface", iface, "action", "drop", "reason", "blocklist"); got != 40 {
		t.Errorf("drop/blocklist went up by %v after the runtime block, want 40", got)
	}
	if got := m2.Get("bulwark_list_entries", "list", "block", "family", "ipv4"); got != 2 {
		t.Errorf("bulwark_list_entries{block,ipv4} = %v, want 2", got)
	}
}

// TestMetricsAggregateAndNewSources drives the two limits that are not
// rules, the aggregate limit and the ceiling on new sources, over their
// bursts with real frames, and checks that bulwark_rule_drops_total counts
// every frame each of them dropped under its own name: the frames sent less
// the frames the server's socket received, within what the buckets admit.
func TestMetricsAggregateAndNewSources(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// The client's own IPv6 stack sends solicitations from link-local
	// sources, new sources that would take tokens or be dropped; with it
	// off only the test's frames reach the program.
	if out, err := exec.Command("ip", "netns", "exec", e.TB.Client, "sysctl", "-q", "-w",
		"net.ipv6.conf."+e.TB.ClientIf+".disable_ipv6=1").CombinedOutput(); err != nil {
		t.Fatalf("disable IPv6 on the client veth: %v: %s", err, out)
	}
	// 1 token per second each: what refills during a phase is bounded by
	// the phase's length in seconds.
	const aggBurst, newBurst = 50, 20
	e.WriteConfig("", agenttest.Config{Limits: fmt.Sprintf("  aggregate {\n    pps   = 1\n    burst = %d\n  }\n"+
		"  new_sources {\n    pps   = 1\n    burst = %d\n  }\n", aggBurst, newBurst)})
	e.Start()
	iface := e.TB.ServerIf
	drops := func(m agenttest.MetricSet, rule string) float64 {
		return m.Get("bulwark_rule_drops_total", "interface", iface, "rule", rule)
	}
	refill := func(d time.Duration) int { return int(math.Ceil(d.Seconds())) + 1 }
	base := e.Metrics()

	// One source of 198.18.40.0/24: its first frame takes a new-source
	// token, then the /24's aggregate bucket admits its burst.
	const K = 300
	start := time.Now()
	agg := e.Send(agenttest.Addr("198.18.40.1"), K)
	if d := time.Since(start); agg < aggBurst || agg > aggBurst+refill(d) {
		t.Fatalf("%d of %d frames of one /24 delivered in %s, want %d (the aggregate burst) + at most 1/s", agg, K, d, aggBurst)
	}
	m1 := e.Metrics()
	if got, want := drops(m1, "aggregate")-drops(base, "aggregate"), float64(K-agg); got != want {
		t.Errorf(`bulwark_rule_drops_total{rule="aggregate"} went up by %v, want %v (%d sent, %d received)`, got, want, K, agg)
	}
	if got := drops(m1, "new_sources") - drops(base, "new_sources"); got != 0 {
		t.Errorf(`bulwark_rule_drops_total{rule="new_sources"} went up by %v after frames of one source, want 0`, got)
	}

	// N new sources of 198.18.50.0/24, one frame each: the ceiling admits
	// what its bucket holds (its burst, less the token the first source
	// took, plus the refill), far below the /24's aggregate burst.
	const N = 100
	srcs := make([]netip.Addr, N)
	frames := make([][]byte, N)
	for i := range srcs {
		srcs[i] = netip.AddrFrom4([4]byte{198, 18, 50, byte(i + 1)})
		frames[i] = e.Frame(srcs[i], 1)
	}
	start = time.Now()
	sent, _, err := e.Snd.Send(frames, N, time.Now().Add(10*time.Second), 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range sent {
		if n != 1 {
			t.Fatalf("sent %d frames from %s, want 1", n, srcs[i])
		}
	}
	e.Rcv.Settle(100*time.Millisecond, 3*time.Second)
	d := time.Since(start)
	fresh := 0
	for _, s := range srcs {
		fresh += e.Rcv.Count(s)
	}
	if fresh < newBurst-1 || fresh > newBurst+refill(d) {
		t.Fatalf("%d of %d new sources delivered in %s, want %d (the ceiling's burst) - 1 + at most 1/s", fresh, N, d, newBurst)
	}
	m2 := e.Metrics()
	if got, want := drops(m2, "new_sources")-drops(m1, "new_sources"), float64(N-fresh); got != want {
		t.Errorf(`bulwark_rule_drops_total{rule="new_sources"} went up by %v, want %v (%d sent, %d received)`, got, want, N, fresh)
	}
	if got := drops(m2, "aggregate") - drops(m1, "aggregate"); got != 0 {
		t.Errorf(`bulwark_rule_drops_total{rule="aggregate"} went up by %v for %d frames of a /24 below its burst, want 0`, got, fresh)
	}
	// The rate-limit drops are exactly these two rules' drops.
	if got, want := m2.Get("bulwark_packets_total", "interface", iface, "action", "drop", "reason", "ratelimit")-
		base.Get("bulwark_packets_total", "interface", iface, "action", "drop", "reason", "ratelimit"), float64(K-agg+N-fresh); got != want {
		t.Errorf("drop/ratelimit went up by %v, want %v", got, want)
	}
	if got := drops(m2, "default"); got != 0 {
		t.Errorf(`bulwark_rule_drops_total{rule="default"} = %v with no default limit, want 0`, got)
	}
}

// TestMetricsLint runs client_golang's promlint over what a running agent
// serves on /metrics, after traffic so every collector has series.
func TestMetricsLint(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.WriteConfig("", agenttest.Config{PPS: 10, Burst: 10, Block: []string{"198.18.66.0/24"},
		Limits: "  aggregate {\n    pps = 1000\n  }\n"})
	e.Start()
	e.Send(agenttest.Addr("198.18.66.1"), 5)
	e.Send(agenttest.Addr("198.18.3.3"), 50)
	text := e.MetricsText()
	for _, name := range []string{"bulwark_packets_total", "bulwark_rule_drops_total", "bulwark_scrape_errors_total",
		"bulwark_score_cycle_seconds", "go_goroutines", "process_cpu_seconds_total"} {
		if !strings.Contains(text, "\n# TYPE "+name+" ") {
			t.Errorf("/metrics has no %s: the lint would not see it", name)
		}
	}
	if !strings.Contains(text, "# TYPE bulwark_scrape_errors_total counter\n") {
		t.Error("bulwark_scrape_errors_total is not a counter")
	}
	problems, err := promlint.New(strings.NewReader(text)).Lint()
	if err != nil {
		t.Fatalf("promlint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}
