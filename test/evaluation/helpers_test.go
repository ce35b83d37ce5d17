package evaluation_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/test/agenttest"
	"github.com/bulwark-filter/bulwark/test/netns"
)

func TestMain(m *testing.M) {
	os.Exit(agenttest.Main(m, "bulwark-eval-test-"))
}

// metricsAddr is the agent's metrics listener, inside the server namespace.
const metricsAddr = "127.0.0.1:9741"

// env is one testbed (client and server namespaces), its agent and files.
type env struct {
	*agenttest.Env
	agent *agenttest.Agent
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return &env{Env: agenttest.NewEnv(t, agenttest.Options{DirPrefix: "bwk-eval-", MetricsAddr: metricsAddr, Sender: true})}
}

// config is the agent config of the evaluation: generous default limits
// (no well-behaved source comes near them), the reputation engine in mode,
// scoring every second, and extra HCL (feeds) appended.
func (e *env) config(mode, extra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "mode      = \"enforce\"\nmalformed = \"drop\"\npin_dir   = %q\n\n", e.PinRoot)
	fmt.Fprintf(&b, "interface %q {\n  attach = \"native\"\n}\n\n", e.TB.ServerIf)
	b.WriteString("limits {\n  ipv6_prefix = 64\n  default {\n    pps   = 500\n    burst = 1000\n  }\n}\n\n")
	fmt.Fprintf(&b, "metrics {\n  listen = %q\n}\n\n", metricsAddr)
	fmt.Fprintf(&b, "log {\n  level      = \"info\"\n  audit_file = %q\n}\n\n", e.Audit)
	fmt.Fprintf(&b, "control {\n  socket = %q\n}\n\n", e.Sock)
	fmt.Fprintf(&b, "events {\n  dir = %q\n}\n\n", filepath.Join(e.Dir, "drops"))
	b.WriteString("maps {\n  sources        = 65536\n  rule_buckets   = 4096\n  verdicts       = 4096\n" +
		"  allow_hosts    = 1024\n  allow_prefixes = 1024\n  block_hosts    = 4096\n  block_prefixes = 1024\n" +
		"  classes        = 256\n  events_ring_kib = 64\n}\n\n")
	fmt.Fprintf(&b, "reputation {\n  mode         = %q\n  interval     = \"1s\"\n  max_verdicts = 4096\n}\n\n", mode)
	b.WriteString(extra)
	return b.String()
}

// start writes the config, starts `bulwark run` in the server namespace
// and waits until its control socket answers.
func (e *env) start(config string) {
	e.T.Helper()
	agenttest.WriteFile(e.T, e.CfgPath, config)
	e.agent = e.Spawn("")
	e.WaitReady(e.agent, func() bool { return e.cli("status", "--json").Code == 0 })
}

// cli runs a bulwark command against the env's control socket, bounded in
// time. It is safe to call from any goroutine (it never calls t.Fatal).
func (e *env) cli(args ...string) agenttest.Result {
	r, err := agenttest.Exec(10*time.Second, append([]string{"--socket", e.Sock}, args...)...)
	if err != nil {
		r.Code, r.Stderr = -1, err.Error()
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
	if r.Code != 0 {
		return nil, fmt.Errorf("verdicts list: %s", r)
	}
	var vs []verdictView
	if err := json.Unmarshal([]byte(r.Stdout), &vs); err != nil {
		return nil, fmt.Errorf("verdicts list --json: %v: %q", err, r.Stdout)
	}
	return vs, nil
}

func (e *env) blockList() ([]agenttest.ListEntry, error) {
	r := e.cli("block", "list", "--json")
	if r.Code != 0 {
		return nil, fmt.Errorf("block list: %s", r)
	}
	var es []agenttest.ListEntry
	if err := json.Unmarshal([]byte(r.Stdout), &es); err != nil {
		return nil, fmt.Errorf("block list --json: %v: %q", err, r.Stdout)
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
	if r.Code != 0 {
		return explanation{}, "", fmt.Errorf("explain %s: %s", ip, r)
	}
	var x explanation
	if err := json.Unmarshal([]byte(r.Stdout), &x); err != nil {
		return x, r.Stdout, fmt.Errorf("explain --json: %v: %q", err, r.Stdout)
	}
	return x, r.Stdout, nil
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
	e.T.Helper()
	return agenttest.AuditLog[auditRecord](e.Env)
}

// TCP flags.
const (
	tcpSYN = 0x02
	tcpPSH = 0x08
	tcpACK = 0x10
)

// tcpSegment is a TCP header (window 64240, no options) and payload with a
// valid checksum over the pseudo-header of src and dst (4 or 16 bytes each).
func tcpSegment(src, dst []byte, sport, dport uint16, flags uint8, seq uint32, payload []byte) []byte {
	tcp := make([]byte, 20+len(payload))
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint16(tcp[2:], dport)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	if flags&tcpACK != 0 {
		binary.BigEndian.PutUint32(tcp[8:], 1)
	}
	tcp[12] = 5 << 4
	tcp[13] = flags
	binary.BigEndian.PutUint16(tcp[14:], 64240)
	copy(tcp[20:], payload)
	ps := netns.ChecksumAdd(0, src)
	ps = netns.ChecksumAdd(ps, dst)
	ps += 6 + uint32(len(tcp))
	binary.BigEndian.PutUint16(tcp[16:], netns.ChecksumFold(netns.ChecksumAdd(ps, tcp)))
	return tcp
}

// tcp4 is an Ethernet/IPv4/TCP frame with valid checksums and payload
// bytes of data after the header.
func tcp4(dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, sport, dport uint16, flags uint8, seq uint32, payload int) []byte {
	data := make([]byte, payload)
	if payload >= 16 {
		copy(data, netns.Payload(uint64(seq), payload))
	}
	s, d := src.As4(), dst.As4()
	tcp := tcpSegment(s[:], d[:], sport, dport, flags, seq, data)

	ip := make([]byte, 20)
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(tcp)))
	ip[6] = 0x40 // DF
	ip[8] = 64
	ip[9] = 6
	copy(ip[12:16], s[:])
	copy(ip[16:20], d[:])
	binary.BigEndian.PutUint16(ip[10:], netns.ChecksumFold(netns.ChecksumAdd(0, ip)))

	f := make([]byte, 14, 14+len(ip)+len(tcp))
	copy(f[0:6], dstMAC)
	copy(f[6:12], srcMAC)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	f = append(f, ip...)
	return append(f, tcp...)
}
