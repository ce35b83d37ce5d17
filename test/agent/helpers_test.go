// Package agent_test runs the real bulwark binary as an operator would: the
// agent in a throw-away server namespace (nsenter, so the host's bpffs holds
// the pins), the CLI over the control socket, signals to the process, and
// the metrics endpoint, with crafted frames from the client namespace.
package agent_test

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

	"github.com/bulwark-filter/bulwark/test/netns"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// bin is the bulwark binary TestMain builds.
var bin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "bulwark-agent-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if bin, err = testutil.BuildBulwark("../..", dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

const (
	udpPort     = 9000
	metricsAddr = "127.0.0.1:9740" // inside the server namespace
)

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// cfg is what the tests vary in the agent's config.
type cfg struct {
	PPS, Burst int      // default limit; 0: none
	Allow      []string // config allow list CIDRs
	Block      []string // config block list CIDRs
	Extra      string   // raw HCL appended at the end
	Socket     string   // "": the env's socket
	Metrics    *string  // nil: metricsAddr
}

func quoteList(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// env is one testbed with one agent config and its files.
type env struct {
	t       *testing.T
	tb      *netns.Testbed
	dir     string
	pinRoot string
	sock    string
	cfgPath string
	audit   string
	snd     *netns.Sender
	rcv     *netns.Receiver
	agents  []*agentProc
}

func newEnv(t *testing.T) *env {
	t.Helper()
	testutil.RequireRoot(t)
	tb := netns.New(t, netns.Options{})
	// A short directory: the socket path must fit in 107 bytes.
	dir, err := os.MkdirTemp("", "bwk-")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{
		t: t, tb: tb, dir: dir,
		pinRoot: "/sys/fs/bpf/bulwark-test-" + randHex(4),
		sock:    filepath.Join(dir, "bulwark.sock"),
		cfgPath: filepath.Join(dir, "bulwark.hcl"),
		audit:   filepath.Join(dir, "audit.jsonl"),
	}
	// Cleanups run last-registered first: agents, then pins, then files;
	// the testbed (registered before) goes last.
	t.Cleanup(func() { os.RemoveAll(dir) })
	t.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(e.pinRoot, tb.ServerIf)); err == nil {
			if out, err := exec.Command(bin, "detach", "--interface", tb.ServerIf, "--pin-dir", e.pinRoot).CombinedOutput(); err != nil {
				t.Logf("cleanup: detach: %v: %s", err, out)
			}
		}
		os.RemoveAll(e.pinRoot)
	})
	t.Cleanup(func() {
		for _, a := range e.agents {
			a.kill()
		}
	})
	e.rcv, err = tb.NewReceiver(udpPort, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.rcv.Close() })
	e.snd, err = tb.NewSender()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.snd.Close() })
	return e
}

// render is the HCL of c for this env.
func (e *env) render(c cfg) string {
	sock := c.Socket
	if sock == "" {
		sock = e.sock
	}
	m := metricsAddr
	if c.Metrics != nil {
		m = *c.Metrics
	}
	var b strings.Builder
	fmt.Fprintf(&b, "mode      = \"enforce\"\nmalformed = \"drop\"\npin_dir   = %q\n\n", e.pinRoot)
	fmt.Fprintf(&b, "interface %q {\n  attach = \"native\"\n}\n\n", e.tb.ServerIf)
	fmt.Fprintf(&b, "allow {\n  cidrs = %s\n}\n\nblock {\n  cidrs = %s\n}\n\n", quoteList(c.Allow), quoteList(c.Block))
	b.WriteString("limits {\n  ipv6_prefix = 64\n")
	if c.PPS > 0 {
		fmt.Fprintf(&b, "  default {\n    pps   = %d\n    burst = %d\n  }\n", c.PPS, c.Burst)
	}
	b.WriteString("}\n\n")
	fmt.Fprintf(&b, "metrics {\n  listen = %q\n}\n\n", m)
	fmt.Fprintf(&b, "log {\n  level      = \"debug\"\n  audit_file = %q\n}\n\n", e.audit)
	fmt.Fprintf(&b, "control {\n  socket = %q\n}\n\n", sock)
	b.WriteString("maps {\n  sources        = 4096\n  rule_buckets   = 4096\n  verdicts       = 1024\n" +
		"  allow_hosts    = 1024\n  allow_prefixes = 1024\n  block_hosts    = 1024\n  block_prefixes = 1024\n" +
		"  classes        = 256\n  events_ring_kib = 64\n}\n")
	b.WriteString(c.Extra)
	return b.String()
}

// writeConfig writes c to path (the env's config when path is "").
func (e *env) writeConfig(path string, c cfg) string {
	e.t.Helper()
	if path == "" {
		path = e.cfgPath
	}
	writeFile(e.t, path, e.render(c))
	return path
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	// Write and rename, so a reload never reads half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// agentProc is one `bulwark run` process.
type agentProc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error // valid after done
}

func (a *agentProc) exited() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// wait waits up to d for the process to end; false if it did not.
func (a *agentProc) wait(d time.Duration) bool {
	select {
	case <-a.done:
		return true
	case <-time.After(d):
		return false
	}
}

func (a *agentProc) exitCode() int {
	if a.err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(a.err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

func (a *agentProc) signal(s syscall.Signal) error { return a.cmd.Process.Signal(s) }

func (a *agentProc) kill() {
	if a.exited() {
		return
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	if !a.wait(5 * time.Second) {
		_ = a.cmd.Process.Kill()
		a.wait(5 * time.Second)
	}
}

func (a *agentProc) logText() string {
	b, _ := os.ReadFile(a.log)
	return string(b)
}

// spawn starts `bulwark run --config path` in the server namespace; it does
// not wait for it to be ready.
func (e *env) spawn(path string) *agentProc {
	e.t.Helper()
	if path == "" {
		path = e.cfgPath
	}
	logf, err := os.CreateTemp(e.dir, "agent-*.log")
	if err != nil {
		e.t.Fatal(err)
	}
	defer logf.Close()
	// nsenter, not `ip netns exec`: only the network namespace changes, so
	// the host's bpffs (and the pins) stay visible. nsenter execs bulwark:
	// the pid is the agent's.
	cmd := exec.Command("nsenter", "--net=/var/run/netns/"+e.tb.Server, bin, "run", "--config", path)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		e.t.Fatalf("start agent: %v", err)
	}
	a := &agentProc{cmd: cmd, log: logf.Name(), done: make(chan struct{})}
	go func() { a.err = cmd.Wait(); close(a.done) }()
	e.agents = append(e.agents, a)
	return a
}

// start starts an agent and waits until its control socket answers.
func (e *env) start() *agentProc {
	e.t.Helper()
	a := e.spawn("")
	deadline := time.Now().Add(20 * time.Second)
	for {
		if a.exited() {
			e.t.Fatalf("agent exited early (%v):\n%s", a.err, a.logText())
		}
		if r := e.cli("status", "--json"); r.code == 0 {
			return a
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("agent not ready after 20 s:\n%s", a.logText())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
}

// runBin runs the bulwark binary with args, bounded in time.
func runBin(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("run bulwark %v: %v", args, err)
	}
	return r
}

// cli runs a bulwark command against the env's control socket.
func (e *env) cli(args ...string) result {
	e.t.Helper()
	return runBin(e.t, append([]string{"--socket", e.sock}, args...)...)
}

// mustCLI runs a command that must succeed and returns its stdout.
func (e *env) mustCLI(args ...string) string {
	e.t.Helper()
	r := e.cli(args...)
	if r.code != 0 {
		e.t.Fatalf("bulwark %s: %s", strings.Join(args, " "), r)
	}
	return r.stdout
}

// listEntry is one entry of `bulwark block list --json`.
type listEntry struct {
	CIDR      string  `json:"cidr"`
	List      string  `json:"list"`
	Origin    string  `json:"origin"`
	ExpiresIn float64 `json:"expires_in_seconds"`
}

func (e *env) list(name string) []listEntry {
	e.t.Helper()
	out := e.mustCLI(name, "list", "--json")
	var es []listEntry
	if err := json.Unmarshal([]byte(out), &es); err != nil {
		e.t.Fatalf("%s list --json: %v: %q", name, err, out)
	}
	return es
}

func findEntry(es []listEntry, cidr string) (listEntry, bool) {
	for _, x := range es {
		if x.CIDR == cidr {
			return x, true
		}
	}
	return listEntry{}, false
}

// frame is a UDP datagram from src to the server.
func (e *env) frame(src netip.Addr, seq uint64) []byte {
	p := netns.Payload(seq, 64)
	if src.Is4() {
		return netns.UDP4(e.tb.ServerMAC, e.tb.ClientMAC, src, netns.ServerAddr4, 40000, udpPort, p)
	}
	return netns.UDP6(e.tb.ServerMAC, e.tb.ClientMAC, src, netns.ServerAddr6, 40000, udpPort, p)
}

// send sends n frames from src as fast as possible and waits for the
// receiver to settle; it returns how many of them arrived.
func (e *env) send(src netip.Addr, n int) int {
	e.t.Helper()
	before := e.rcv.Count(src)
	sent, _, err := e.snd.Send([][]byte{e.frame(src, 1)}, n, time.Now().Add(10*time.Second), 0)
	if err != nil {
		e.t.Fatal(err)
	}
	if sent[0] != n {
		e.t.Fatalf("sent %d of %d frames from %s", sent[0], n, src)
	}
	e.rcv.Settle(100*time.Millisecond, 3*time.Second)
	return e.rcv.Count(src) - before
}

// metrics scrapes the agent's /metrics from inside the server namespace.
func (e *env) metrics() metricSet {
	e.t.Helper()
	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			// The socket is made in the server namespace; it stays there.
			err := e.tb.InServer(func() error {
				var err error
				var d net.Dialer
				c, err = d.DialContext(ctx, network, addr)
				return err
			})
			return c, err
		}, DisableKeepAlives: true},
	}
	resp, err := client.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		e.t.Fatalf("scrape metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		e.t.Fatalf("scrape metrics: HTTP %d, %v", resp.StatusCode, err)
	}
	return parseMetrics(e.t, string(body))
}

// sample is one line of the text exposition format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

type metricSet []sample

func parseMetrics(t *testing.T, text string) metricSet {
	var ms metricSet
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
		s := sample{labels: map[string]string{}, value: v}
		series := line[:i]
		if j := strings.IndexByte(series, '{'); j >= 0 {
			s.name = series[:j]
			for _, kv := range strings.Split(strings.TrimSuffix(series[j+1:], "}"), ",") {
				if kv == "" {
					continue
				}
				k, val, _ := strings.Cut(kv, "=")
				s.labels[k], _ = strconv.Unquote(val)
			}
		} else {
			s.name = series
		}
		ms = append(ms, s)
	}
	return ms
}

// get sums the samples of name whose labels include want (k, v pairs).
func (ms metricSet) get(name string, want ...string) float64 {
	var sum float64
next:
	for _, s := range ms {
		if s.name != name {
			continue
		}
		for i := 0; i+1 < len(want); i += 2 {
			if s.labels[want[i]] != want[i+1] {
				continue next
			}
		}
		sum += s.value
	}
	return sum
}

// waitMetric polls the metrics until name{labels} == v or max passes.
func (e *env) waitMetric(max time.Duration, v float64, name string, labels ...string) float64 {
	e.t.Helper()
	end := time.Now().Add(max)
	for {
		got := e.metrics().get(name, labels...)
		if got == v || time.Now().After(end) {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// auditRecord is one line of the audit log.
type auditRecord struct {
	Who    string   `json:"who"`
	What   string   `json:"what"`
	Target []string `json:"target"`
	Why    string   `json:"why"`
	TTL    string   `json:"ttl"`
	Result string   `json:"result"`
	Detail string   `json:"detail"`
}

func (e *env) auditLog() []auditRecord {
	e.t.Helper()
	b, err := os.ReadFile(e.audit)
	if err != nil {
		e.t.Fatalf("audit log: %v", err)
	}
	var rs []auditRecord
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l == "" {
			continue
		}
		var r auditRecord
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			e.t.Fatalf("audit log line %q: %v", l, err)
		}
		rs = append(rs, r)
	}
	return rs
}

// pins lists the pin directory of the server veth.
func (e *env) pins() []string {
	es, err := os.ReadDir(filepath.Join(e.pinRoot, e.tb.ServerIf))
	if err != nil {
		return nil
	}
	var names []string
	for _, x := range es {
		names = append(names, x.Name())
	}
	return names
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// between reports whether lo <= v <= hi.
func between(v, lo, hi int) bool { return v >= lo && v <= hi }

func itoa(i int) string { return strconv.Itoa(i) }
