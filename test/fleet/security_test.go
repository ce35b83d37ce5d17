package fleet_test

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/test/agenttest"
	testbed "github.com/bulwark-filter/bulwark/test/fleet"
	"github.com/bulwark-filter/bulwark/test/natstest"
)

// serverIPs are the fabric addresses of n servers, for their certificate.
func serverIPs(n int) []net.IP {
	var ips []net.IP
	for _, a := range testbed.ServerAddrs(n) {
		ips = append(ips, net.IP(a.AsSlice()))
	}
	return ips
}

// authorization is the servers' authorization block: one user per node,
// who may publish to the bucket only under its own node name (the
// example docs/fleet.md gives), use the JetStream API except to delete or
// purge, and receive replies.
func authorization(bucket string, users map[string]string) string {
	var b strings.Builder
	b.WriteString("authorization {\n  users = [\n")
	for u, pw := range users {
		fmt.Fprintf(&b, `    {
      user: %q, password: %q
      permissions: {
        publish: {
          allow: ["$KV.%s.%s.>", "$JS.API.>", "$JS.ACK.>", "$JS.FC.>", "_INBOX.>"]
          deny: ["$JS.API.STREAM.DELETE.>", "$JS.API.STREAM.PURGE.>", "$JS.API.STREAM.MSG.DELETE.>"]
        }
        subscribe: { allow: ["_INBOX.>", "$KV.%s.>"] }
      }
    }
`, u, pw, bucket, u, bucket)
	}
	b.WriteString("  ]\n}\n")
	return b.String()
}

// Scenario 9: TLS with client certificates and per-node credentials. A
// host with a wrong password cannot connect, and a host that claims
// another node name than its credentials' cannot publish: what either
// issues is enforced at home and nowhere else.
func TestFleetTLSAndCredentials(t *testing.T) {
	dir := t.TempDir()
	p := natstest.NewPKI(t, dir, serverIPs(3))
	users := map[string]string{"agent-1": agenttest.RandHex(16), "agent-2": agenttest.RandHex(16), "agent-3": agenttest.RandHex(16)}
	// Agent 3 holds a wrong password; agent 4 claims node agent-9 with
	// agent-2's credentials.
	pwFile := func(i int) (string, string) {
		user, pw := testbed.NodeName(i), ""
		switch i {
		case 2:
			pw = "wrong-" + agenttest.RandHex(8)
		case 3:
			user = "agent-2"
			pw = users[user]
		default:
			pw = users[user]
		}
		f := filepath.Join(dir, fmt.Sprintf("pw-%d", i))
		if err := os.WriteFile(f, []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return user, f
	}
	serverConf := fmt.Sprintf("tls {\n  cert_file: %q\n  key_file: %q\n  ca_file: %q\n  verify: true\n}\n%s",
		p.ServerCert, p.ServerKey, p.CA, authorization("bulwark-verdicts", users))
	fl := func(i int) string {
		user, f := pwFile(i)
		return caps(0)(i) + fmt.Sprintf("  user          = %q\n  password_file = %q\n  tls {\n    ca_file   = %q\n    cert_file = %q\n    key_file  = %q\n  }\n",
			user, f, p.CA, p.ClientCert, p.ClientKey)
	}
	node := func(i int) string {
		if i == 3 {
			return "agent-9"
		}
		return testbed.NodeName(i)
	}
	b := testbed.New(t, testbed.Options{Servers: 3, Agents: 4, Config: config(0, ""), Fleet: fl, Node: node, ServerConfig: serverConf})
	b.StartAll()
	valid := b.Agents[:2]
	for _, u := range b.URLs() {
		if !strings.HasPrefix(u, "nats://") {
			t.Fatalf("server URL %q", u)
		}
	}
	b.Agents[0].MustCLI("block", "add", "--fleet", "--ttl", "1h", "198.18.72.1")
	agenttest.WaitFor(t, time.Minute, "the valid hosts in sync with one verdict", func() bool {
		for _, a := range valid {
			if s := a.FleetStatus(); !s.Connected || !s.InSync || s.Active != 1 {
				return false
			}
		}
		return true
	})
	expectFrames(t, valid, netip.MustParseAddr("198.18.72.1"), false)
	if s := b.Agents[2].FleetStatus(); s.Connected {
		t.Errorf("%s with a wrong password is connected", b.Agents[2].Node)
	}
	// The two bad hosts block a source each: enforced at home only.
	bad := map[*testbed.Agent]netip.Addr{b.Agents[2]: netip.MustParseAddr("198.18.72.3"), b.Agents[3]: netip.MustParseAddr("198.18.72.4")}
	for a, src := range bad {
		a.MustCLI("block", "add", "--fleet", "--ttl", "1h", src.String())
		expectFrames(t, []*testbed.Agent{a}, src, false)
	}
	// The bucket still holds exactly the one valid verdict, seen from the
	// valid hosts after the bad ones have had time to try (their publish
	// attempts are retried; none may land).
	time.Sleep(3 * time.Second)
	for _, a := range valid {
		if s := a.FleetStatus(); s.Active != 1 || !s.InSync {
			t.Errorf("%s: %d active fleet verdicts (in sync %v), want only the valid host's 1", a.Node, s.Active, s.InSync)
		}
		for _, src := range bad {
			if got := delivered(a, src); got != probe {
				t.Errorf("%s: %d of %d frames from %s delivered: a verdict from a host without valid credentials landed", a.Node, got, probe, src)
			}
		}
	}
	summary(t, "TLS with client certificates and per-node users: a wrong password is refused, a node name other than the user's cannot publish")
}

// The fleet works with Debian 12's packaged nats-server (2.9, no per-key
// TTL): a block on one host is enforced on the other, and the revoke too.
func TestFleetDebianServer(t *testing.T) {
	b := testbed.New(t, testbed.Options{Servers: 1, Agents: 2, Config: config(0, ""), Fleet: caps(0), DebianServer: true})
	b.StartAll()
	src := netip.MustParseAddr("198.18.73.1")
	b.Agents[0].MustCLI("block", "add", "--fleet", "--ttl", "1h", src.String())
	converge(t, b, time.Now(), time.Minute, 1)
	expectFrames(t, b.Agents, src, false)
	b.Agents[1].MustCLI("verdicts", "del", "--fleet", src.String())
	converge(t, b, time.Now(), time.Minute, 0)
	time.Sleep(time.Second) // the source's token bucket refills
	expectFrames(t, b.Agents, src, true)
}
