package agent_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/agent/api"
	"github.com/bulwark-filter/bulwark/test/agenttest"
)

// ipServer runs `ip -n <server namespace> args...`, which must succeed.
func (e *env) ipServer(args ...string) {
	e.T.Helper()
	if out, err := exec.Command("ip", append([]string{"-n", e.TB.Server}, args...)...).CombinedOutput(); err != nil {
		e.T.Fatalf("ip %v: %v: %s", args, err, out)
	}
}

// status is `bulwark status --json`, which must succeed.
func (e *env) status() api.Status {
	e.T.Helper()
	var st api.Status
	if out := e.MustCLI("status", "--json"); json.Unmarshal([]byte(out), &st) != nil {
		e.T.Fatalf("status --json: %q", out)
	}
	return st
}

// writeIfaceConfig writes the env's config with the interface block iface
// (its HCL) in place of the server veth's.
func (e *env) writeIfaceConfig(iface string, c agenttest.Config) {
	e.T.Helper()
	text := e.Render(c)
	veth := fmt.Sprintf("interface %q {\n  attach = \"native\"\n}\n", e.TB.ServerIf)
	if !strings.Contains(text, veth) {
		e.T.Fatalf("rendered config has no %q", veth)
	}
	agenttest.WriteFile(e.T, e.CfgPath, strings.Replace(text, veth, iface, 1))
}

// readyz is the HTTP status of the agent's /readyz.
func (e *env) readyz() int {
	e.T.Helper()
	resp, err := e.ServerClient(10 * time.Second).Get("http://" + e.MetricsAddr + "/readyz")
	if err != nil {
		e.T.Fatalf("readyz: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestInterfaceAutoWaitsForDefaultRoute: interface "auto" on a node with no
// default route does not end the agent: it waits, says so in its status, in
// bulwark_interface_missing and /readyz, answers reload, and attaches to the
// default route's interface once there is one, filtering on it.
func TestInterfaceAutoWaitsForDefaultRoute(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	blocked := agenttest.Addr("198.18.9.9")
	e.writeIfaceConfig("interface \"auto\" {\n  attach = \"native\"\n}\n", agenttest.Config{Block: []string{blocked.String()}})
	// config check in the server namespace, which has no default route
	out, err := exec.Command("nsenter", "--net=/var/run/netns/"+e.TB.Server, agenttest.Bin, "config", "check", e.CfgPath).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "No interface matches") {
		t.Errorf("config check with no default route: %v: %s, want ok with a warning", err, out)
	}
	a := e.Start()

	st := e.status()
	if len(st.Missing) != 1 || st.Missing[0].Config != "auto" || !strings.Contains(st.Missing[0].Detail, "no default route") ||
		len(st.Interfaces) != 0 {
		t.Fatalf("status while waiting: %+v, want auto missing for want of a default route, no interface", st)
	}
	if out := e.MustCLI("status"); !strings.Contains(out, `WAITING: interface "auto"`) {
		t.Errorf("status text while waiting: %q, want a WAITING line", out)
	}
	if got := e.Metrics().Get("bulwark_interface_missing", "interface", "auto"); got != 1 {
		t.Errorf("bulwark_interface_missing{interface=auto} = %v while waiting, want 1", got)
	}
	if code := e.readyz(); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz while waiting: HTTP %d, want 503", code)
	}
	if out := e.MustCLI("reload"); !strings.Contains(out, "reloaded") {
		t.Errorf("reload while waiting: %q, want reloaded", out)
	}
	if r := e.CLI("block", "add", "198.18.9.10"); r.Code != 4 || !strings.Contains(r.Stderr, "waiting for its interfaces") {
		t.Errorf("block add while waiting: %s, want it refused (exit 4) saying the agent waits", r)
	}
	if a.Exited() {
		t.Fatalf("the agent exited while waiting:\n%s", a.LogText())
	}

	// A default route through the veth (it leads only to the client namespace).
	e.ipServer("route", "add", "default", "dev", e.TB.ServerIf)
	agenttest.WaitFor(t, time.Minute, "the agent to attach", func() bool {
		st := e.CLI("status", "--json")
		return st.Code == 0 && strings.Contains(st.Stdout, `"name": "`+e.TB.ServerIf+`"`)
	})
	if st := e.status(); len(st.Missing) != 0 || len(st.Interfaces) != 1 || st.Interfaces[0].Name != e.TB.ServerIf {
		t.Fatalf("status after the route: %+v, want %s attached and nothing missing", st, e.TB.ServerIf)
	}
	if got := e.Metrics().Get("bulwark_interface_missing", "interface", "auto"); got != 0 {
		t.Errorf("bulwark_interface_missing{interface=auto} = %v once attached, want 0", got)
	}
	if code := e.readyz(); code != http.StatusOK {
		t.Errorf("/readyz once attached: HTTP %d, want 200", code)
	}
	if got := e.Send(blocked, 10); got != 0 {
		t.Errorf("%d of 10 frames from the blocked %s arrived, want 0: the filter is not on the route's interface", got, blocked)
	}
	if got := e.Send(agenttest.Addr("198.18.9.11"), 10); got != 10 {
		t.Errorf("%d of 10 frames from an unlisted source arrived, want 10", got)
	}
}

// TestInterfacePatternAttachesWhenItAppears: a pattern that matches no
// interface waits; an interface created later that matches it is attached
// to; config check rejects a bad pattern.
func TestInterfacePatternAttachesWhenItAppears(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.writeIfaceConfig("interface \"bwkd[0-9]\" {\n  attach = \"auto\"\n}\n", agenttest.Config{})
	a := e.Start()
	if st := e.status(); len(st.Missing) != 1 || st.Missing[0].Config != "bwkd[0-9]" || !strings.Contains(st.Missing[0].Detail, "no interface matches") {
		t.Fatalf("status while waiting: %+v, want bwkd[0-9] missing", st)
	}
	if got := e.Metrics().Get("bulwark_interface_missing", "interface", "bwkd[0-9]"); got != 1 {
		t.Errorf("bulwark_interface_missing = %v while waiting, want 1", got)
	}
	// A veth pair of names that do not match, then one of which one does.
	e.ipServer("link", "add", "bwkdx", "type", "veth", "peer", "name", "bwkdy")
	e.ipServer("link", "add", "bwkd3", "type", "veth", "peer", "name", "bwkp3")
	e.ipServer("link", "set", "bwkd3", "up")
	e.ipServer("link", "set", "bwkp3", "up")
	agenttest.WaitFor(t, time.Minute, "the agent to attach to bwkd3", func() bool {
		r := e.CLI("status", "--json")
		return r.Code == 0 && strings.Contains(r.Stdout, `"name": "bwkd3"`)
	})
	st := e.status()
	if len(st.Missing) != 0 || len(st.Interfaces) != 1 || st.Interfaces[0].Name != "bwkd3" {
		t.Errorf("status after bwkd3 appeared: %+v, want bwkd3 alone attached", st)
	}
	if a.Exited() {
		t.Fatalf("the agent exited:\n%s", a.LogText())
	}
	a.Kill()
	if r := agenttest.RunBin(t, "detach", "--interface", "bwkd3", "--pin-dir", e.PinRoot); r.Code != 0 {
		t.Errorf("detach bwkd3: %s", r)
	}

	e.writeIfaceConfig("interface \"bwkd[0-\" {}\n", agenttest.Config{})
	if r := e.CLI("config", "check", e.CfgPath); r.Code != 1 || !strings.Contains(r.Stderr, "Invalid interface pattern") {
		t.Errorf("config check of a bad pattern: %s, want exit 1 and Invalid interface pattern", r)
	}
}
