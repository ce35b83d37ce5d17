// Package preflight tests `bulwark preflight` and the checks `bulwark run`
// makes at start, with the real binary on a veth in a throw-away namespace:
// a clean interface, one that another XDP program holds, and one that
// Bulwark's own pinned program holds.
package preflight

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/bulwark-filter/bulwark/bpf"
	"github.com/bulwark-filter/bulwark/test/agenttest"
)

func TestMain(m *testing.M) { os.Exit(agenttest.Main(m, "bwk-preflight-")) }

// report mirrors the JSON of `bulwark preflight --json`.
type report struct {
	Kernel string  `json:"kernel"`
	Checks []check `json:"checks"`
}

type check struct {
	Name     string `json:"name"`
	Status   string `json:"status"`
	Detail   string `json:"detail"`
	Fix      string `json:"fix"`
	Blocking bool   `json:"blocking"`
}

func (r report) find(t *testing.T, name string) check {
	t.Helper()
	for _, c := range r.Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no check %q in %+v", name, r.Checks)
	return check{}
}

// newEnv is a testbed with a small config on the server veth.
func newEnv(t *testing.T) *agenttest.Env {
	e := agenttest.NewEnv(t, agenttest.Options{DirPrefix: "bwk-pf-"})
	agenttest.WriteFile(t, e.CfgPath, fmt.Sprintf(`mode    = "monitor"
pin_dir = %q

interface %q {
  attach = "auto"
}

metrics {
  listen = ""
}

log {
  audit_file = %q
}

control {
  socket = %q
}

events {
  dir = %q
}

maps {
  sources        = 4096
  rule_buckets   = 4096
  verdicts       = 1024
  allow_hosts    = 1024
  allow_prefixes = 1024
  block_hosts    = 1024
  block_prefixes = 1024
  classes        = 256
  events_ring_kib = 64
}

reputation {
  mode = "off"
}
`, e.PinRoot, e.TB.ServerIf, e.Audit, e.Sock, filepath.Join(e.Dir, "drops")))
	return e
}

// preflight runs `bulwark preflight` in the server namespace (nsenter: the
// host's bpffs stays visible), bounded by a minute.
func preflight(t *testing.T, e *agenttest.Env, args ...string) agenttest.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	argv := append([]string{"--net=/var/run/netns/" + e.TB.Server, agenttest.Bin, "preflight", "--config", e.CfgPath}, args...)
	cmd := exec.CommandContext(ctx, "nsenter", argv...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := agenttest.Result{Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.Code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run preflight: %v", err)
	}
	return r
}

func preflightJSON(t *testing.T, e *agenttest.Env, wantCode int, args ...string) report {
	t.Helper()
	res := preflight(t, e, append([]string{"--json"}, args...)...)
	if res.Code != wantCode {
		t.Fatalf("preflight: %s; want exit %d", res, wantCode)
	}
	var r report
	if err := json.Unmarshal([]byte(res.Stdout), &r); err != nil {
		t.Fatalf("decode %q: %v", res.Stdout, err)
	}
	return r
}

func TestPreflightClean(t *testing.T) {
	e := newEnv(t)
	r := preflightJSON(t, e, 0)
	for _, c := range r.Checks {
		if c.Status == "fail" {
			t.Errorf("check failed on a clean veth: %+v", c)
		}
	}
	if r.Kernel == "" {
		t.Error("no kernel release")
	}
	iface := "interface " + e.TB.ServerIf
	if c := r.find(t, iface+": driver"); c.Detail != "veth" {
		t.Errorf("driver: %+v, want veth", c)
	}
	if c := r.find(t, iface+": xdp programs"); c.Status != "ok" || c.Detail != "none attached" {
		t.Errorf("xdp programs: %+v", c)
	}
	for _, name := range []string{"kernel version", "bpf features", "bpf_link for XDP", "kernel memory"} {
		if c := r.find(t, name); c.Status != "ok" {
			t.Errorf("%s: %+v, want ok on this VM (Linux 6.x, 4096-entry maps)", name, c)
		}
	}
	if c := r.find(t, "bpf features"); !strings.Contains(c.Detail, "bpf_xdp_load_bytes") || !strings.Contains(c.Detail, "RingBuf") {
		t.Errorf("bpf features does not list what the object uses: %+v", c)
	}

	// The attach test attaches in native mode (veth supports it) and
	// leaves nothing attached.
	r = preflightJSON(t, e, 0, "--attach-test")
	if c := r.find(t, iface+": native xdp"); c.Status != "ok" || !strings.HasPrefix(c.Detail, "supported") {
		t.Errorf("native xdp with --attach-test on veth: %+v", c)
	}
	if id, err := e.TB.ServerXDPProgID(); err != nil || id != 0 {
		t.Errorf("after --attach-test: program %d attached (%v), want none", id, err)
	}

	// The text form: one line per check and the summary.
	res := preflight(t, e)
	if res.Code != 0 || !strings.Contains(res.Stdout, "OK    interface "+e.TB.ServerIf+": xdp programs: none attached") ||
		!strings.Contains(res.Stdout, "0 fail") {
		t.Errorf("text: %s", res)
	}
}

// TestPreflightForeignXDP attaches another XDP program (the bare floor
// program) to the veth first: preflight must name it and fail, and bulwark
// run must refuse to start, leaving that program attached.
func TestPreflightForeignXDP(t *testing.T) {
	e := newEnv(t)
	var objs bpf.FloorObjects
	if err := bpf.LoadFloorObjects(&objs, nil); err != nil {
		t.Fatal(err)
	}
	defer objs.Close()
	err := e.TB.InServer(func() error {
		l, err := netlink.LinkByName(e.TB.ServerIf)
		if err != nil {
			return err
		}
		return netlink.LinkSetXdpFdWithFlags(l, objs.FloorDrop.FD(), 1<<1) // XDP_FLAGS_SKB_MODE
	})
	if err != nil {
		t.Fatalf("attach the floor program: %v", err)
	}
	foreign, err := e.TB.ServerXDPProgID()
	if err != nil || foreign == 0 {
		t.Fatalf("floor program not attached: id %d, %v", foreign, err)
	}

	r := preflightJSON(t, e, 1)
	c := r.find(t, "interface "+e.TB.ServerIf+": xdp programs")
	if c.Status != "fail" || !c.Blocking || !strings.Contains(c.Detail, "another XDP program") ||
		!strings.Contains(c.Detail, fmt.Sprintf("id %d,", foreign)) || !strings.Contains(c.Detail, "name floor_drop") ||
		!strings.Contains(c.Detail, "generic mode") || !strings.Contains(c.Fix, "xdp off") {
		t.Errorf("xdp programs: %+v; want a blocking failure naming program %d (floor_drop, generic mode)", c, foreign)
	}
	res := preflight(t, e)
	if res.Code != 1 || !strings.Contains(res.Stdout, "FAIL  interface "+e.TB.ServerIf+": xdp programs: another XDP program") ||
		!strings.Contains(res.Stdout, "fix: ") {
		t.Errorf("text: %s", res)
	}

	a := e.Spawn("")
	if !a.Wait(60 * time.Second) {
		t.Fatalf("bulwark run did not stop on the foreign program:\n%s", a.LogText())
	}
	if a.ExitCode() == 0 || !strings.Contains(a.LogText(), "preflight: interface "+e.TB.ServerIf+": xdp programs: another XDP program") {
		t.Errorf("bulwark run: exit %d, want non-zero with the preflight failure:\n%s", a.ExitCode(), a.LogText())
	}
	if id, err := e.TB.ServerXDPProgID(); err != nil || id != foreign {
		t.Errorf("after the refused run: program %d (%v), want the floor program %d untouched", id, err, foreign)
	}
	if _, err := os.Stat(e.PinRoot); !os.IsNotExist(err) {
		t.Errorf("refused run left pins at %s (%v)", e.PinRoot, err)
	}
}

// TestPreflightOwnProgram: Bulwark's own program, attached through its
// pinned link, is reported as such, and an agent restarts over it.
func TestPreflightOwnProgram(t *testing.T) {
	e := newEnv(t)
	a := e.Start()
	own, err := e.TB.ServerXDPProgID()
	if err != nil || own == 0 {
		t.Fatalf("agent attached nothing: %d, %v", own, err)
	}
	r := preflightJSON(t, e, 0)
	c := r.find(t, "interface "+e.TB.ServerIf+": xdp programs")
	if c.Status != "ok" || !strings.Contains(c.Detail, fmt.Sprintf("Bulwark's own program (id %d,", own)) {
		t.Errorf("xdp programs with the agent attached: %+v", c)
	}
	c = r.find(t, "kernel memory")
	if !strings.Contains(c.Detail, "1 of 1 interfaces have their maps pinned already") {
		t.Errorf("kernel memory with pinned maps: %+v", c)
	}
	// The memory the pinned maps use, as the kernel reports it, is what the estimate (held within 2 % of the
	// kernel's figures by loader/preflight's tests) gives at load, up to what it gives with every map full.
	var start, full, inUse float64
	if _, err := fmt.Sscanf(c.Detail, "%f MiB per interface at load", &start); err != nil {
		t.Fatalf("kernel memory detail %q: %v", c.Detail, err)
	}
	if m := regexp.MustCompile(`up to ([0-9.]+) MiB with every .*: ([0-9.]+) MiB in use`).FindStringSubmatch(c.Detail); m == nil {
		t.Errorf("kernel memory detail %q does not say the memory in use", c.Detail)
	} else {
		full, _ = strconv.ParseFloat(m[1], 64)
		inUse, _ = strconv.ParseFloat(m[2], 64)
		if inUse < 0.98*start || inUse > full*1.02 {
			t.Errorf("pinned maps use %.1f MiB, want between the estimate at load %.1f MiB (-2 %%) and full %.1f MiB", inUse, start, full)
		}
	}
	a.Kill()
	b := e.Start() // fail-static: the program stays; the new agent's preflight accepts it
	b.Kill()
}
