package agent_test

import (
	"testing"

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
