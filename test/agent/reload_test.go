package agent_test

import (
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/test/agenttest"
)

// TestReloadGood changes the block list and the default limit of a running
// agent, with `bulwark reload` and then with SIGHUP, and checks the traffic
// and the reload counter after each.
func TestReloadGood(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.WriteConfig("", agenttest.Config{PPS: 100, Burst: 100})
	a := e.Start()

	// Config A: 100 pps, burst 100. A flood of 1000 back-to-back frames
	// passes about the burst.
	flooder := agenttest.Addr("198.18.3.3")
	delivered, ok := e.SendFlood(flooder, 1000, 100, 100)
	if !ok {
		t.Fatalf("config A: %d of 1000 flood frames delivered, want about 100 (burst)", delivered)
	}
	m := e.Metrics()
	if got := m.Get("bulwark_packets_total", "action", "drop", "reason", "ratelimit"); got != float64(1000-delivered) {
		t.Fatalf("config A: ratelimit drops %v, want %d (1000 sent - %d delivered)", got, 1000-delivered, delivered)
	}

	// Config B: 198.18.7.7 blocked, the limit 20 pps, burst 20.
	blocked := agenttest.Addr("198.18.7.7")
	e.WriteConfig("", agenttest.Config{PPS: 20, Burst: 20, Block: []string{"198.18.7.7"}})
	r := e.CLI("reload")
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != "reloaded" {
		t.Fatalf("bulwark reload: %s, want exit 0 and \"reloaded\"", r)
	}
	if got := e.Send(blocked, 50); got != 0 {
		t.Fatalf("after reload: %d of 50 frames from the newly blocked %s delivered, want 0", got, blocked)
	}
	if got, ok := e.SendFlood(agenttest.Addr("198.18.4.4"), 500, 20, 20); !ok {
		t.Fatalf("after reload: %d of 500 flood frames from a fresh source delivered, want about 20 (new burst)", got)
	}
	m = e.Metrics()
	if got := m.Get("bulwark_config_reloads_total", "result", "ok"); got != 1 {
		t.Fatalf("reloads ok = %v, want 1", got)
	}
	if got := m.Get("bulwark_config_reloads_total", "result", "rejected"); got != 0 {
		t.Fatalf("reloads rejected = %v, want 0", got)
	}
	if es := e.List("block"); len(es) != 1 || es[0].CIDR != "198.18.7.7/32" || es[0].Origin != "config" {
		t.Fatalf("block list after reload: %+v, want 198.18.7.7/32 from config", es)
	}

	// Config C by SIGHUP: 198.18.7.7 no longer blocked, 198.18.8.8 is.
	e.WriteConfig("", agenttest.Config{PPS: 20, Burst: 20, Block: []string{"198.18.8.8"}})
	if err := a.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if got := e.WaitMetric(5*time.Second, 2, "bulwark_config_reloads_total", "result", "ok"); got != 2 {
		t.Fatalf("after SIGHUP: reloads ok = %v, want 2", got)
	}
	if got := e.Send(blocked, 10); got != 10 {
		t.Fatalf("after SIGHUP: %d of 10 frames from the unblocked %s delivered, want 10", got, blocked)
	}
	if got := e.Send(agenttest.Addr("198.18.8.8"), 50); got != 0 {
		t.Fatalf("after SIGHUP: %d of 50 frames from the newly blocked 198.18.8.8 delivered, want 0", got)
	}
	if a.Exited() {
		t.Fatalf("agent exited: %v", a.Err)
	}
	var reloads int
	for _, rec := range e.auditLog() {
		if rec.What == "reload" && rec.Result == "ok" {
			reloads++
		}
	}
	if reloads != 2 {
		t.Fatalf("audit log has %d ok reload records, want 2", reloads)
	}
}

// diagLine matches one file:line:col diagnostic of the env's config.
func diagLine(path string, line int) *regexp.Regexp {
	return regexp.MustCompile("(?m)^" + regexp.QuoteMeta(path) + ":" + itoa(line) + `:\d+: `)
}

// TestReloadBroken offers broken configs to a running agent: each reload
// is rejected with file:line:col diagnostics and changes nothing.
func TestReloadBroken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	good := agenttest.Config{PPS: 50, Burst: 50, Block: []string{"198.18.66.0/24"}}
	e.WriteConfig("", good)
	a := e.Start()
	text := e.Render(good)
	lineOf := func(s string) int {
		for i, l := range strings.Split(text, "\n") {
			if strings.Contains(l, s) {
				return i + 1
			}
		}
		t.Fatalf("no line with %q", s)
		return 0
	}
	blockLine := lineOf(`cidrs = ["198.18.66.0/24"]`)
	cases := []struct {
		name   string
		broken string
		line   int    // where the diagnostic points
		want   string // in the diagnostic
	}{
		{"unknown key", text + "\nbogus_key = 1\n", len(strings.Split(text, "\n")) + 1, "bogus_key"},
		{"bad CIDR", strings.Replace(text, `"198.18.66.0/24"]`, `"198.18.66.0/24", "300.1.1.1"]`, 1), blockLine, "300.1.1.1"},
		{"host bits", strings.Replace(text, `"198.18.66.0/24"]`, `"198.18.66.1/24"]`, 1), blockLine, "198.18.66.1/24"},
		{"rate zero", strings.Replace(text, "pps   = 50", "pps   = 0", 1), lineOf("pps   = 50"), "pps"},
	}
	for i, c := range cases {
		agenttest.WriteFile(t, e.CfgPath, c.broken)
		r := e.CLI("reload")
		if r.Code != 1 {
			t.Fatalf("%s: bulwark reload: %s, want exit 1", c.name, r)
		}
		if !diagLine(e.CfgPath, c.line).MatchString(r.Stderr) || !strings.Contains(r.Stderr, c.want) {
			t.Fatalf("%s: reload stderr %q, want a %s:%d:col diagnostic naming %q", c.name, r.Stderr, e.CfgPath, c.line, c.want)
		}
		if strings.Contains(r.Stdout, "reloaded") {
			t.Fatalf("%s: reload printed %q", c.name, r.Stdout)
		}
		// The running policy is the good config's: the block list still
		// blocks, and a fresh source still gets the 50-frame burst.
		if got := e.Send(agenttest.Addr("198.18.66.9"), 50); got != 0 {
			t.Fatalf("%s: %d of 50 frames from the blocked 198.18.66.9 delivered, want 0", c.name, got)
		}
		fresh := agenttest.Addr("198.18.4." + itoa(10+i))
		if got, ok := e.SendFlood(fresh, 300, 50, 50); !ok {
			t.Fatalf("%s: %d of 300 flood frames from %s delivered, want about 50 (the old burst)", c.name, got, fresh)
		}
		m := e.Metrics()
		if got := m.Get("bulwark_config_reloads_total", "result", "rejected"); got != float64(i+1) {
			t.Fatalf("%s: reloads rejected = %v, want %d", c.name, got, i+1)
		}
		if got := m.Get("bulwark_config_reloads_total", "result", "ok"); got != 0 {
			t.Fatalf("%s: reloads ok = %v, want 0", c.name, got)
		}
		if es := e.List("block"); len(es) != 1 || es[0].CIDR != "198.18.66.0/24" {
			t.Fatalf("%s: block list %+v, want just 198.18.66.0/24", c.name, es)
		}
		if a.Exited() {
			t.Fatalf("%s: agent exited: %v\n%s", c.name, a.Err, a.LogText())
		}
	}

	// SIGHUP with a broken config: rejected too, the agent keeps running.
	agenttest.WriteFile(t, e.CfgPath, cases[0].broken)
	if err := a.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if got := e.WaitMetric(5*time.Second, float64(len(cases)+1), "bulwark_config_reloads_total", "result", "rejected"); got != float64(len(cases)+1) {
		t.Fatalf("after SIGHUP: reloads rejected = %v, want %d", got, len(cases)+1)
	}
	if a.Exited() {
		t.Fatalf("agent exited after a broken SIGHUP reload: %v", a.Err)
	}
	if got := e.Send(agenttest.Addr("198.18.66.9"), 20); got != 0 {
		t.Fatalf("after SIGHUP: %d of 20 frames from the blocked 198.18.66.9 delivered, want 0", got)
	}

	var rejected []auditRecord
	for _, rec := range e.auditLog() {
		if rec.What == "reload" {
			if rec.Result != "rejected" {
				t.Fatalf("audit log: reload record %+v, want result rejected", rec)
			}
			rejected = append(rejected, rec)
		}
	}
	if len(rejected) != len(cases)+1 {
		t.Fatalf("audit log: %d rejected reload records, want %d", len(rejected), len(cases)+1)
	}
	if !strings.Contains(rejected[0].Detail, e.CfgPath+":") || rejected[0].Who != "cli" || rejected[len(rejected)-1].Who != "signal" {
		t.Fatalf("audit log: reload records %+v, want who cli then signal and the diagnostics in detail", rejected)
	}
}
