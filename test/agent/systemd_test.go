package agent_test

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/bulwark-filter/bulwark/test/agenttest"
)

// unitReload is the ExecReload= command line of the systemd unit, with the
// installed binary replaced by the one under test and the env's socket (the
// unit's uses the default one, which configs/deploy_test.go checks).
func (e *env) unitReload() []string {
	e.T.Helper()
	const unit, installed = "../../configs/systemd/bulwark.service", "/usr/local/bin/bulwark"
	src, err := os.ReadFile(unit)
	if err != nil {
		e.T.Fatal(err)
	}
	var argv []string
	for _, line := range strings.Split(string(src), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "ExecReload="); ok {
			if argv != nil {
				e.T.Fatalf("%s: two ExecReload= lines", unit)
			}
			argv = strings.Fields(v)
		}
	}
	if len(argv) == 0 || argv[0] != installed {
		e.T.Fatalf("%s: ExecReload=%q does not run %s", unit, strings.Join(argv, " "), installed)
	}
	return append([]string{"--socket", e.Sock}, argv[1:]...)
}

// TestSystemdExecReload runs the unit's ExecReload= command against a
// running agent, as `systemctl reload` would: a broken config fails it
// (exit 1, with the diagnostic) and the running config stays in force, in
// the lists and on the wire; a good config then succeeds and takes effect.
func TestSystemdExecReload(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	good := agenttest.Config{PPS: 1000, Burst: 1000, Block: []string{"198.18.66.0/24"}}
	e.WriteConfig("", good)
	e.Start()
	reload := e.unitReload()
	blocked := func() []string {
		var cidrs []string
		for _, x := range e.List("block") {
			cidrs = append(cidrs, x.CIDR)
		}
		slices.Sort(cidrs)
		return cidrs
	}
	if got := blocked(); !slices.Equal(got, []string{"198.18.66.0/24"}) {
		t.Fatalf("block list at start: %v", got)
	}

	next := good
	next.Block = []string{"198.18.66.0/24", "198.18.77.0/24"}
	agenttest.WriteFile(t, e.CfgPath, e.Render(next)+"\nbogus_key = 1\n")
	r := agenttest.RunBin(t, reload...)
	if r.Code != 1 || !strings.Contains(r.Stderr, "bogus_key") || !strings.Contains(r.Stderr, e.CfgPath+":") {
		t.Fatalf("ExecReload on a broken config: %s; want exit 1 with the file:line diagnostic naming bogus_key", r)
	}
	if got := blocked(); !slices.Equal(got, []string{"198.18.66.0/24"}) {
		t.Errorf("block list after the rejected reload: %v, want the running config's [198.18.66.0/24]", got)
	}
	if got := e.Send(agenttest.Addr("198.18.66.9"), 20); got != 0 {
		t.Errorf("%d of 20 frames from the running config's blocked /24 delivered after the rejected reload, want 0", got)
	}
	if got := e.Send(agenttest.Addr("198.18.77.9"), 20); got != 20 {
		t.Errorf("%d of 20 frames from the rejected config's /24 delivered, want 20", got)
	}
	if got := e.Metrics().Get("bulwark_config_reloads_total", "result", "rejected"); got != 1 {
		t.Errorf("bulwark_config_reloads_total{result=rejected} = %v, want 1", got)
	}

	e.WriteConfig("", next)
	if r := agenttest.RunBin(t, reload...); r.Code != 0 || !strings.Contains(r.Stdout, "reloaded") {
		t.Fatalf("ExecReload on a good config: %s; want exit 0, reloaded", r)
	}
	if got := blocked(); !slices.Equal(got, []string{"198.18.66.0/24", "198.18.77.0/24"}) {
		t.Errorf("block list after the good reload: %v", got)
	}
	if got := e.Send(agenttest.Addr("198.18.77.9"), 20); got != 0 {
		t.Errorf("%d of 20 frames from the newly blocked /24 delivered, want 0", got)
	}
}
