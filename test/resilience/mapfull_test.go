package resilience_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/test/agenttest"
)

// hosts is n addresses format(i) for i in 1..n.
func hosts(n int, format string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(format, i+1)
	}
	return out
}

// countPrefix is how many entries of es start with p.
func countPrefix(es []agenttest.ListEntry, p string) int {
	n := 0
	for _, x := range es {
		if strings.HasPrefix(x.CIDR, p) {
			n++
		}
	}
	return n
}

// TestMapFullRuntime fills the block and allow maps through the CLI: each
// overflow is a clear error (exit 4, HTTP 507, the list, the map and its
// size named), counted in bulwark_map_update_errors_total, changes nothing,
// and the rest of the policy stays enforced.
func TestMapFullRuntime(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.WriteConfig("", agenttest.Config{PPS: 100, Burst: 100, Block: []string{"198.18.66.6"},
		Maps: agenttest.Sizes{BlockHosts: 64, AllowHosts: 64, BlockPrefixes: 64, AllowPrefixes: 64}})
	a := e.Start()
	e.MustCLI("block", "add", "198.18.7.7")

	enforced := func(when string, fresh string) {
		t.Helper()
		if got := e.Send(agenttest.Addr("198.18.7.7"), 20); got != 0 {
			t.Errorf("%s: %d of 20 frames from the runtime-blocked 198.18.7.7 delivered, want 0", when, got)
		}
		if got := e.Send(agenttest.Addr("198.18.66.6"), 20); got != 0 {
			t.Errorf("%s: %d of 20 frames from the config-blocked 198.18.66.6 delivered, want 0", when, got)
		}
		if got, ok := e.SendFlood(agenttest.Addr(fresh), 500, 100, 100); !ok {
			t.Errorf("%s: %d of 500 flood frames from %s delivered, want about 100 (the limit's burst)", when, got, fresh)
		}
	}

	var notes []string
	for i, c := range []struct {
		list, what, metric string
		entries            []string
		prefix             string // of the entries in `list list`
	}{
		{"block", "IPv4 hosts", "block", hosts(100, "198.18.110.%d"), "198.18.110."},
		{"block", "IPv6 hosts", "block", hosts(100, "2001:2:0:110::%x"), "2001:2:0:110::"},
		{"allow", "IPv4 hosts", "allow", hosts(100, "198.18.120.%d"), "198.18.120."},
		{"block", "IPv4 prefixes", "block", hosts(100, "198.19.%d.0/24"), "198.19."},
		{"allow", "IPv6 prefixes", "allow", hosts(100, "2001:2:%x::/64"), "2001:2:"},
	} {
		name := c.list + " " + c.what
		before := e.Metrics().Get("bulwark_map_update_errors_total", "map", c.metric)
		r := e.CLI(append([]string{c.list, "add"}, c.entries...)...)
		msg := strings.ToLower(r.Stderr)
		if r.Code != 4 || !strings.Contains(r.Stderr, "HTTP 507") || !strings.Contains(msg, c.list+" list") ||
			!strings.Contains(msg, strings.ToLower(c.what)) || !strings.Contains(msg, "64 entries") {
			t.Errorf("%s: 100 entries into a map of 64: %s; want exit 4 (refused), HTTP 507, naming the %s list, %s and the size 64", name, r, c.list, c.what)
		}
		after := e.Metrics().Get("bulwark_map_update_errors_total", "map", c.metric)
		if after != before+1 {
			t.Errorf("%s: bulwark_map_update_errors_total{map=%q} %v -> %v, want +1", name, c.metric, before, after)
		}
		// A refused request changes nothing: no part of it is in force.
		left := countPrefix(e.List(c.list), c.prefix)
		t.Logf("%s: %q, %d of 100 left in the list", name, strings.TrimSpace(r.Stderr), left)
		notes = append(notes, fmt.Sprintf("%s %d", name, left))
		if left != 0 {
			t.Errorf("%s: the refused `%s add` (HTTP 507) left %d of its 100 entries in the %s list (the audit log says error): a partial write", name, c.list, left, c.list)
		}
		enforced("after "+name+" overflowed", fmt.Sprintf("198.18.%d.3", 30+i))
		// Clean up what a partial write left, so the next case starts empty.
		if left > 0 {
			e.MustCLI(append([]string{c.list, "del"}, c.entries...)...)
		}
	}
	summary(t, "5 overflows of maps of 64, each exit 4, HTTP 507 naming list+map size, map_update_errors +1, policy enforced; entries of the refused request left in force: %s", strings.Join(notes, ", "))
	if a.Exited() {
		t.Fatalf("agent exited: %v", a.Err)
	}
}

// TestMapFullFeed: a block feed bigger than the block map is a feed error
// (kind apply, counted); the last good version stays in force, nothing of
// the failed update is, and the agent keeps running.
func TestMapFullFeed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	small := filepath.Join(e.Dir, "feed-small.txt")
	big := filepath.Join(e.Dir, "feed-big.txt")
	agenttest.WriteFile(t, small, strings.Join(hosts(10, "198.18.70.%d"), "\n")+"\n")
	agenttest.WriteFile(t, big, strings.Join(hosts(200, "198.18.80.%d"), "\n")+"\n")
	feed := func(path string) string {
		return fmt.Sprintf("\nfeed \"big\" {\n  path   = %q\n  format = \"plain\"\n  action = \"block\"\n}\n", path)
	}
	c := agenttest.Config{PPS: 100, Burst: 100, Block: []string{"198.18.66.6"}, Maps: agenttest.Sizes{BlockHosts: 64}}
	c.Extra = feed(small)
	e.WriteConfig("", c)
	a := e.Start()
	agenttest.WaitFor(t, 10*time.Second, "the small feed applied", func() bool { return countPrefix(e.List("block"), "198.18.70.") == 10 })

	c.Extra = feed(big)
	e.WriteConfig("", c)
	e.MustCLI("reload")
	if got := e.WaitMetric(10*time.Second, 1, "bulwark_feed_errors_total", "feed", "big", "kind", "apply"); got != 1 {
		t.Fatalf("feed apply errors %v, want 1 (200 entries into a block map of 64)", got)
	}
	m := e.Metrics()
	es := e.List("block")
	good, partial := countPrefix(es, "198.18.70."), countPrefix(es, "198.18.80.")
	summary(t, "feed of 200 into block_hosts 64: feed_errors{kind=apply} %v, map_update_errors{map=block} %v; last good %d/10 kept, %d entries of the failed update left in force",
		m.Get("bulwark_feed_errors_total", "feed", "big", "kind", "apply"), m.Get("bulwark_map_update_errors_total", "map", "block"), good, partial)
	if m.Get("bulwark_map_update_errors_total", "map", "block") < 1 {
		t.Errorf("bulwark_map_update_errors_total{map=block} not incremented by the failed feed")
	}
	if good != 10 {
		t.Errorf("%d of the last good feed's 10 entries left, want all 10", good)
	}
	if got := e.Send(agenttest.Addr("198.18.70.5"), 20); got != 0 {
		t.Errorf("%d of 20 frames from a source of the last good feed delivered, want 0", got)
	}
	if partial != 0 {
		t.Errorf("%d entries of the failed (too big) feed update are in the block list: a partial update is in force and fills the map", partial)
	}
	if got := e.Send(agenttest.Addr("198.18.66.6"), 20); got != 0 {
		t.Errorf("%d of 20 frames from the config-blocked source delivered, want 0", got)
	}
	if got, ok := e.SendFlood(agenttest.Addr("198.18.31.3"), 500, 100, 100); !ok {
		t.Errorf("%d of 500 flood frames delivered, want about 100", got)
	}
	// The block map still has room for the operator.
	if r := e.CLI("block", "add", "198.18.7.7"); r.Code != 0 {
		t.Errorf("block add after the failed feed: %s; want room in the map (64 - 11 in use)", r)
	}
	if a.Exited() {
		t.Fatalf("agent exited: %v\n%s", a.Err, a.LogText())
	}
}

// TestMapFullConfig: a config whose lists do not fit the maps fails `bulwark
// run` at start, and a reload to it fails, with an error naming the list,
// the map and its size; the failed reload leaves the running policy whole.
func TestMapFullConfig(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tooBig := agenttest.Config{PPS: 1000, Burst: 1000, Block: append([]string{"198.18.66.6"}, hosts(100, "198.18.110.%d")...), Maps: agenttest.Sizes{BlockHosts: 64}}

	t.Run("start", func(t *testing.T) {
		e.WriteConfig("", tooBig)
		a := e.Spawn("")
		if !a.Wait(30 * time.Second) {
			t.Fatalf("agent with a block list of 101 hosts and block_hosts = 64 still running after 30 s")
		}
		log := strings.ToLower(a.LogText())
		if a.ExitCode() == 0 || !strings.Contains(log, "block list") || !strings.Contains(log, "ipv4 hosts") || !strings.Contains(log, "64 entries") {
			t.Errorf("bulwark run: exit %d, log:\n%s\nwant a failure naming the block list, IPv4 hosts and the size 64", a.ExitCode(), a.LogText())
		}
		summary(t, "bulwark run exit %d: %q", a.ExitCode(), lastLine(a.LogText()))
	})

	t.Run("reload", func(t *testing.T) {
		e.WriteConfig("", agenttest.Config{PPS: 100, Burst: 100, Block: []string{"198.18.66.6"}, Maps: agenttest.Sizes{BlockHosts: 64}})
		a := e.Start()
		e.WriteConfig("", tooBig)
		r := e.CLI("reload")
		msg := strings.ToLower(r.Stderr + r.Stdout)
		if r.Code != 1 || !strings.Contains(msg, "block list") || !strings.Contains(msg, "64 entries") {
			t.Errorf("reload to a config whose block list exceeds the map: %s; want exit 1 naming the block list and the size 64", r)
		}
		m := e.Metrics()
		notOK := m.Get("bulwark_config_reloads_total", "result", "error") + m.Get("bulwark_config_reloads_total", "result", "rejected")
		if notOK != 1 || m.Get("bulwark_config_reloads_total", "result", "ok") != 0 {
			t.Errorf("bulwark_config_reloads_total: ok %v, error+rejected %v; want 0 and 1", m.Get("bulwark_config_reloads_total", "result", "ok"), notOK)
		}
		// The running policy is whole: the old limit (100 pps, burst 100),
		// not the failed config's (1000, burst 1000), and no entry of the
		// failed config's list.
		got, ok := e.SendFlood(agenttest.Addr("198.18.32.3"), 500, 100, 100)
		left := countPrefix(e.List("block"), "198.18.110.")
		summary(t, "reload exit %d %q; after it: flood %d of 500 delivered (old burst 100, failed config's 1000), %d of the failed config's entries in force",
			r.Code, strings.TrimSpace(r.Stderr), got, left)
		if !ok {
			t.Errorf("after the failed reload: %d of 500 flood frames delivered, want about 100 (the running config's burst); the failed config's limits (burst 1000) were applied", got)
		}
		if left != 0 {
			t.Errorf("after the failed reload: %d entries of the failed config's block list are in force", left)
		}
		if got := e.Send(agenttest.Addr("198.18.66.6"), 20); got != 0 {
			t.Errorf("%d of 20 frames from the config-blocked source delivered after the failed reload", got)
		}
		if a.Exited() {
			t.Fatalf("agent exited: %v", a.Err)
		}
	})
}

func lastLine(s string) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return l[len(l)-1]
}

// TestVerdictCap: with max_verdicts = 2, five sources each scored into a
// block (a score feed of weight 90) hit the engine's cap: the cap is
// counted, only two verdicts are in force, the agent keeps running.
func TestVerdictCap(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	bad := filepath.Join(e.Dir, "bad.txt")
	agenttest.WriteFile(t, bad, strings.Join(hosts(5, "198.18.90.%d"), "\n")+"\n")
	e.WriteConfig("", agenttest.Config{PPS: 100, Burst: 100, Maps: agenttest.Sizes{Verdicts: 16}, Extra: fmt.Sprintf(`
reputation {
  mode         = "enforce"
  interval     = "200ms"
  max_verdicts = 2
}

feed "bad" {
  path   = %q
  format = "plain"
  action = "score"
  weight = 90
}
`, bad)})
	a := e.Start()
	srcs := hosts(5, "198.18.90.%d")
	var caps, active float64
	// Polled until the cap shows, for at most a minute (a busy machine
	// scores late).
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		for _, s := range srcs {
			e.Snd.Send([][]byte{e.Frame(agenttest.Addr(s), 1)}, 5, time.Now().Add(time.Second), 0)
		}
		time.Sleep(300 * time.Millisecond)
		m := e.Metrics()
		caps, active = m.Get("bulwark_verdict_cap_hits_total"), m.Get("bulwark_verdicts_active")
		if caps >= 1 && active == 2 {
			break
		}
	}
	summary(t, "max_verdicts 2, 5 sources scored to block: verdict_cap_hits %v, verdicts active %v", caps, active)
	if caps < 1 {
		t.Errorf("bulwark_verdict_cap_hits_total %v, want >= 1", caps)
	}
	if active != 2 {
		t.Errorf("bulwark_verdicts_active %v, want 2 (max_verdicts)", active)
	}
	if a.Exited() {
		t.Fatalf("agent exited: %v\n%s", a.Err, a.LogText())
	}
}
