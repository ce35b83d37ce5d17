// Package agenttest is the harness the agent-level test suites (test/agent,
// test/resilience, test/evaluation, test/top) share to drive the real
// bulwark binary: the agent in a throw-away server namespace (nsenter, so the
// host's bpffs holds the pins), the CLI over the control socket, signals to
// the process, the metrics endpoint scraped from inside the server namespace,
// and crafted frames from the client namespace.
package agenttest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/agent/api"
	"github.com/bulwark-filter/bulwark/test/netns"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// readyWithin bounds the wait for a started agent to be ready.
const readyWithin = 60 * time.Second

// Bin is the bulwark binary Main builds.
var Bin string

// UDPPort is the server port of the env's receiver and of Frame.
const UDPPort = 9000

// Main builds the bulwark binary into a temporary directory named with
// prefix, sets Bin and runs m; it returns the exit code for os.Exit. It is
// meant for TestMain of a package two levels below the module root.
func Main(m *testing.M, prefix string) int {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if Bin, err = testutil.BuildBulwark("../..", dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// SocketClient is an HTTP client of an agent's control socket (the wire
// package's); requests go to http://bulwark/v1/....
func SocketClient(sock string, timeout time.Duration) *http.Client {
	return api.HTTPClient(sock, timeout)
}

// RandHex is n random bytes in hex.
func RandHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// Addr parses s as an IP address; it panics on a bad one.
func Addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// Between reports whether lo <= v <= hi.
func Between(v, lo, hi int) bool { return v >= lo && v <= hi }

// WaitFor polls cond every 100 ms until it holds; it fails t after max.
func WaitFor(t testing.TB, max time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(max)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", max, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// WriteFile writes text to path: write and rename, so a reload never reads
// half a file.
func WriteFile(t testing.TB, path, text string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// Options selects what NewEnv sets up besides the testbed and the paths.
type Options struct {
	DirPrefix   string // prefix of the env's directory; "": "bwk-"
	MetricsAddr string // the agent's metrics listener in the server namespace
	Receiver    bool   // a receiver on UDPPort in the server namespace
	Sender      bool   // a sender in the client namespace
}

// Env is one testbed with its agents and files.
type Env struct {
	T           testing.TB
	TB          *netns.Testbed
	Dir         string // the env's directory, removed at the end
	PinRoot     string // the agent's pin_dir
	Sock        string // the control socket path
	CfgPath     string // the default config path
	Audit       string // the audit log path
	MetricsAddr string // as in Options
	Snd         *netns.Sender
	Rcv         *netns.Receiver
	Agents      []*Agent // every agent spawned, killed at the end
}

// NewEnv makes a testbed and the env's directory, and registers the
// cleanups. It skips t when not root.
func NewEnv(t testing.TB, o Options) *Env {
	t.Helper()
	testutil.RequireRoot(t)
	tb := netns.New(t, netns.Options{})
	if o.DirPrefix == "" {
		o.DirPrefix = "bwk-"
	}
	// A short directory: the socket path must fit in 107 bytes.
	dir, err := os.MkdirTemp("", o.DirPrefix)
	if err != nil {
		t.Fatal(err)
	}
	e := &Env{
		T: t, TB: tb, Dir: dir,
		PinRoot:     "/sys/fs/bpf/bulwark-test-" + RandHex(4),
		Sock:        filepath.Join(dir, "bulwark.sock"),
		CfgPath:     filepath.Join(dir, "bulwark.hcl"),
		Audit:       filepath.Join(dir, "audit.jsonl"),
		MetricsAddr: o.MetricsAddr,
	}
	// Cleanups run last-registered first: agents, then pins, then files;
	// the testbed (registered before) goes last.
	t.Cleanup(func() { os.RemoveAll(dir) })
	t.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(e.PinRoot, tb.ServerIf)); err == nil {
			if out, err := exec.Command(Bin, "detach", "--interface", tb.ServerIf, "--pin-dir", e.PinRoot).CombinedOutput(); err != nil {
				t.Logf("cleanup: detach: %v: %s", err, out)
			}
		}
		if err := os.RemoveAll(e.PinRoot); err != nil {
			t.Logf("cleanup: pins: %v", err)
		}
	})
	t.Cleanup(func() {
		for _, a := range e.Agents {
			a.Kill()
		}
	})
	if o.Receiver {
		e.Rcv, err = tb.NewReceiver(UDPPort, false)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Rcv.Close() })
	}
	if o.Sender {
		e.Snd, err = tb.NewSender()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Snd.Close() })
	}
	return e
}

// Agent is one `bulwark run` process.
type Agent struct {
	Cmd  *exec.Cmd
	Log  string        // the file of its stdout and stderr
	Done chan struct{} // closed when it has ended
	Err  error         // its Wait error; valid after Done
}

// Exited reports whether the process has ended.
func (a *Agent) Exited() bool {
	select {
	case <-a.Done:
		return true
	default:
		return false
	}
}

// Wait waits up to d for the process to end; false if it did not.
func (a *Agent) Wait(d time.Duration) bool {
	select {
	case <-a.Done:
		return true
	case <-time.After(d):
		return false
	}
}

// ExitCode is the exit code of an ended process (-1: killed by a signal or
// not run).
func (a *Agent) ExitCode() int {
	if a.Err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(a.Err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// Signal sends s to the process.
func (a *Agent) Signal(s syscall.Signal) error { return a.Cmd.Process.Signal(s) }

// Kill ends the process: SIGTERM, then SIGKILL after 5 s.
func (a *Agent) Kill() {
	if a.Exited() {
		return
	}
	_ = a.Cmd.Process.Signal(syscall.SIGTERM)
	if !a.Wait(5 * time.Second) {
		_ = a.Cmd.Process.Kill()
		a.Wait(5 * time.Second)
	}
}

// LogText is the process's output so far.
func (a *Agent) LogText() string {
	b, _ := os.ReadFile(a.Log)
	return string(b)
}

// Spawn starts `bulwark run --config path` (the env's config when path is
// "") in the server namespace; it does not wait for it to be ready.
func (e *Env) Spawn(path string) *Agent {
	e.T.Helper()
	// nsenter, not `ip netns exec`: only the network namespace changes, so
	// the host's bpffs (and the pins) stay visible. nsenter execs bulwark:
	// the pid is the agent's.
	return e.SpawnVia([]string{"nsenter", "--net=/var/run/netns/" + e.TB.Server}, path)
}

// SpawnVia is Spawn with enter, a command that runs its arguments in the
// server namespace and execs them, in front of bulwark: e.g. `ip netns
// exec NAME`, which also gives the agent a mount namespace of its own.
func (e *Env) SpawnVia(enter []string, path string, args ...string) *Agent {
	e.T.Helper()
	if path == "" {
		path = e.CfgPath
	}
	logf, err := os.CreateTemp(e.Dir, "agent-*.log")
	if err != nil {
		e.T.Fatal(err)
	}
	defer logf.Close()
	argv := append(append(append([]string(nil), enter[1:]...), Bin, "run", "--config", path), args...)
	cmd := exec.Command(enter[0], argv...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		e.T.Fatalf("start agent: %v", err)
	}
	a := &Agent{Cmd: cmd, Log: logf.Name(), Done: make(chan struct{})}
	go func() { a.Err = cmd.Wait(); close(a.Done) }()
	e.Agents = append(e.Agents, a)
	return a
}

// WaitReady polls ready every 50 ms until it holds; it fails the test if a
// exits first or after readyWithin.
func (e *Env) WaitReady(a *Agent, ready func() bool) {
	e.T.Helper()
	// Bounded, not a speed check: under load (two busy loops beside
	// make test on 2 CPUs) a start took over 20 s.
	deadline := time.Now().Add(readyWithin)
	for {
		if a.Exited() {
			e.T.Fatalf("agent exited early (%v):\n%s", a.Err, a.LogText())
		}
		if ready() {
			return
		}
		if time.Now().After(deadline) {
			e.T.Fatalf("agent not ready after %v:\n%s", readyWithin, a.LogText())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Start spawns an agent on the env's config and waits until its control
// socket answers `status --json`.
func (e *Env) Start() *Agent {
	e.T.Helper()
	a := e.Spawn("")
	e.WaitReady(a, func() bool { return e.CLI("status", "--json").Code == 0 })
	return a
}

// Result is how one bulwark command ended.
type Result struct {
	Stdout, Stderr string
	Code           int
}

func (r Result) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
}

// Exec runs the bulwark binary with args, stdout a pipe, bounded by
// timeout. The error is for a command that could not run, not for a
// non-zero exit.
func Exec(timeout time.Duration, args ...string) (Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, Bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := Result{Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.Code = ee.ExitCode()
	default:
		return r, err
	}
	return r, nil
}

// RunBin runs the bulwark binary with args, bounded in time (30 s); it
// fails t if the command could not run.
func RunBin(t testing.TB, args ...string) Result {
	t.Helper()
	r, err := Exec(30*time.Second, args...)
	if err != nil {
		t.Fatalf("run bulwark %v: %v", args, err)
	}
	return r
}

// CLI runs a bulwark command against the env's control socket.
func (e *Env) CLI(args ...string) Result {
	e.T.Helper()
	return RunBin(e.T, append([]string{"--socket", e.Sock}, args...)...)
}

// MustCLI runs a command that must succeed and returns its stdout.
func (e *Env) MustCLI(args ...string) string {
	e.T.Helper()
	r := e.CLI(args...)
	if r.Code != 0 {
		e.T.Fatalf("bulwark %s: %s", strings.Join(args, " "), r)
	}
	return r.Stdout
}

// ListEntry is one entry of `bulwark block list --json` (or allow).
type ListEntry struct {
	CIDR      string  `json:"cidr"`
	List      string  `json:"list"`
	Origin    string  `json:"origin"`
	ExpiresIn float64 `json:"expires_in_seconds"`
}

// List is `bulwark <name> list --json`, which must succeed.
func (e *Env) List(name string) []ListEntry {
	e.T.Helper()
	out := e.MustCLI(name, "list", "--json")
	var es []ListEntry
	if err := json.Unmarshal([]byte(out), &es); err != nil {
		e.T.Fatalf("%s list --json: %v: %q", name, err, out)
	}
	return es
}

// FindEntry is the entry of es for cidr.
func FindEntry(es []ListEntry, cidr string) (ListEntry, bool) {
	for _, x := range es {
		if x.CIDR == cidr {
			return x, true
		}
	}
	return ListEntry{}, false
}

// Frame is a UDP datagram from src to the server's UDPPort.
func (e *Env) Frame(src netip.Addr, seq uint64) []byte {
	p := netns.Payload(seq, 64)
	if src.Is4() {
		return netns.UDP4(e.TB.ServerMAC, e.TB.ClientMAC, src, netns.ServerAddr4, 40000, UDPPort, p)
	}
	return netns.UDP6(e.TB.ServerMAC, e.TB.ClientMAC, src, netns.ServerAddr6, 40000, UDPPort, p)
}

// Send sends n frames from src as fast as possible and waits for the
// receiver to settle; it returns how many of them arrived.
func (e *Env) Send(src netip.Addr, n int) int {
	e.T.Helper()
	got, _ := e.send(src, n)
	return got
}

// SendFlood sends n frames from src, a source the agent has not seen, as
// fast as possible, waits for the receiver to settle and returns how many
// arrived and whether that is what a fresh token bucket of burst and pps
// admits: at least the burst, at most the burst plus the refill over the
// time the sends took (plus a clock tick and one for rounding), so a busy
// machine that stretches the sends does not fail the check.
func (e *Env) SendFlood(src netip.Addr, n, burst, pps int) (int, bool) {
	e.T.Helper()
	got, took := e.send(src, n)
	hi := burst + int(math.Ceil(float64(pps)*(took+10*time.Millisecond).Seconds())) + 1
	return got, got >= min(n, burst) && got <= hi
}

// send sends n frames from src as fast as possible, waits for the receiver
// to settle, and returns how many arrived and the time from the first send
// to the last.
func (e *Env) send(src netip.Addr, n int) (int, time.Duration) {
	e.T.Helper()
	before := e.Rcv.Count(src)
	sent, took, err := e.Snd.Send([][]byte{e.Frame(src, 1)}, n, time.Now().Add(time.Minute), 0)
	if err != nil {
		e.T.Fatal(err)
	}
	if sent[0] != n {
		e.T.Fatalf("sent %d of %d frames from %s", sent[0], n, src)
	}
	e.Rcv.Settle(100*time.Millisecond, 10*time.Second)
	return e.Rcv.Count(src) - before, took
}

// Metrics scrapes the agent's /metrics at MetricsAddr from inside the
// server namespace.
func (e *Env) Metrics() MetricSet {
	e.T.Helper()
	return ParseMetrics(e.T, e.MetricsText())
}

// ServerClient is an HTTP client whose connections are made inside the
// server namespace, to reach listeners there (the agent's metrics).
func (e *Env) ServerClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			// The socket is made in the server namespace; it stays there.
			err := e.TB.InServer(func() error {
				var err error
				var d net.Dialer
				c, err = d.DialContext(ctx, network, addr)
				return err
			})
			return c, err
		}, DisableKeepAlives: true},
	}
}

// MetricsText is the agent's /metrics at MetricsAddr as served, scraped
// from inside the server namespace.
func (e *Env) MetricsText() string {
	e.T.Helper()
	resp, err := e.ServerClient(10 * time.Second).Get("http://" + e.MetricsAddr + "/metrics")
	if err != nil {
		e.T.Fatalf("scrape metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		e.T.Fatalf("scrape metrics: HTTP %d, %v", resp.StatusCode, err)
	}
	return string(body)
}

// Sample is one line of the text exposition format.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// MetricSet is one scrape.
type MetricSet []Sample

// ParseMetrics parses the text exposition format; it fails t on a bad line.
func ParseMetrics(t testing.TB, text string) MetricSet {
	var ms MetricSet
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("metrics: bad line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics: bad value in %q", line)
		}
		s := Sample{Labels: map[string]string{}, Value: v}
		series := line[:i]
		if j := strings.IndexByte(series, '{'); j >= 0 {
			s.Name = series[:j]
			for _, kv := range strings.Split(strings.TrimSuffix(series[j+1:], "}"), ",") {
				if kv == "" {
					continue
				}
				k, val, _ := strings.Cut(kv, "=")
				s.Labels[k], _ = strconv.Unquote(val)
			}
		} else {
			s.Name = series
		}
		ms = append(ms, s)
	}
	return ms
}

// Get sums the samples of name whose labels include want (k, v pairs).
func (ms MetricSet) Get(name string, want ...string) float64 {
	var sum float64
next:
	for _, s := range ms {
		if s.Name != name {
			continue
		}
		for i := 0; i+1 < len(want); i += 2 {
			if s.Labels[want[i]] != want[i+1] {
				continue next
			}
		}
		sum += s.Value
	}
	return sum
}

// WaitMetric polls the metrics until name{labels} == v or max passes; it
// returns the last value.
func (e *Env) WaitMetric(max time.Duration, v float64, name string, labels ...string) float64 {
	e.T.Helper()
	end := time.Now().Add(max)
	for {
		got := e.Metrics().Get(name, labels...)
		if got == v || time.Now().After(end) {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// AuditLog reads the env's audit log, one R per JSON line.
func AuditLog[R any](e *Env) []R {
	e.T.Helper()
	return JSONLines[R](e.T, e.Audit)
}

// JSONLines reads the file at path (an audit log), one R per non-blank JSON line; it fails t on an error.
func JSONLines[R any](t testing.TB, path string) []R {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("audit log: %v", err)
	}
	var rs []R
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" {
			continue
		}
		var r R
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("%s: line %q: %v", path, l, err)
		}
		rs = append(rs, r)
	}
	return rs
}

// RateLimitEngine is a reputation block whose score is a source's share of
// packets over the rate limit (ratelimit_drops, weight 100), every other
// component off, scored every 200 ms: a flood far over the limit is
// blocked (for 10 minutes), a source within it never is. maxVerdicts caps
// the engine's verdicts.
func RateLimitEngine(maxVerdicts int) string {
	return fmt.Sprintf(`
reputation {
  mode           = "enforce"
  interval       = "200ms"
  max_verdicts   = %d
  throttle_score = 80
  block_score    = 80
  block_for      = "10m"
  weights = {
    rate_anomaly    = 0
    syn_ratio       = 0
    port_scan       = 0
    ratelimit_drops = 100
    malformed       = 0
    repeat          = 0
    uniform_flood   = 0
  }
}
`, maxVerdicts)
}
