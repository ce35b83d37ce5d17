package agent_test

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/test/agenttest"
	"github.com/bulwark-filter/bulwark/test/netns"
)

// TestRuntimeBlockLatency measures how long a run-time block takes from the
// CLI call to the first dropped packet (issue 6's control-plane figure; the
// target is 100 ms, reported, not asserted). A source sends a frame every
// 0.5 ms; the last frame of it delivered after the call bounds the time the
// block took to be in force. Asserted: the block does take effect.
func TestRuntimeBlockLatency(t *testing.T) {
	e := newEnv(t)
	e.WriteConfig("", agenttest.Config{})
	e.Start()
	const port = agenttest.UDPPort + 1
	rcv, err := e.TB.NewReceiver(port, true)
	if err != nil {
		t.Fatal(err)
	}
	defer rcv.Close()

	var lat []time.Duration
	for round := 0; round < 5; round++ {
		src := netip.AddrFrom4([4]byte{198, 18, 1, byte(100 + round)})
		frame := netns.UDP4(e.TB.ServerMAC, e.TB.ClientMAC, src, netns.ServerAddr4, 40000, port, netns.Payload(1, 32))
		done := make(chan error, 1)
		go func() {
			_, _, err := e.Snd.Send([][]byte{frame}, 2000, time.Now().Add(2*time.Second), 500*time.Microsecond)
			done <- err
		}()
		time.Sleep(300 * time.Millisecond) // traffic flows
		t0 := time.Now()
		e.MustCLI("block", "add", src.String(), "--ttl", "1m")
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		rcv.Settle(100*time.Millisecond, 2*time.Second)
		var last time.Time
		before := 0
		for _, a := range rcv.Log() {
			if a.Source == src {
				if a.At.After(last) {
					last = a.At
				}
				if a.At.Before(t0) {
					before++
				}
			}
		}
		if before == 0 {
			t.Fatalf("round %d: no traffic from %s arrived before the block", round, src)
		}
		if time.Since(t0) < 500*time.Millisecond || last.After(t0.Add(time.Second)) {
			t.Fatalf("round %d: frames from %s still delivered %v after block add", round, src, last.Sub(t0))
		}
		lat = append(lat, max(last.Sub(t0), 0))
	}
	slices.Sort(lat)
	t.Logf("run-time block, CLI call to the first dropped packet: median %v, max %v over %d rounds (target 100 ms)",
		lat[len(lat)/2], lat[len(lat)-1], len(lat))
}
