// Package top_test runs `bulwark top` against a real agent: the agent in a
// throw-away server namespace (nsenter, so the host's bpffs holds the pins),
// a flood from one spoofed source and a trickle from another from the client
// namespace, then the CLI in its three forms: --once --json, plain text (stdout
// not a terminal) and, when tmux is there, the interactive view.
//
// Root only; it skips loudly otherwise. Addresses are from 198.18.0.0/15 and
// both ends are namespaces the test creates and deletes.
package top_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/test/agenttest"
	"github.com/bulwark-filter/bulwark/test/netns"
)

func TestMain(m *testing.M) { os.Exit(agenttest.Main(m, "bulwark-top-test-")) }

var (
	flooder = netip.MustParseAddr("198.18.7.1")
	trickle = netip.MustParseAddr("198.18.7.2")
)

// sourcesReply mirrors api.SourcesReply as a script would read it.
type sourcesReply struct {
	Interval float64 `json:"interval_seconds"`
	Measured bool    `json:"measured"`
	Sources  []struct {
		Source       string  `json:"source"`
		PPS          float64 `json:"pps"`
		DeliveredPPS float64 `json:"delivered_pps"`
		RatelimitPPS float64 `json:"ratelimit_pps"`
		Score        float64 `json:"score"`
		Verdict      string  `json:"verdict"`
	} `json:"sources"`
}

type env struct{ *agenttest.Env }

// startAgent builds a testbed, starts the agent on the server veth and
// registers the cleanups: agent, detach and pins, files, testbed.
func startAgent(t *testing.T) *env {
	t.Helper()
	e := &env{agenttest.NewEnv(t, agenttest.Options{DirPrefix: "bwk-top-"})}
	cfg := fmt.Sprintf(`mode      = "enforce"
malformed = "drop"
pin_dir   = %q

interface %q {
  attach = "native"
}

limits {
  default {
    pps   = 1000
    burst = 1000
  }
}

metrics {
  listen = ""
}

log {
  audit_file = %q
}

events {
  dir = %q
}

control {
  socket = %q
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
`, e.PinRoot, e.TB.ServerIf, e.Audit, filepath.Join(e.Dir, "drops"), e.Sock)
	if err := os.WriteFile(e.CfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	a := e.Start()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", a.LogText())
		}
	})
	return e
}

// traffic sends, until stopped or for at most max, a flood from flooder
// (up to ~20k pps) and a trickle (~50 pps) from trickle.
func (e *env) traffic(t *testing.T, max time.Duration) (stop func()) {
	t.Helper()
	rcv, err := e.TB.NewReceiver(agenttest.UDPPort, false)
	if err != nil {
		t.Fatal(err)
	}
	snd, err := e.TB.NewSender()
	if err != nil {
		rcv.Close()
		t.Fatal(err)
	}
	frame := func(src netip.Addr) []byte {
		return netns.UDP4(e.TB.ServerMAC, e.TB.ClientMAC, src, netns.ServerAddr4, 40000, agenttest.UDPPort, netns.Payload(1, 64))
	}
	flood, little := frame(flooder), frame(trickle)
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		end := time.Now().Add(max)
		for i := 0; time.Now().Before(end); i++ {
			select {
			case <-quit:
				return
			default:
			}
			if _, _, err := snd.Send([][]byte{flood}, 200, end, 0); err != nil {
				t.Errorf("send flood: %v", err)
				return
			}
			if i%2 == 0 {
				if _, _, err := snd.Send([][]byte{little}, 1, end, 0); err != nil {
					t.Errorf("send trickle: %v", err)
					return
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			close(quit)
			wg.Wait()
			snd.Close()
			rcv.Close()
		})
	}
	t.Cleanup(stop)
	return stop
}

func TestTop(t *testing.T) {
	e := startAgent(t)
	stop := e.traffic(t, 5*time.Minute)
	defer stop()

	t.Run("once-json", func(t *testing.T) {
		var rep sourcesReply
		var last agenttest.Result
		found := false
		for end := time.Now().Add(pollFor); time.Now().Before(end); time.Sleep(300 * time.Millisecond) {
			last = agenttest.RunBin(t, "--socket", e.Sock, "top", "--once", "--json", "--sort", "pps")
			if last.Code != 0 {
				t.Fatalf("top --once --json: %s", last)
			}
			rep = sourcesReply{}
			if err := json.Unmarshal([]byte(last.Stdout), &rep); err != nil {
				t.Fatalf("top --once --json: not JSON: %v: %q", err, last.Stdout)
			}
			if rep.Measured && len(rep.Sources) >= 2 && rep.Sources[0].Source == flooder.String() {
				found = true
				break
			}
		}
		if !found {
			t.Fatalf("no measured reply with %s first after %v; last: %s", flooder, pollFor, last)
		}
		var flood, little float64 = -1, -1
		for _, s := range rep.Sources {
			switch s.Source {
			case flooder.String():
				flood = s.PPS
				if s.RatelimitPPS <= 0 {
					t.Errorf("flooder: no rate-limit drops over a 1000 pps limit: %+v", s)
				}
			case trickle.String():
				little = s.PPS
			}
		}
		if little < 0 {
			t.Fatalf("trickle source %s missing: %s", trickle, last.Stdout)
		}
		if !(flood > little) {
			t.Errorf("flooder %v pps, trickle %v pps: want flooder busier", flood, little)
		}
		t.Logf("flooder %.0f pps, trickle %.0f pps, interval %.1fs", flood, little, rep.Interval)

		// Sorted by dropped: the flooder leads too (the trickle has no drops).
		r := agenttest.RunBin(t, "--socket", e.Sock, "top", "--once", "--json", "--sort", "dropped", "--limit", "1")
		if r.Code != 0 {
			t.Fatalf("top --sort dropped: %s", r)
		}
		var d sourcesReply
		if err := json.Unmarshal([]byte(r.Stdout), &d); err != nil || len(d.Sources) != 1 || d.Sources[0].Source != flooder.String() {
			t.Errorf("top --once --json --sort dropped --limit 1: %v: %s", err, r.Stdout)
		}
	})

	t.Run("once-plain", func(t *testing.T) {
		r := agenttest.RunBin(t, "--socket", e.Sock, "top", "--once")
		if r.Code != 0 {
			t.Fatalf("top --once: %s", r)
		}
		if strings.Contains(r.Stdout, "\x1b") {
			t.Errorf("plain output holds escape sequences: %q", r.Stdout)
		}
		for _, want := range []string{"SOURCE", "IN pps", "DELIVERED pps", "RATELIMIT pps", "SCORE", "VERDICT", "TTL", flooder.String(), "mode enforce"} {
			if !strings.Contains(r.Stdout, want) {
				t.Errorf("top --once: missing %q in\n%s", want, r.Stdout)
			}
		}
		t.Logf("top --once:\n%s", r.Stdout)
	})

	t.Run("plain-stream", func(t *testing.T) {
		// Not a terminal and no --once: a table per interval, until a signal.
		ctx, cancel := context.WithTimeout(context.Background(), pollFor+10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, agenttest.Bin, "--socket", e.Sock, "top", "--interval", "300ms")
		var out syncBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Two tables, however long a busy machine takes to print them.
		for end := time.Now().Add(pollFor); time.Now().Before(end) && strings.Count(out.String(), "SOURCE") < 2; {
			time.Sleep(100 * time.Millisecond)
		}
		_ = cmd.Process.Signal(syscall.SIGINT)
		if err := cmd.Wait(); err != nil {
			t.Errorf("top (plain) after SIGINT: %v\n%s", err, out.String())
		}
		if n := strings.Count(out.String(), "SOURCE"); n < 2 {
			t.Errorf("top (plain): %d tables in %v at 300ms:\n%s", n, pollFor, out.String())
		}
		if !strings.Contains(out.String(), "\n\nbulwark ") {
			t.Errorf("top (plain): tables not separated by a blank line:\n%s", out.String())
		}
	})

	t.Run("no-agent", func(t *testing.T) {
		r := agenttest.RunBin(t, "--socket", filepath.Join(e.Dir, "missing.sock"), "top", "--once")
		if r.Code != 3 || !strings.Contains(r.Stderr, "is the agent running") {
			t.Errorf("top with no agent: %s", r)
		}
		r = agenttest.RunBin(t, "--socket", e.Sock, "top", "--json")
		if r.Code == 0 || !strings.Contains(r.Stderr, "--json needs --once") {
			t.Errorf("top --json: %s", r)
		}
	})

	t.Run("interactive-tmux", func(t *testing.T) { e.tmux(t) })
}

// tmux drives the live view in a detached tmux session with its own server.
func (e *env) tmux(t *testing.T) {
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		if out, ierr := exec.Command("apt-get", "install", "-y", "tmux").CombinedOutput(); ierr != nil {
			t.Skipf("SKIP: tmux is not installed and apt-get install tmux failed (%v): %s", ierr, lastLines(string(out), 3))
		}
		if tmux, err = exec.LookPath("tmux"); err != nil {
			t.Skip("SKIP: tmux not found after apt-get install tmux")
		}
	}
	// A private server on a socket in the test's directory: nothing of
	// the host's tmux is touched, and the socket goes with the directory.
	server := filepath.Join(e.Dir, "tmux.sock")
	tm := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, tmux, append([]string{"-S", server}, args...)...)
		cmd.Env = append(os.Environ(), "LANG=C.UTF-8", "TERM=xterm-256color")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() {
		if _, err := os.Stat(server); err == nil {
			_, _ = tm("kill-server")
		}
	})
	status := filepath.Join(e.Dir, "tmux-exit")
	shell := fmt.Sprintf("%s --socket %s top --interval 300ms; echo $? > %s", agenttest.Bin, e.Sock, status)
	if out, err := tm("new-session", "-d", "-s", "top", "-x", "160", "-y", "40", shell); err != nil {
		t.Fatalf("tmux new-session: %v: %s", err, out)
	}
	capture := func() string {
		out, err := tm("capture-pane", "-p", "-t", "top")
		if err != nil {
			t.Fatalf("tmux capture-pane: %v: %s", err, out)
		}
		return out
	}
	// waitScreen polls the pane until ok or pollFor.
	waitScreen := func(what string, ok func(string) bool) string {
		var s string
		for end := time.Now().Add(pollFor); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
			if s = capture(); ok(s) {
				return s
			}
		}
		t.Fatalf("tmux: %s not seen in %v; screen:\n%s", what, pollFor, s)
		return s
	}
	s := waitScreen("the flooder in the table", func(s string) bool {
		return strings.Contains(s, "SOURCE") && strings.Contains(s, flooder.String()) && strings.Contains(s, "sort pps")
	})
	t.Logf("live view:\n%s", s)
	if !strings.Contains(s, "keys: p sort by pps") {
		t.Errorf("live view lacks the key help:\n%s", s)
	}
	for _, l := range strings.Split(s, "\n") {
		if n := len([]rune(l)); n > 160 {
			t.Errorf("line of %d runes in a 160-column pane: %q", n, l)
		}
	}
	// Keep the pane after the command ends, to see how it left it.
	if out, err := tm("set-option", "-t", "top", "remain-on-exit", "on"); err != nil {
		t.Fatalf("tmux set-option remain-on-exit: %v: %s", err, out)
	}
	if out, _ := tm("display-message", "-p", "-t", "top", "#{alternate_on}"); strings.TrimSpace(out) != "1" {
		t.Errorf("live view not on the alternate screen: alternate_on=%q", out)
	}
	if out, err := tm("send-keys", "-t", "top", "s"); err != nil {
		t.Fatalf("tmux send-keys s: %v: %s", err, out)
	}
	waitScreen("sort by score after s", func(s string) bool { return strings.Contains(s, "sort score") })
	if out, err := tm("send-keys", "-t", "top", "d"); err != nil {
		t.Fatalf("tmux send-keys d: %v: %s", err, out)
	}
	waitScreen("sort by dropped after d", func(s string) bool { return strings.Contains(s, "sort dropped") })
	if out, err := tm("send-keys", "-t", "top", "q"); err != nil {
		t.Fatalf("tmux send-keys q: %v: %s", err, out)
	}
	// The command ends (its shell writes the exit code), and the session
	// with it.
	var code string
	for end := time.Now().Add(pollFor); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if b, err := os.ReadFile(status); err == nil && strings.TrimSpace(string(b)) != "" {
			code = strings.TrimSpace(string(b))
			break
		}
	}
	if code == "" {
		t.Fatalf("bulwark top did not exit after q; screen:\n%s", capture())
	}
	if code != "0" {
		t.Errorf("bulwark top exited %s after q", code)
	}
	// The pane's command is done, and the terminal is back on the normal
	// screen. (cursor_flag is not checked: tmux reported 0 for a dead pane
	// here even though top writes \e[?25h on its way out.)
	var state string
	for end := time.Now().Add(pollFor); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		out, err := tm("display-message", "-p", "-t", "top", "#{pane_dead} #{alternate_on}")
		if err != nil {
			t.Fatalf("tmux display-message: %v: %s", err, out)
		}
		if state = strings.TrimSpace(out); strings.HasPrefix(state, "1 ") {
			break
		}
	}
	if state != "1 0" {
		t.Errorf("after q: pane_dead alternate_on = %q, want \"1 0\"", state)
	}
	if out, err := tm("kill-session", "-t", "top"); err != nil {
		t.Errorf("tmux kill-session: %v: %s", err, out)
	}
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// pollFor bounds each wait for a condition: long enough for a busy
// machine, and a wait ends as soon as its condition holds.
const pollFor = 30 * time.Second

// syncBuffer is a bytes.Buffer that a command writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
