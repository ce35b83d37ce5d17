package agent_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/bulwark-filter/bulwark/agent/api"
	"github.com/bulwark-filter/bulwark/test/agenttest"
)

// TestSignatures runs the agent with a signature in its config, then
// manages signatures with the CLI: frames the signatures match are dropped
// (or limited) before any per-source state, counted per signature in the
// metrics and the list, and every change is audited. The test frames are
// UDP from port 40000 to agenttest.UDPPort, TTL 64, 92 bytes of IP.
func TestSignatures(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sig := fmt.Sprintf(`
signature "cfg-udp" {
  match = "protocol=udp dst_port=%d ttl=60-64 ip_length=92 src_port=40000"
}
`, agenttest.UDPPort)
	e.WriteConfig("", agenttest.Config{Extra: sig})
	e.Start()

	src := agenttest.Addr("198.18.1.10")
	if got := e.Send(src, 20); got != 0 {
		t.Errorf("config signature: %d of 20 frames arrived, want 0", got)
	}
	m := e.Metrics()
	if v := m.Get("bulwark_signature_dropped_packets_total", "signature", "cfg-udp", "origin", "config"); v != 20 {
		t.Errorf("bulwark_signature_dropped_packets_total{cfg-udp} = %v, want 20", v)
	}
	if v := m.Get("bulwark_packets_total", "action", "drop", "reason", "signature"); v != 20 {
		t.Errorf("bulwark_packets_total{drop,signature} = %v, want 20", v)
	}
	// A signature drop creates no per-source state (other sources, such as
	// the client's IPv6 neighbour discovery, may have some).
	var why api.Why
	if err := json.Unmarshal([]byte(e.MustCLI("why", src.String(), "--json")), &why); err != nil {
		t.Fatal(err)
	}
	if why.Tracked {
		t.Errorf("%s is tracked after 20 frames that a signature dropped", src)
	}
	list := func() map[string]api.Signature {
		var ss []api.Signature
		if err := json.Unmarshal([]byte(e.MustCLI("signatures", "list", "--json")), &ss); err != nil {
			t.Fatal(err)
		}
		out := map[string]api.Signature{}
		for _, s := range ss {
			out[s.Name] = s
		}
		return out
	}
	if s := list()["cfg-udp"]; s.Origin != "config" || s.Dropped != 20 || s.Matched != 20 || s.Action != "drop" {
		t.Errorf("signatures list: %+v, want cfg-udp from config with 20 matched and dropped", s)
	}
	if r := e.CLI("signatures", "del", "cfg-udp"); r.Code == 0 || !strings.Contains(r.Stderr, "in the config") {
		t.Errorf("signatures del of a config signature: %s; want it refused", r)
	}

	// Without it in the config, a reload removes it and the frames pass.
	e.WriteConfig("", agenttest.Config{})
	e.MustCLI("reload")
	if _, ok := list()["cfg-udp"]; ok {
		t.Errorf("cfg-udp still listed after a reload without it")
	}
	if got := e.Send(src, 10); got != 10 {
		t.Errorf("after the reload: %d of 10 frames arrived, want 10", got)
	}

	// Bad input: a precise error and nothing changes.
	for args, want := range map[string]string{
		"bad ttl=300":                      `ttl: "300": want n or lo-hi`,
		"Bad ttl=3":                        "signature name",
		"bad protocol=udp --action limit":  "pps and burst above 0",
		"bad colour=red":                   "unknown key",
		"bad ttl=3 --action drop --pps 10": "pps and burst are for action limit",
	} {
		r := e.CLI(append([]string{"signatures", "add"}, strings.Fields(args)...)...)
		if r.Code == 0 || !strings.Contains(r.Stderr, want) {
			t.Errorf("signatures add %s: %s; want an error with %q", args, r, want)
		}
	}
	if n := len(list()); n != 0 {
		t.Errorf("%d signatures after refused adds, want 0", n)
	}

	// A limit: one bucket of burst 5, 1 pps for every matching frame, whatever its source.
	e.MustCLI("signatures", "add", "cli-limit", "protocol=udp", "ip_length=92", "--action", "limit", "--pps", "1",
		"--burst", "5", "--ttl", "1h")
	if got, ok := e.SendFlood(agenttest.Addr("198.18.1.11"), 20, 5, 1); !ok {
		t.Errorf("limit 1/s burst 5: %d of 20 frames arrived", got)
	}
	s := list()["cli-limit"]
	if s.Origin != "cli" || s.Matched != 20 || s.Dropped < 13 || s.Dropped > 15 || s.Expires == nil {
		t.Errorf("cli-limit: %+v; want from cli, 20 matched, 13-15 dropped, an expiry", s)
	}
	// why names the signatures a packet of its protocol and port may meet.
	if out := e.MustCLI("why", "198.18.1.12", "--proto", "udp", "--port", itoa(agenttest.UDPPort)); !strings.Contains(out, "1b. signature cli-limit (cli, limit)") {
		t.Errorf("why for udp lacks the signature:\n%s", out)
	}
	if out := e.MustCLI("why", "198.18.1.12", "--proto", "tcp", "--port", "80"); !strings.Contains(out, "1b. signatures: none") {
		t.Errorf("why for tcp names a udp signature:\n%s", out)
	}
	out := e.MustCLI("signatures", "explain", "cli-limit")
	for _, w := range []string{"limit 1/s burst 5", "protocol=udp", "ip_length=92", "matched 20 packets"} {
		if !strings.Contains(out, w) {
			t.Errorf("signatures explain lacks %q:\n%s", w, out)
		}
	}
	e.MustCLI("signatures", "del", "cli-limit")
	if r := e.CLI("signatures", "del", "cli-limit"); r.Code == 0 || !strings.Contains(r.Stderr, "no signature cli-limit") {
		t.Errorf("second del: %s; want no signature cli-limit", r)
	}

	var what []string
	for _, r := range e.auditLog() {
		if strings.HasPrefix(r.What, "signature.") {
			what = append(what, r.Who+":"+r.What+":"+strings.Join(r.Target, ",")+":"+r.Result)
		}
	}
	got := strings.Join(what, " ")
	for _, w := range []string{"config:signature.add:cfg-udp:ok", "signature.del:cfg-udp:ok", "cli:signature.add:cli-limit:ok",
		"cli:signature.del:cli-limit:ok"} {
		if !strings.Contains(got, w) {
			t.Errorf("audit log lacks %s: %s", w, got)
		}
	}
}
