package evaluation_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
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
	dir, err := os.MkdirTemp("", "bulwark-eval-test-")
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

// metricsAddr is the agent's metrics listener, inside the server namespace.
const metricsAddr = "127.0.0.1:9741"

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// env is one testbed (client and server namespaces), its agent and files.
type env struct {
	t       *testing.T
	tb      *netns.Testbed
	dir     string
	pinRoot string
	sock    string
	cfgPath string
	audit   string
	snd     *netns.Sender
	agent   *agentProc
}

func newEnv(t *testing.T) *env {
	t.Helper()
	testutil.RequireRoot(t)
	tb := netns.New(t, netns.Options{})
	// A short directory: the socket path must fit in 107 bytes.
	dir, err := os.MkdirTemp("", "bwk-eval-")
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
	// Cleanups run last-registered first: the agent, then the pins, then
	// the files; the testbed (registered before) goes last.
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
		if e.agent != nil {
			e.agent.kill()
		}
	})
	e.snd, err = tb.NewSender()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.snd.Close() })
	return e
}

// config is the agent config of the evaluation: generous default limits
// (no well-behaved source comes near them), the reputation engine in mode,
// scoring every second, and extra HCL (feeds) appended.
func (e *env) config(mode, extra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "mode      = \"enforce\"\nmalformed = \"drop\"\npin_dir   = %q\n\n", e.pinRoot)
	fmt.Fprintf(&b, "interface %q {\n  attach = \"native\"\n}\n\n", e.tb.ServerIf)
	b.WriteString("limits {\n  ipv6_prefix = 64\n  default {\n    pps   = 500\n    burst = 1000\n  }\n}\n\n")
	fmt.Fprintf(&b, "metrics {\n  listen = %q\n}\n\n", metricsAddr)
	fmt.Fprintf(&b, "log {\n  level      = \"info\"\n  audit_file = %q\n}\n\n", e.audit)
	fmt.Fprintf(&b, "control {\n  socket = %q\n}\n\n", e.sock)
	b.WriteString("maps {\n  sources        = 65536\n  rule_buckets   = 4096\n  verdicts       = 4096\n" +
		"  allow_hosts    = 1024\n  allow_prefixes = 1024\n  block_hosts    = 4096\n  block_prefixes = 1024\n" +
		"  classes        = 256\n  events_ring_kib = 64\n}\n\n")
	fmt.Fprintf(&b, "reputation {\n  mode         = %q\n  interval     = \"1s\"\n  max_verdicts = 4096\n}\n\n", mode)
	b.WriteString(extra)
	return b.String()
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
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

func (a *agentProc) kill() {
	if a.exited() {
		return
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(5 * time.Second):
		_ = a.cmd.Process.Kill()
		select {
		case <-a.done:
		case <-time.After(5 * time.Second):
		}
	}
}

func (a *agentProc) logText() string {
	b, _ := os.ReadFile(a.log)
	return string(b)
}

// start writes the config, starts `bulwark run` in the server namespace
// (nsenter: only the network namespace changes, so the host's bpffs holds
// the pins) and waits until its control socket answers.
func (e *env) start(config string) {
	e.t.Helper()
	writeFile(e.t, e.cfgPath, config)
	logf, err := os.Create(filepath.Join(e.dir, "agent.log"))
	if err != nil {
		e.t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("nsenter", "--net=/var/run/netns/"+e.tb.Server, bin, "run", "--config", e.cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		e.t.Fatalf("start agent: %v", err)
	}
	a := &agentProc{cmd: cmd, log: logf.Name(), done: make(chan struct{})}
	go func() { a.err = cmd.Wait(); close(a.done) }()
	e.agent = a
	deadline := time.Now().Add(20 * time.Second)
	for {
		if a.exited() {
			e.t.Fatalf("agent exited early (%v):\n%s", a.err, a.logText())
		}
		if r := e.cli("status", "--json"); r.code == 0 {
			return
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

// cli runs a bulwark command against the env's control socket, bounded in
// time. It is safe to call from any goroutine (it never calls t.Fatal).
func (e *env) cli(args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--socket", e.sock}, args...)...)
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
		r.code, r.stderr = -1, err.Error()
	}
	return r
}

// verdictView is one entry of `bulwark verdicts list --json`.
type verdictView struct {
	Source    string  `json:"source"`
	Action    string  `json:"action"`
	Origin    string  `json:"origin"`
	Score     int     `json:"score"`
	ExpiresIn float64 `json:"expires_in_seconds"`
}

func (e *env) verdicts() ([]verdictView, error) {
	r := e.cli("verdicts", "list", "--json")
	if r.code != 0 {
		return nil, fmt.Errorf("verdicts list: %s", r)
	}
	var vs []verdictView
	if err := json.Unmarshal([]byte(r.stdout), &vs); err != nil {
		return nil, fmt.Errorf("verdicts list --json: %v: %q", err, r.stdout)
	}
	return vs, nil
}

// listEntry is one entry of `bulwark block list --json`.
type listEntry struct {
	CIDR      string  `json:"cidr"`
	List      string  `json:"list"`
	Origin    string  `json:"origin"`
	ExpiresIn float64 `json:"expires_in_seconds"`
}

func (e *env) blockList() ([]listEntry, error) {
	r := e.cli("block", "list", "--json")
	if r.code != 0 {
		return nil, fmt.Errorf("block list: %s", r)
	}
	var es []listEntry
	if err := json.Unmarshal([]byte(r.stdout), &es); err != nil {
		return nil, fmt.Errorf("block list --json: %v: %q", err, r.stdout)
	}
	return es, nil
}

// explanation is the part of `bulwark explain --json` the evaluation reads.
type explanation struct {
	Source     string  `json:"source"`
	Tracked    bool    `json:"tracked"`
	Score      float64 `json:"score"`
	Components []struct {
		Name         string  `json:"name"`
		Value        float64 `json:"value"`
		Contribution float64 `json:"contribution"`
		Weight       float64 `json:"weight"`
	} `json:"components"`
	Observed map[string]float64 `json:"observed"`
	Baseline map[string]float64 `json:"baseline"`
	Feeds    []struct {
		Feed   string  `json:"Feed"`
		Weight float64 `json:"Weight"`
	} `json:"feeds"`
	Active  *verdictRecord  `json:"active_verdict"`
	History []verdictRecord `json:"history"`
}

type verdictRecord struct {
	Source     string             `json:"source"`
	Action     string             `json:"action"`
	Score      float64            `json:"score"`
	At         time.Time          `json:"at"`
	Enforced   bool               `json:"enforced"`
	Components map[string]float64 `json:"components"`
}

func (e *env) explain(ip string) (explanation, string, error) {
	r := e.cli("explain", ip, "--json")
	if r.code != 0 {
		return explanation{}, "", fmt.Errorf("explain %s: %s", ip, r)
	}
	var x explanation
	if err := json.Unmarshal([]byte(r.stdout), &x); err != nil {
		return x, r.stdout, fmt.Errorf("explain --json: %v: %q", err, r.stdout)
	}
	return x, r.stdout, nil
}

// compact is JSON text on one line.
func compact(raw string) string {
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(raw)); err != nil {
		return strings.TrimSpace(raw)
	}
	return b.String()
}

// topComponent is the largest contribution of cs and its value.
func topComponent(cs map[string]float64) (string, float64) {
	name, best := "", -1.0
	for k, v := range cs {
		if v > best || (v == best && k < name) {
			name, best = k, v
		}
	}
	return name, best
}

// componentsText is cs as "name=v" in decreasing order, zeros left out.
func componentsText(cs map[string]float64) string {
	type kv struct {
		k string
		v float64
	}
	var l []kv
	for k, v := range cs {
		if v > 0 {
			l = append(l, kv{k, v})
		}
	}
	for i := range l {
		for j := i + 1; j < len(l); j++ {
			if l[j].v > l[i].v || (l[j].v == l[i].v && l[j].k < l[i].k) {
				l[i], l[j] = l[j], l[i]
			}
		}
	}
	var parts []string
	for _, x := range l {
		parts = append(parts, fmt.Sprintf("%s=%.1f", x.k, x.v))
	}
	return strings.Join(parts, " ")
}

// auditRecord is one line of the audit log.
type auditRecord struct {
	Time       time.Time          `json:"time"`
	Who        string             `json:"who"`
	What       string             `json:"what"`
	Target     []string           `json:"target"`
	Why        string             `json:"why"`
	TTL        string             `json:"ttl"`
	Result     string             `json:"result"`
	Score      float64            `json:"score"`
	Components map[string]float64 `json:"components"`
}

func (e *env) auditLog() []auditRecord {
	e.t.Helper()
	b, err := os.ReadFile(e.audit)
	if err != nil {
		e.t.Fatalf("audit log: %v", err)
	}
	var rs []auditRecord
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
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

// metrics scrapes the agent's /metrics from inside the server namespace.
func (e *env) metrics() metricSet {
	e.t.Helper()
	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
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

// TCP flags.
const (
	tcpSYN = 0x02
	tcpPSH = 0x08
	tcpACK = 0x10
)

func csum(sum uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	return sum
}

func fold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = (sum >> 16) + (sum & 0xffff)
	}
	return ^uint16(sum)
}

// tcp4 is an Ethernet/IPv4/TCP frame with valid checksums and payload
// bytes of data after the header.
func tcp4(dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, sport, dport uint16, flags uint8, seq uint32, payload int) []byte {
	tcp := make([]byte, 20+payload)
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint16(tcp[2:], dport)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	if flags&tcpACK != 0 {
		binary.BigEndian.PutUint32(tcp[8:], 1)
	}
	tcp[12] = 5 << 4
	tcp[13] = flags
	binary.BigEndian.PutUint16(tcp[14:], 64240)
	if payload >= 16 {
		copy(tcp[20:], netns.Payload(uint64(seq), payload))
	}
	s, d := src.As4(), dst.As4()
	ps := csum(0, s[:])
	ps = csum(ps, d[:])
	ps += 6 + uint32(len(tcp))
	binary.BigEndian.PutUint16(tcp[16:], fold(csum(ps, tcp)))

	ip := make([]byte, 20)
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(tcp)))
	ip[6] = 0x40 // DF
	ip[8] = 64
	ip[9] = 6
	copy(ip[12:16], s[:])
	copy(ip[16:20], d[:])
	binary.BigEndian.PutUint16(ip[10:], fold(csum(0, ip)))

	f := make([]byte, 14, 14+len(ip)+len(tcp))
	copy(f[0:6], dstMAC)
	copy(f[6:12], srcMAC)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	f = append(f, ip...)
	return append(f, tcp...)
}
