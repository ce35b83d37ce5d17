package fleet_test

import (
	"fmt"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/agenttest"
	testbed "github.com/bulwark-filter/bulwark/test/fleet"
)

// TestDemoFleet is `make demo-fleet` (run verbose there): 3 NATS servers
// and 3 agents; one source sends a steady stream at all three hosts, the
// operator blocks it on host 1 with --fleet, and the demo prints when the
// block reached each host's kernel and how many frames each host let
// through before and none after. It is a test like the others: it fails
// if the source is not stopped on every host.
func TestDemoFleet(t *testing.T) {
	say := func(format string, args ...any) { fmt.Fprintf(os.Stdout, "demo-fleet: "+format+"\n", args...) }
	b := testbed.New(t, testbed.Options{Servers: 3, Agents: 3, Config: func(int) agenttest.Config { return agenttest.Config{} }, Fleet: caps(0)})
	say("3 NATS servers (JetStream cluster, replicas 3) at %s", b.URLs())
	b.StartAll()
	for _, a := range b.Agents {
		say("%s: bulwark with XDP on %s (namespace %s), fabric address %s", a.Node, a.TB.ServerIf, a.TB.Server, a.Addr)
	}
	converge(t, b, time.Now(), time.Minute, 0)
	src := netip.MustParseAddr("198.18.74.1")
	vs := make([]*testbed.Verdicts, len(b.Agents))
	for i, a := range b.Agents {
		vs[i] = a.OpenVerdicts(64)
	}
	// The stream: 3,000 frames at 300/s to each host (10 s), bounded.
	const frames, gap = 3000, 3300 * time.Microsecond
	var wg sync.WaitGroup
	sent := make([]int, len(b.Agents))
	errs := make([]error, len(b.Agents))
	for i, a := range b.Agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, _, err := a.Snd.Send([][]byte{a.Frame(src, 1)}, frames, time.Now().Add(time.Minute), gap)
			sent[i], errs[i] = n[0], err
		}()
	}
	time.Sleep(2 * time.Second)
	say("%s streams to all three hosts; blocking it on %s only: bulwark block add --fleet %s", src, b.Agents[0].Node, src)
	before := make([]int, len(b.Agents))
	for i, a := range b.Agents {
		before[i] = a.Rcv.Count(src)
	}
	start := time.Now()
	b.Agents[0].MustCLI("block", "add", "--fleet", "--ttl", "10m", "--reason", "demo-fleet", src.String())
	at := b.WaitAll(start, time.Minute, "the block in every kernel", func(a *testbed.Agent) bool {
		if a.Index == 0 {
			return true // the local block (block list) is in force when the command returns
		}
		act, origin, ok := vs[a.Index].Get(src)
		return ok && act == maps.VerdictBlock && origin == maps.OriginFleet
	})
	for i, a := range b.Agents {
		say("%s: block in force %s after the command started", a.Node, at[i].Round(time.Millisecond))
	}
	wg.Wait()
	for i, a := range b.Agents {
		if errs[i] != nil {
			t.Fatalf("%s: send: %v", a.Node, errs[i])
		}
		a.Rcv.Settle(100*time.Millisecond, 10*time.Second)
	}
	for i, a := range b.Agents {
		total := a.Rcv.Count(src)
		say("%s: %d frames sent, %d delivered (%d before the command, %d after it started)", a.Node, sent[i], total, before[i], total-before[i])
	}
	// After: not one more frame gets through anywhere.
	expectFrames(t, b.Agents, src, false)
	say("after propagation: 0 of %d frames from %s delivered on each host; max delay %s", probe, src, slowest(at).Round(time.Millisecond))
}
