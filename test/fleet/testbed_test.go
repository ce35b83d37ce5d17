package fleet_test

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	testbed "github.com/bulwark-filter/bulwark/test/fleet"
)

// dial reports whether a TCP connection from a's namespace to the NATS
// server at url succeeds within a second.
func dial(a *testbed.Agent, url string) bool {
	var c net.Conn
	err := a.TB.InServer(func() error {
		var err error
		c, err = net.DialTimeout("tcp", strings.TrimPrefix(url, "nats://"), time.Second)
		return err
	})
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// The testbed itself: every agent reaches every server over the fabric,
// a partition cuts exactly the partitioned agent off and healing restores
// it, and frames from the client namespace reach the agent's stack through
// its XDP program.
func TestTestbed(t *testing.T) {
	b := testbed.New(t, testbed.Options{Servers: 3, Agents: 2, Config: config(0, ""), NoFleet: func(int) bool { return true }})
	b.StartAll()
	if got := len(b.URLs()); got != 3 {
		t.Fatalf("%d server URLs, want 3", got)
	}
	reach := func(a *testbed.Agent, want bool) {
		t.Helper()
		for _, u := range b.URLs() {
			if got := dial(a, u); got != want {
				t.Errorf("%s -> %s: connected %v, want %v", a.Node, u, got, want)
			}
		}
	}
	for _, a := range b.Agents {
		reach(a, true)
	}
	b.Agents[0].Partition()
	reach(b.Agents[0], false)
	reach(b.Agents[1], true)
	b.Agents[0].Heal()
	reach(b.Agents[0], true)
	b.NATS.Kill(2)
	if dial(b.Agents[1], b.URLs()[2]) {
		t.Errorf("server n2 killed, still accepts connections")
	}
	b.NATS.Restart(2)
	reach(b.Agents[1], true)
	for _, a := range b.Agents {
		if got := a.Send(netip.MustParseAddr("198.18.60.1"), probe); got != probe {
			t.Errorf("%s: %d of %d frames delivered, want all", a.Node, got, probe)
		}
	}
}
