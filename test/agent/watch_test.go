package agent_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/test/agenttest"
)

// TestWatchConfigDir runs the agent on a config directory with watch_config on: a changed file is applied with no
// reload asked for; a file that makes the config invalid (a key set in two files) is rejected, audited and
// counted, and the running policy stays; removing it applies the config again; with watch_config off, a change
// waits for a reload.
func TestWatchConfigDir(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := filepath.Join(e.Dir, "conf.d")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dir, "10-base.hcl")
	watch := filepath.Join(dir, "20-watch.hcl")
	e.WriteConfig(base, agenttest.Config{})
	agenttest.WriteFile(t, watch, "watch_config = true\n")
	a := e.Spawn(dir)
	e.WaitReady(a, func() bool { return e.CLI("status", "--json").Code == 0 })

	src := agenttest.Addr("198.18.9.9")
	if got := e.Send(src, 10); got != 10 {
		t.Fatalf("before any change: %d of 10 frames from %s delivered, want 10", got, src)
	}
	// A file changed: applied by the watcher.
	e.WriteConfig(base, agenttest.Config{Block: []string{"198.18.9.9"}})
	if got := e.WaitMetric(60*time.Second, 1, "bulwark_config_reloads_total", "result", "ok"); got != 1 {
		t.Fatalf("after a change of %s: ok reloads %v, want 1 (the watcher's)\n%s", base, got, a.LogText())
	}
	if got := e.Send(src, 20); got != 0 {
		t.Errorf("after the watcher's reload: %d of 20 frames from the newly blocked %s delivered, want 0", got, src)
	}

	// A file added that sets mode again: rejected; the policy stays.
	bad := filepath.Join(dir, "30-monitor.hcl")
	agenttest.WriteFile(t, bad, "mode = \"monitor\"\n")
	if got := e.WaitMetric(60*time.Second, 1, "bulwark_config_reloads_total", "result", "rejected"); got != 1 {
		t.Fatalf("after %s was added: rejected reloads %v, want 1\n%s", bad, got, a.LogText())
	}
	if got := e.Metrics().Get("bulwark_config_last_reload_successful"); got != 0 {
		t.Errorf("bulwark_config_last_reload_successful = %v after a rejected reload, want 0", got)
	}
	if got := e.Send(src, 20); got != 0 {
		t.Errorf("after the rejected reload: %d of 20 frames from the blocked %s delivered, want 0 (policy kept)", got, src)
	}
	var rejected []auditRecord
	for _, r := range e.auditLog() {
		if r.What == "reload" && r.Result == "rejected" {
			rejected = append(rejected, r)
		}
	}
	if len(rejected) != 1 || rejected[0].Who != "watch" || !strings.Contains(rejected[0].Detail, "30-monitor.hcl:1:1: Duplicate argument") ||
		!strings.Contains(rejected[0].Detail, "10-base.hcl:1,") {
		t.Errorf("audit log's rejected reloads: %+v, want one by watch naming both files", rejected)
	}

	// The file removed and the watch turned off in one change: applied, and the rejected config was not tried
	// again in between.
	if err := os.Remove(bad); err != nil {
		t.Fatal(err)
	}
	agenttest.WriteFile(t, watch, "watch_config = false\n")
	if got := e.WaitMetric(60*time.Second, 2, "bulwark_config_reloads_total", "result", "ok"); got != 2 {
		t.Fatalf("after %s was removed: ok reloads %v, want 2\n%s", bad, got, a.LogText())
	}
	m := e.Metrics()
	if got := m.Get("bulwark_config_reloads_total", "result", "rejected"); got != 1 {
		t.Errorf("rejected reloads %v, want still 1: a rejected config is not retried until it changes", got)
	}
	if got := m.Get("bulwark_config_last_reload_successful"); got != 1 {
		t.Errorf("bulwark_config_last_reload_successful = %v after the fix, want 1", got)
	}

	// Watch off: a change is not applied by itself (checked after several polls), only by a reload.
	e.WriteConfig(base, agenttest.Config{})
	time.Sleep(8 * time.Second) // four polls: a watcher still on would have reloaded (it can only pass wrongly, never fail)
	if got := e.Metrics().Get("bulwark_config_reloads_total", "result", "ok"); got != 2 {
		t.Errorf("with watch_config = false: ok reloads %v after a change, want still 2", got)
	}
	if r := e.CLI("reload"); r.Code != 0 {
		t.Fatalf("bulwark reload: %s", r)
	}
	if got := e.Send(src, 10); got != 10 {
		t.Errorf("after the reload: %d of 10 frames from the unblocked %s delivered, want 10", got, src)
	}
	var who []string
	for _, r := range e.auditLog() {
		if r.What == "reload" {
			who = append(who, r.Who+":"+r.Result)
		}
	}
	if strings.Join(who, " ") != "watch:ok watch:rejected watch:ok cli:ok" {
		t.Errorf("audit log's reloads: %v, want watch:ok watch:rejected watch:ok cli:ok", who)
	}
}
