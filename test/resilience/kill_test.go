package resilience_test

import (
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/test/agenttest"
)

// background sends frames round robin with a gap until stop is closed or
// max passes; sent is valid after done is closed.
type background struct {
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	sent []int
	err  error
}

func (e *env) background(frames [][]byte, gap, max time.Duration) *background {
	b := &background{stop: make(chan struct{}), done: make(chan struct{}), sent: make([]int, len(frames))}
	go func() {
		defer close(b.done)
		end := time.Now().Add(max)
		for time.Now().Before(end) {
			select {
			case <-b.stop:
				return
			default:
			}
			// Small slices, so stop is seen within a few ms.
			n, _, err := e.Snd.Send(frames, len(frames)*5, end, gap)
			b.mu.Lock()
			for i := range n {
				b.sent[i] += n[i]
			}
			b.mu.Unlock()
			if err != nil {
				b.err = err
				return
			}
		}
	}()
	return b
}

// waitMore waits until the sender has sent n more of its first frame than
// now (the frames go round robin): a fixed amount of traffic for a phase of
// a test, however slow the machine.
func (b *background) waitMore(t *testing.T, n int, phase string) {
	t.Helper()
	count := b.count
	want := count() + n
	for end := time.Now().Add(time.Minute); count() < want; time.Sleep(5 * time.Millisecond) {
		select {
		case <-b.done:
			t.Fatalf("%s: the background sender stopped (%v) after %d of %d frames", phase, b.err, count(), want)
		default:
		}
		if time.Now().After(end) {
			t.Fatalf("%s: %d of %d frames sent in a minute", phase, count(), want)
		}
	}
}

// count is how many of its first frame the sender has sent.
func (b *background) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sent[0]
}

// finish stops the sender and returns what it sent of each frame.
func (b *background) finish(t *testing.T) []int {
	t.Helper()
	select {
	case <-b.stop:
	default:
		close(b.stop)
	}
	<-b.done
	if b.err != nil {
		t.Fatalf("background sender: %v", b.err)
	}
	return append([]int(nil), b.sent...)
}

// TestAgentKilledDuringFlood SIGKILLs the agent in the middle of a flood:
// the datapath goes on filtering (blocked sources dropped, the flood
// limited), counting and expiring TTL entries while no agent runs; a new
// agent adopts the pinned state and its counters show no gap.
func TestAgentKilledDuringFlood(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.WriteConfig("", agenttest.Config{PPS: 100, Burst: 100, Block: []string{"198.18.66.6"}})
	a := e.Start()

	flood, rtBlocked, cfgBlocked, ttlBlocked := agenttest.Addr("198.18.3.3"), agenttest.Addr("198.18.7.7"), agenttest.Addr("198.18.66.6"), agenttest.Addr("2001:2:0:9::9")
	e.MustCLI("block", "add", rtBlocked.String(), "--reason", "resilience")
	ttlFrom := time.Now()
	e.MustCLI("block", "add", ttlBlocked.String(), "--ttl", "2s")
	ttlAdded := time.Now() // the entry expires 2 s after a time between these
	if got := e.Send(ttlBlocked, 5); got != 0 && time.Since(ttlFrom) < 2*time.Second {
		t.Fatalf("%d of 5 frames from the TTL-blocked source delivered before its expiry, want 0", got)
	}

	// The flood: about 300 frames/s from each source (100 pps allowed for
	// the flooder), for the whole run, in phases of a fixed number of
	// frames: 300 per source before the kill, 400 with no agent, 300 after
	// the restart.
	frames := [][]byte{e.Frame(flood, 1), e.Frame(rtBlocked, 2), e.Frame(cfgBlocked, 3)}
	bg := e.background(frames, time.Millisecond, 5*time.Minute)
	defer bg.finish(t)

	bg.waitMore(t, 300, "before the kill")
	before := e.Metrics()
	progBefore, _ := e.TB.ServerXDPProgID()
	if err := a.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !a.Wait(5 * time.Second) {
		t.Fatal("agent did not die from SIGKILL")
	}
	deadAt := time.Now()
	floodAtDeath, sentAtDeath := e.Rcv.Count(flood), bg.count()
	if id, err := e.TB.ServerXDPProgID(); err != nil || id == 0 || id != progBefore {
		t.Fatalf("XDP program after SIGKILL: id %d (%v), want %d still attached", id, err, progBefore)
	}

	// The TTL entry expires while no agent runs.
	time.Sleep(time.Until(ttlAdded.Add(2500 * time.Millisecond)))
	ttlBefore := e.Rcv.Count(ttlBlocked)
	if _, _, err := e.Snd.Send([][]byte{e.Frame(ttlBlocked, 4)}, 10, time.Now().Add(5*time.Second), 0); err != nil {
		t.Fatal(err)
	}
	ttlDelivered := e.Rcv.WaitFor(ttlBlocked, ttlBefore+10, 30*time.Second) - ttlBefore

	bg.waitMore(t, 400, "with no agent")
	deadFor := time.Since(deadAt)
	floodDead, sentDead := e.Rcv.Count(flood)-floodAtDeath, bg.count()-sentAtDeath

	restartAt := time.Now()
	e.Start()
	restartTook := time.Since(restartAt)
	bg.waitMore(t, 300, "after the restart")
	sent := bg.finish(t)
	e.Rcv.Settle(200*time.Millisecond, 3*time.Second)
	after := e.Metrics()

	floodDelivered := e.Rcv.Count(flood)
	t.Logf("sent flood %d, runtime-blocked %d, config-blocked %d; delivered flood %d (%d in %s dead), blocked %d+%d; TTL source after expiry %d of 10; restart %s",
		sent[0], sent[1], sent[2], floodDelivered, floodDead, deadFor.Round(time.Millisecond),
		e.Rcv.Count(rtBlocked), e.Rcv.Count(cfgBlocked), ttlDelivered, restartTook.Round(time.Millisecond))
	rlBefore := before.Get("bulwark_packets_total", "action", "drop", "reason", "ratelimit")
	rlAfter := after.Get("bulwark_packets_total", "action", "drop", "reason", "ratelimit")
	blBefore := before.Get("bulwark_packets_total", "action", "drop", "reason", "blocklist")
	blAfter := after.Get("bulwark_packets_total", "action", "drop", "reason", "blocklist")
	summary(t, "dead %s: flood %d delivered while dead (limit 100 pps), blocked delivered %d, TTL entry expired while dead (%d/10 passed); ratelimit drops %.0f -> %.0f, blocklist drops %.0f -> %.0f (= sent %d)",
		deadFor.Round(100*time.Millisecond), floodDead, e.Rcv.Count(rtBlocked)+e.Rcv.Count(cfgBlocked), ttlDelivered, rlBefore, rlAfter, blBefore, blAfter, sent[1]+sent[2]+5)

	if n := e.Rcv.Count(rtBlocked) + e.Rcv.Count(cfgBlocked); n != 0 {
		t.Errorf("%d frames from blocked sources delivered across the run, want 0", n)
	}
	if sent[1] < 1000 {
		t.Errorf("only %d frames per source sent in the run: the flood did not run", sent[1])
	}
	// While dead: limited to 100 pps (the bucket is empty when it dies),
	// not blocked either: at least half of what the limit or the sender
	// (slower on a busy machine) allowed.
	if max, min := int(100*deadFor.Seconds())+30, min(sentDead, int(100*deadFor.Seconds()))/2; floodDead > max || floodDead < min {
		t.Errorf("flood delivered %d of %d frames in %s with no agent, want about 100/s (%d to %d)", floodDead, sentDead, deadFor, min, max)
	}
	if ttlDelivered != 10 {
		t.Errorf("%d of 10 frames delivered from a source whose 2s block expired while no agent ran, want 10", ttlDelivered)
	}
	// The counters are the datapath's, pinned: every drop of the run is in
	// them, those of the dead time too.
	if want := float64(sent[0] - floodDelivered); rlAfter != want {
		t.Errorf("ratelimit drops after restart %v, want %v (flood sent %d - delivered %d): a gap", rlAfter, want, sent[0], floodDelivered)
	}
	if want := float64(sent[1] + sent[2] + 5); blAfter != want {
		t.Errorf("blocklist drops after restart %v, want %v (every blocked frame of the run)", blAfter, want)
	}
	if rlAfter <= rlBefore || blAfter <= blBefore {
		t.Errorf("counters did not grow: ratelimit %v -> %v, blocklist %v -> %v", rlBefore, rlAfter, blBefore, blAfter)
	}
	// The restarted agent adopted the runtime entries; the expired one is gone.
	es := e.List("block")
	if en, ok := agenttest.FindEntry(es, netip.PrefixFrom(rtBlocked, 32).String()); !ok || en.Origin != "runtime" {
		t.Errorf("runtime block entry after restart: %+v (found %v), want adopted with origin runtime; list %+v", en, ok, es)
	}
	if _, ok := agenttest.FindEntry(es, netip.PrefixFrom(ttlBlocked, 128).String()); ok {
		t.Errorf("the expired TTL entry is still listed after restart: %+v", es)
	}
	if _, ok := agenttest.FindEntry(es, "198.18.66.6/32"); !ok {
		t.Errorf("config block entry missing after restart: %+v", es)
	}
}
