package agent_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/test/agenttest"
)

// capBPF is CAP_BPF's bit in /proc/PID/status's capability masks.
const capBPF = uint64(1) << 39

// TestCapabilitiesDropped: once attached, the agent keeps only CAP_BPF (on
// every thread) with no_new_privs set, and everything it does at run time
// still works: a reload, a run-time block, metrics.
func TestCapabilitiesDropped(t *testing.T) {
	e := newEnv(t)
	e.WriteConfig("", agenttest.Config{PPS: 1000, Burst: 1000})
	a := e.Start()
	if got := e.WaitMetric(5*time.Second, 1, "bulwark_privileges_dropped"); got != 1 {
		t.Fatalf("bulwark_privileges_dropped = %v:\n%s", got, a.LogText())
	}
	pid := a.Cmd.Process.Pid
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		st := readStatus(t, fmt.Sprintf("/proc/%d/task/%s/status", pid, task.Name()))
		for _, k := range []string{"CapEff", "CapPrm"} {
			v, err := strconv.ParseUint(st[k], 16, 64)
			if err != nil || v != capBPF {
				t.Errorf("thread %s: %s = %s, want only CAP_BPF (%x)", task.Name(), k, st[k], capBPF)
			}
		}
		if st["NoNewPrivs"] != "1" {
			t.Errorf("thread %s: NoNewPrivs = %q", task.Name(), st["NoNewPrivs"])
		}
	}
	// Still works without the rest.
	e.WriteConfig("", agenttest.Config{PPS: 1000, Burst: 1000, Block: []string{"198.18.66.0/24"}})
	if out := e.MustCLI("reload"); !strings.Contains(out, "reloaded") {
		t.Errorf("reload: %q", out)
	}
	e.MustCLI("block", "add", "198.18.1.77", "--ttl", "1m")
	if got := e.Send(agenttest.Addr("198.18.66.3"), 20); got != 0 {
		t.Errorf("%d frames from a source blocked by the reloaded config delivered", got)
	}
	if got := e.Send(agenttest.Addr("198.18.1.77"), 20); got != 0 {
		t.Errorf("%d frames from a run-time blocked source delivered", got)
	}
	if got := e.Send(agenttest.Addr("198.18.1.78"), 20); got != 20 {
		t.Errorf("%d of 20 frames from an ordinary source delivered", got)
	}
}

func readStatus(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}
