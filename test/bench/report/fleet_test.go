package main

import (
	"strings"
	"testing"
)

// TestFleetAgentTargets checks that the 250 ms target is judged on the real
// agents' p99 with no verdict missed, and that the fan-out simulation
// carries no target.
func TestFleetAgentTargets(t *testing.T) {
	run := func(p99, missed float64) map[string]any {
		return map[string]any{"agents": 10.0, "rate_per_s": 1000.0, "verdicts": 30000.0, "propagation_p99_ms": p99,
			"missed": missed, "publish_to_stored_p99_ms": 10.0, "stored_to_kernel_p99_ms": p99 - 10,
			"agent_cpu_us_per_verdict": 40.0, "server_cpu_us_per_verdict": 300.0}
	}
	for _, c := range []struct {
		p99, missed float64
		met         bool
		why         string
	}{
		{250, 0, true, ""},
		{251, 0, false, "mostly after the stream stored"},
		{100, 1, false, "1 (agent, verdict) pairs never reached a kernel map"},
	} {
		tg := fleetAgentTargets(run(c.p99, c.missed))
		if len(tg) != 1 || tg[0].Met != c.met || !strings.Contains(tg[0].Why, c.why) || (c.met && tg[0].Why != "") {
			t.Errorf("p99 %v, %v missed: %+v; want met %v, why with %q", c.p99, c.missed, tg, c.met, c.why)
		}
	}
	// 10 agents x 40 us + 300 us = 700 us per verdict, at 1,000/s.
	if got := cpuAsked(run(300, 0)); got < 0.6999 || got > 0.7001 {
		t.Errorf("CPU asked %v, want 0.7 CPU-s/s", got)
	}
	fan := map[string]any{"clients": 200.0, "rate_per_s": 1000.0, "client_cpu_us_per_verdict": 13.0, "propagation_p99_ms": 12000.0,
		"coldsync_verdicts": 1e6, "coldsync_seconds": 9.0}
	for _, tg := range fleetTargets(fan) {
		if strings.Contains(tg.Target, "propagation") {
			t.Errorf("the fan-out simulation has a target: %+v", tg)
		}
	}
	// 4.5 CPU-s for 500,000 verdicts = 9 CPU-s per 1M.
	if got := coldCPUPerMillion(map[string]any{"coldsync_verdicts": 5e5, "coldsync_cpu_seconds": 4.5}); got < 8.9999 || got > 9.0001 {
		t.Errorf("cold sync CPU per 1M %v, want 9", got)
	}
	// 200 x 1,000 x 13 us = 2.6 CPU-s/s.
	if got := fanoutAsked(fan); got < 2.5999 || got > 2.6001 {
		t.Errorf("fan-out CPU asked %v, want 2.6", got)
	}
}

// TestFleetColdAgentTargets checks that the real agent's cold sync target
// is judged on its time to every verdict in the kernel map and on one audit
// record per verdict, beside the lightweight client's figure.
func TestFleetColdAgentTargets(t *testing.T) {
	fl := map[string]any{"coldsync_seconds": 8.5}
	for _, c := range []struct {
		seconds, audit float64
		met            bool
		why            string
	}{
		{10, 1e6, true, ""},
		{12.5, 1e6, false, "12.50 us per verdict"},
		{9, 999_999, false, "999999 audit records"},
	} {
		r := map[string]any{"verdicts": 1e6, "kernel_seconds": c.seconds, "audit_records": c.audit, "agent_cpu_seconds": 12.5}
		tg := fleetColdAgentTargets(r, fl)
		if len(tg) != 1 || tg[0].Met != c.met || !strings.Contains(tg[0].Why, c.why) || (c.met && tg[0].Why != "") ||
			!strings.Contains(tg[0].Measured, "lightweight client 8.50 s") {
			t.Errorf("%v s, %v audit records: %+v; want met %v, why with %q", c.seconds, c.audit, tg, c.met, c.why)
		}
	}
	if tg := fleetColdAgentTargets(nil, fl); tg != nil {
		t.Errorf("no figures: %+v, want no target", tg)
	}
}
