// Package crowdsec tests the CrowdSec bouncer and source against a real
// CrowdSec local API (Debian's crowdsec, test/crowdsectest) and a real
// Bulwark agent whose XDP program drops frames in a netns: decisions added
// with cscli are enforced with their duration and origin, deletions
// delivered again, an unreachable LAPI changes nothing in force, a restart
// with changes meanwhile converges, 100,000 imported decisions are all
// applied, and an engine verdict shows in `cscli alerts list`.
package crowdsec

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/agent/api"
	"github.com/bulwark-filter/bulwark/test/agenttest"
	"github.com/bulwark-filter/bulwark/test/crowdsectest"
)

func TestMain(m *testing.M) { os.Exit(agenttest.Main(m, "bwk-cs-bin-")) }

// frames is how many frames each check sends from one source.
const frames = 20

// crowdsecBlock is the agent's crowdsec block for lapi with the bouncer
// key in keyFile; extra goes inside it.
func crowdsecBlock(l *crowdsectest.LAPI, keyFile, extra string) string {
	return fmt.Sprintf("\ncrowdsec {\n  lapi_url     = %q\n  api_key_file = %q\n  interval     = \"300ms\"\n  resync       = \"5s\"\n"+
		"  actions      = { ban = \"block\", captcha = \"throttle\" }\n%s}\n", l.URL(), keyFile, extra)
}

// verdicts is `verdicts list --json`.
func verdicts(e *agenttest.Env) map[string]api.Verdict {
	e.T.Helper()
	var vs []api.Verdict
	if err := json.Unmarshal([]byte(e.MustCLI("verdicts", "list", "--json")), &vs); err != nil {
		e.T.Fatal(err)
	}
	out := map[string]api.Verdict{}
	for _, v := range vs {
		out[v.Source] = v
	}
	return out
}

// status is `crowdsec status --json`.
func status(e *agenttest.Env) api.CrowdSecStatus {
	e.T.Helper()
	var st api.CrowdSecStatus
	if err := json.Unmarshal([]byte(e.MustCLI("crowdsec", "status", "--json")), &st); err != nil {
		e.T.Fatal(err)
	}
	return st
}

// src is how `verdicts list` names an IPv4 address's source.
func src(a netip.Addr) string { return netip.PrefixFrom(a, 32).String() }

// agentLog is the last agent's log, for a failure message.
func agentLog(e *agenttest.Env) string {
	if len(e.Agents) == 0 {
		return ""
	}
	return "--- agent:\n" + e.Agents[len(e.Agents)-1].LogText()
}

// waitVerdict waits until the verdict on source is there (or gone).
func waitVerdict(t *testing.T, e *agenttest.Env, l *crowdsectest.LAPI, source string, present bool) api.Verdict {
	t.Helper()
	var v api.Verdict
	agenttest.WaitFor(t, 30*time.Second, fmt.Sprintf("verdict on %s present=%t\n%s\n%s", source, present, l.Logs(), agentLog(e)), func() bool {
		var ok bool
		v, ok = verdicts(e)[source]
		return ok == present
	})
	return v
}

func TestBouncer(t *testing.T) {
	e := agenttest.NewEnv(t, agenttest.Options{DirPrefix: "bwk-csb-", MetricsAddr: "127.0.0.1:9740", Receiver: true, Sender: true})
	l := crowdsectest.Start(t, e.TB.Server)
	key := l.AddBouncer("bulwark-test")
	const allowed = "198.18.73.0/24"
	e.WriteConfig("", agenttest.Config{Allow: []string{allowed}, Extra: crowdsecBlock(l, key, "")})
	e.Start()
	var (
		bad4     = agenttest.Addr("198.18.70.7")
		bad6     = agenttest.Addr("2001:2:0:71::7")
		inRange  = agenttest.Addr("198.18.72.9")
		throttle = agenttest.Addr("198.18.74.4")
		gone     = agenttest.Addr("198.18.75.5") // deleted while the bouncer cannot read the LAPI
		fresh    = agenttest.Addr("198.18.76.6") // added meanwhile
		allowIP  = agenttest.Addr("198.18.73.5")
	)
	for _, a := range []netip.Addr{bad4, bad6, inRange, allowIP} {
		if got := e.Send(a, frames); got != frames {
			t.Fatalf("before any decision: %d of %d frames from %s delivered", got, frames, a)
		}
	}
	l.MustCSCLI("decisions", "add", "-i", allowIP.String(), "-d", "1h", "-R", "test/allowed")
	l.MustCSCLI("decisions", "add", "-i", bad4.String(), "-d", "1h", "-R", "test/ssh-bf")
	l.MustCSCLI("decisions", "add", "-i", bad6.String(), "-d", "2h")
	l.MustCSCLI("decisions", "add", "-r", "198.18.72.0/24", "-d", "30m", "-R", "test/range")
	l.MustCSCLI("decisions", "add", "-i", throttle.String(), "-d", "1h", "-t", "captcha", "-R", "test/captcha")
	l.MustCSCLI("decisions", "add", "-i", gone.String(), "-d", "1h", "-R", "test/gone")

	v4 := waitVerdict(t, e, l, src(bad4), true)
	// The decision's duration is the TTL (3600 s, added within the wait).
	if v4.Action != "block" || v4.Origin != "crowdsec:cscli/test/ssh-bf" || v4.ExpiresIn <= 3600-60 || v4.ExpiresIn > 3600 {
		t.Errorf("%s: %+v; want block, origin crowdsec:cscli/test/ssh-bf, 3540 to 3600 s left", bad4, v4)
	}
	// An IPv6 decision blocks its source (the /64 of limits.ipv6_prefix).
	v6 := waitVerdict(t, e, l, "2001:2:0:71::/64", true)
	if v6.Action != "block" || !strings.HasPrefix(v6.Origin, "crowdsec:cscli/") || v6.ExpiresIn <= 7200-60 || v6.ExpiresIn > 7200 {
		t.Errorf("%s: %+v; want block from crowdsec:cscli, 7140 to 7200 s left", bad6, v6)
	}
	if vt := waitVerdict(t, e, l, src(throttle), true); vt.Action != "throttle" || vt.Origin != "crowdsec:cscli/test/captcha" {
		t.Errorf("captcha decision on %s: %+v; want throttle (actions maps captcha to throttle)", throttle, vt)
	}
	agenttest.WaitFor(t, 30*time.Second, "the range decision in the block list", func() bool {
		_, ok := agenttest.FindEntry(e.List("block"), "198.18.72.0/24")
		return ok
	})
	if le, _ := agenttest.FindEntry(e.List("block"), "198.18.72.0/24"); le.List != "crowdsec" || le.Origin != "crowdsec:cscli/test/range" ||
		le.ExpiresIn <= 1800-60 || le.ExpiresIn > 1800 {
		t.Errorf("range entry %+v; want list crowdsec, origin crowdsec:cscli/test/range, 1740 to 1800 s left", le)
	}
	for _, a := range []netip.Addr{bad4, bad6, inRange} {
		if got := e.Send(a, frames); got != 0 {
			t.Errorf("%s under a ban: %d of %d frames delivered, want 0", a, got, frames)
		}
	}
	// The allow list wins: the decision on an allowed address (added
	// first, so the others' arrival shows it was read) is refused.
	if _, ok := verdicts(e)[src(allowIP)]; ok {
		t.Errorf("decision on %s (allowed by the config) was applied", allowIP)
	}
	if got := e.Send(allowIP, frames); got != frames {
		t.Errorf("allowed %s: %d of %d frames delivered", allowIP, got, frames)
	}
	if st := status(e); !st.Reachable || st.Decisions != 6 || st.Active != 5 {
		t.Errorf("status %+v; want reachable, 6 decisions held, 5 in force (one refused: allowed)", st)
	}

	// cscli decisions delete: delivered again.
	l.MustCSCLI("decisions", "delete", "-i", bad4.String())
	waitVerdict(t, e, l, src(bad4), false)
	if got := e.Send(bad4, frames); got != frames {
		t.Errorf("%s after cscli decisions delete: %d of %d frames delivered", bad4, got, frames)
	}

	// The LAPI stops: what was applied stays in force.
	l.Stop()
	agenttest.WaitFor(t, 30*time.Second, "the bouncer to see the LAPI down", func() bool { return !status(e).Reachable })
	for _, a := range []netip.Addr{bad6, inRange, gone} {
		if got := e.Send(a, frames); got != 0 {
			t.Errorf("%s with the LAPI down: %d of %d frames delivered, want 0 (no flush)", a, got, frames)
		}
	}
	// Meanwhile, on the same database through a LAPI the bouncer does not
	// reach (another port): one decision deleted, one added.
	port := l.Port
	l.MovePort(port + 1)
	l.Start()
	l.MustCSCLI("decisions", "delete", "-i", gone.String())
	l.MustCSCLI("decisions", "add", "-i", fresh.String(), "-d", "1h", "-R", "test/fresh")
	l.Stop()
	l.MovePort(port)
	l.Start()
	waitVerdict(t, e, l, src(fresh), true)
	waitVerdict(t, e, l, src(gone), false)
	for _, c := range []struct {
		a    netip.Addr
		want int
	}{{fresh, 0}, {gone, frames}, {bad6, 0}, {inRange, 0}} {
		if got := e.Send(c.a, frames); got != c.want {
			t.Errorf("after the LAPI's restart: %d of %d frames from %s delivered, want %d", got, frames, c.a, c.want)
		}
	}
	if st := status(e); !st.Reachable || st.Errors == 0 || st.Startups < 2 {
		t.Errorf("status after the outage %+v; want reachable, errors counted, a second startup pull", st)
	}
	ms := e.MetricsText()
	for _, m := range []string{"bulwark_crowdsec_pulls_total{result=\"error\"}", "bulwark_crowdsec_decisions_total{result=\"deleted\"}"} {
		if !strings.Contains(ms, m) {
			t.Errorf("metrics lack %s", m)
		}
	}
	var pulls int
	for _, r := range agenttest.AuditLog[struct {
		Who, What string
	}](e) {
		if r.Who == "crowdsec" && r.What == "crowdsec.pull" {
			pulls++
		}
	}
	if pulls == 0 {
		t.Error("no crowdsec.pull record in the audit log")
	}
}

// TestImport100k: 100,000 decisions imported with cscli are all applied;
// the time to enforce them, and to apply them at the agent's start, are
// reported.
func TestImport100k(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 decisions: not in -short")
	}
	const n = 100_000
	e := agenttest.NewEnv(t, agenttest.Options{DirPrefix: "bwk-csi-", Receiver: true, Sender: true})
	l := crowdsectest.Start(t, e.TB.Server)
	key := l.AddBouncer("bulwark-test")
	cfg := agenttest.Config{Maps: agenttest.Sizes{Verdicts: 1 << 18}, Extra: crowdsecBlock(l, key, "")}
	e.WriteConfig("", cfg)
	e.Start()
	// 198.18.64.0 + i: 100,000 addresses of 198.18.64.0-198.19.206.159.
	base := netip.MustParseAddr("198.18.64.0").As4()
	first := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	addr := func(i int) netip.Addr {
		v := first + uint32(i)
		return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	}
	addrs := make([]netip.Addr, n)
	for i := range addrs {
		addrs[i] = addr(i)
	}
	began := time.Now()
	if err := l.ImportIPs(addrs, "4h", "test/import", 10_000); err != nil {
		t.Fatal(err)
	}
	imported := time.Now()
	var st api.CrowdSecStatus
	agenttest.WaitFor(t, 5*time.Minute, "100,000 decisions in force", func() bool {
		if st = status(e); st.Active == n {
			return true
		}
		if e.Agents[0].Exited() {
			t.Fatalf("the agent exited: %s", agentLog(e))
		}
		return false
	})
	t.Logf("cscli decisions import of %d took %s; all enforced %s after it returned", n, imported.Sub(began).Round(time.Millisecond),
		time.Since(imported).Round(time.Millisecond))
	vs := verdicts(e)
	missing := 0
	for i := range n {
		if v, ok := vs[src(addr(i))]; !ok || v.Origin != "crowdsec:cscli-import/test/import" {
			missing++
		}
	}
	if missing != 0 {
		t.Errorf("%d of %d imported decisions not in force as crowdsec:cscli-import/test/import verdicts", missing, n)
	}
	for _, i := range []int{0, n / 2, n - 1} {
		if got := e.Send(addr(i), frames); got != 0 {
			t.Errorf("imported %s: %d of %d frames delivered, want 0", addr(i), got, frames)
		}
	}
	if got := e.Send(addr(n), frames); got != frames {
		t.Errorf("%s (not imported): %d of %d frames delivered", addr(n), got, frames)
	}
	// A restarted agent (its pins left behind and detached at exit) applies
	// the 100,000 in one startup pull.
	for _, a := range e.Agents {
		a.Kill()
	}
	restarted := time.Now()
	e.Start()
	agenttest.WaitFor(t, 5*time.Minute, "100,000 decisions in force after a restart", func() bool { return status(e).Active == n })
	st = status(e)
	t.Logf("restarted agent: %d decisions in force %s after its start; the last full pull was answered by the LAPI in %.2f s "+
		"and applied in %.3f s", n, time.Since(restarted).Round(time.Millisecond), st.LastStartupAnswerSeconds, st.LastStartupApplySeconds)
}

// TestSource: a verdict of Bulwark's engine reaches the LAPI as an alert
// with a decision, shown by cscli.
func TestSource(t *testing.T) {
	e := agenttest.NewEnv(t, agenttest.Options{DirPrefix: "bwk-css-", Receiver: true, Sender: true})
	l := crowdsectest.Start(t, e.TB.Server)
	key := l.AddBouncer("bulwark-test")
	pw := l.AddMachine("bulwark-edge")
	// The engine blocks a source whose packets are mostly over the rate
	// limit (10 pps, burst 10): ratelimit_drops is the only weight.
	engine := agenttest.RateLimitEngine(100)
	e.WriteConfig("", agenttest.Config{PPS: 10, Burst: 10, Extra: engine + crowdsecBlock(l, key,
		fmt.Sprintf("  machine       = \"bulwark-edge\"\n  password_file = %q\n", pw))})
	e.Start()
	flood := agenttest.Addr("198.18.80.8")
	// Bursts of 200 frames (at most 50) until the engine blocks it: a
	// score needs the flood seen over the engine's cycles.
	bursts := 0
	agenttest.WaitFor(t, 90*time.Second, "the engine's block of "+flood.String(), func() bool {
		if v, ok := verdicts(e)[src(flood)]; ok && v.Origin == "scorer" {
			return true
		}
		if bursts < 50 {
			bursts++
			e.Send(flood, 200)
		}
		return false
	})
	var alerts []struct {
		Scenario  string `json:"scenario"`
		Message   string `json:"message"`
		MachineID string `json:"machine_id"`
		Decisions []struct {
			Value, Type, Scenario string
		} `json:"decisions"`
	}
	agenttest.WaitFor(t, 60*time.Second, "the engine's verdict in cscli alerts list\n"+l.Logs(), func() bool {
		out, err := l.CSCLI("alerts", "list", "-o", "json", "-i", flood.String())
		return err == nil && json.Unmarshal([]byte(out), &alerts) == nil && len(alerts) > 0
	})
	a := alerts[0]
	if a.Scenario != "bulwark/scorer" || a.MachineID != "bulwark-edge" || !strings.Contains(a.Message, "ratelimit_drops=") ||
		len(a.Decisions) != 1 || a.Decisions[0].Value != flood.String() || a.Decisions[0].Type != "ban" {
		t.Errorf("alert %+v; want scenario bulwark/scorer from machine bulwark-edge, the score's components in the message, one ban on %s", a, flood)
	}
	out := l.MustCSCLI("decisions", "list", "-o", "json", "-i", flood.String())
	if !strings.Contains(out, `"scenario": "bulwark/scorer"`) {
		t.Errorf("cscli decisions list -i %s: %s; want the bulwark/scorer decision", flood, out)
	}
	if st := status(e); !st.Source || st.AlertsPushed == 0 {
		t.Errorf("status %+v; want source, alerts pushed", st)
	}
}
