package agent_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/test/agenttest"
)

// TestRestartNoGap stops the agent with SIGTERM and starts a new one while
// a config-blocked, a runtime-blocked and a well-behaved source send: the
// program stays attached and the maps pinned while no agent runs
// (fail-static), not one blocked frame gets through at any time, every
// well-behaved frame does, and the runtime entry is still there after.
func TestRestartNoGap(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.WriteConfig("", agenttest.Config{PPS: 5000, Burst: 5000, Block: []string{"198.18.66.0/24"}})
	a := e.Start()
	if out := e.MustCLI("block", "add", "198.18.5.5", "--reason", "runtime"); strings.TrimSpace(out) != "added 1" {
		t.Fatalf("block add: %q", out)
	}
	progBefore, err := e.TB.ServerXDPProgID()
	if err != nil || progBefore == 0 {
		t.Fatalf("no XDP program attached: %d, %v", progBefore, err)
	}

	cfgBlocked, rtBlocked, good := agenttest.Addr("198.18.66.7"), agenttest.Addr("198.18.5.5"), agenttest.Addr("198.18.2.2")
	frames := [][]byte{e.Frame(cfgBlocked, 1), e.Frame(rtBlocked, 2), e.Frame(good, 3)}
	// Traffic in five phases of a fixed number of frames, perPhase from
	// each source in turn, 1 ms apart: with the agent running, while it
	// stops, with no agent, while the new one starts, and after. However
	// slow the machine, every phase sends all its frames.
	const perPhase, phases = 300, 5
	var sent [3]int
	send := func() error {
		n, _, err := e.Snd.Send(frames, 3*perPhase, time.Now().Add(time.Minute), time.Millisecond)
		for i := range n {
			sent[i] += n[i]
		}
		if err == nil && n[0]+n[1]+n[2] != 3*perPhase {
			err = fmt.Errorf("sent %v of %d frames of each source within a minute", n, perPhase)
		}
		return err
	}
	background := func() <-chan error {
		done := make(chan error, 1)
		go func() { done <- send() }()
		return done
	}

	if err := send(); err != nil {
		t.Fatal(err)
	}
	pinsBefore := e.pins()
	stopping := background()
	if err := a.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	stopAt := time.Now()
	if !a.Wait(30 * time.Second) {
		t.Fatal("agent did not exit within 30 s of SIGTERM")
	}
	if c := a.ExitCode(); c != 0 {
		t.Fatalf("agent exit code %d on SIGTERM, want 0:\n%s", c, a.LogText())
	}
	t.Logf("agent stopped in %v", time.Since(stopAt).Round(time.Millisecond))
	if err := <-stopping; err != nil {
		t.Fatal(err)
	}
	// Fail-static: the program stays attached, the pins stay.
	if id, err := e.TB.ServerXDPProgID(); err != nil || id != progBefore {
		t.Fatalf("after SIGTERM: XDP program %d (%v), want %d still attached", id, err, progBefore)
	}
	pinsStopped := e.pins()
	if len(pinsStopped) == 0 || !slices.Equal(pinsBefore, pinsStopped) || !slices.Contains(pinsStopped, "link") {
		t.Fatalf("after SIGTERM: pins %v, want %v (with the link) kept", pinsStopped, pinsBefore)
	}
	// A phase with no agent at all: the well-behaved frames still arrive.
	if err := send(); err != nil {
		t.Fatal(err)
	}
	if got := e.Rcv.WaitFor(good, sent[2], 10*time.Second); got != sent[2] {
		t.Fatalf("with no agent: %d of the %d frames from the well-behaved source sent so far delivered", got, sent[2])
	}
	starting := background()
	e.Start()
	t.Logf("agent back after %v", time.Since(stopAt).Round(time.Millisecond))
	if err := <-starting; err != nil {
		t.Fatal(err)
	}
	bl := e.List("block")
	if en, ok := agenttest.FindEntry(bl, "198.18.5.5/32"); !ok || en.Origin != "runtime" || en.ExpiresIn != 0 {
		t.Fatalf("after restart: block list %+v, want 198.18.5.5/32 runtime, no expiry", bl)
	}
	if en, ok := agenttest.FindEntry(bl, "198.18.66.0/24"); !ok || en.Origin != "config" {
		t.Fatalf("after restart: block list %+v, want 198.18.66.0/24 from config", bl)
	}
	if id, err := e.TB.ServerXDPProgID(); err != nil || id == 0 {
		t.Fatalf("after restart: no XDP program attached (%d, %v)", id, err)
	}
	if err := send(); err != nil {
		t.Fatal(err)
	}

	e.Rcv.WaitFor(good, sent[2], 10*time.Second)
	e.Rcv.Settle(200*time.Millisecond, 3*time.Second)
	if want := [3]int{phases * perPhase, phases * perPhase, phases * perPhase}; sent != want {
		t.Fatalf("sent %v frames (config-blocked, runtime-blocked, well-behaved), want %v", sent, want)
	}
	if got := e.Rcv.Count(cfgBlocked); got != 0 {
		t.Errorf("%d of %d frames from the config-blocked %s delivered across the restart, want 0", got, sent[0], cfgBlocked)
	}
	if got := e.Rcv.Count(rtBlocked); got != 0 {
		t.Errorf("%d of %d frames from the runtime-blocked %s delivered across the restart, want 0", got, sent[1], rtBlocked)
	}
	if got := e.Rcv.Count(good); got != sent[2] {
		t.Errorf("%d of %d frames from the well-behaved %s delivered across the restart, want all", got, sent[2], good)
	}
	t.Logf("sent %v, delivered good %d", sent, e.Rcv.Count(good))
}

// TestSecondAgentRefused starts a second agent on the same interface (its
// own control socket, no metrics listener): it must exit non-zero at once,
// naming the other agent, and leave the first one serving.
func TestSecondAgentRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := agenttest.Config{PPS: 100, Burst: 100, Block: []string{"198.18.66.0/24"}}
	e.WriteConfig("", c)
	a1 := e.Start()

	none := ""
	c.Socket = filepath.Join(e.Dir, "second.sock")
	c.Metrics = &none
	second := e.WriteConfig(filepath.Join(e.Dir, "second.hcl"), c)
	start := time.Now()
	a2 := e.Spawn(second)
	// Refused at once, not after retries: bounded generously, as a busy
	// machine is slow to start any process.
	if !a2.Wait(20 * time.Second) {
		t.Fatal("second agent still running after 20 s, want refused")
	}
	t.Logf("second agent gave up after %v", time.Since(start).Round(time.Millisecond))
	if a2.ExitCode() == 0 {
		t.Fatalf("second agent exited 0, want non-zero:\n%s", a2.LogText())
	}
	if log := a2.LogText(); !strings.Contains(log, "another bulwark agent") {
		t.Fatalf("second agent's error %q does not mention another bulwark agent", log)
	}
	// The first agent is unharmed.
	if a1.Exited() {
		t.Fatalf("first agent exited: %v", a1.Err)
	}
	e.MustCLI("status")
	if got := e.Send(agenttest.Addr("198.18.66.7"), 50); got != 0 {
		t.Fatalf("after the refused agent: %d of 50 blocked frames delivered, want 0", got)
	}
	if got := e.Send(agenttest.Addr("198.18.2.2"), 50); got != 50 {
		t.Fatalf("after the refused agent: %d of 50 frames delivered, want 50", got)
	}
	if en, ok := agenttest.FindEntry(e.List("block"), "198.18.66.0/24"); !ok || en.Origin != "config" {
		t.Fatal("after the refused agent: block list lost 198.18.66.0/24")
	}
}
