// Package fleet is the fleet testbed: real bulwark agents and real NATS
// JetStream servers, each in a network namespace of its own, joined by a
// fabric namespace with a bridge (198.19.0.0/16); every agent has XDP on
// its own veth to a client namespace that sends 198.18.x.y frames at it
// (test/agenttest's testbed, one per agent). The scenario tests of the
// fleet (issue 12) and `make demo-fleet` run on it.
//
// Everything is made under unique names and removed when the test ends,
// also when it fails: agents, servers, namespaces, pins, directories.
package fleet

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bulwark-filter/bulwark/agent/api"
	"github.com/bulwark-filter/bulwark/bpf"
	"github.com/bulwark-filter/bulwark/loader"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/agenttest"
	"github.com/bulwark-filter/bulwark/test/netns"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// Publisher is the bulk publisher (test/fleet/publisher) Main builds.
var Publisher string

// Main builds the publisher and the bulwark binary (see agenttest.Main)
// once for the test binary and runs m; it returns the exit code for
// os.Exit. It is meant for TestMain of test/fleet's tests.
func Main(m *testing.M) int {
	dir, err := os.MkdirTemp("", "bulwark-fleet-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if Publisher, err = testutil.BuildCmd("../..", dir, "./test/fleet/publisher"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return agenttest.Main(m, "bulwark-fleet-test-")
}

// fabricIf is the name of each node's link to the fabric, inside the
// node's namespace.
const fabricIf = "fab0"

// ServerAddr is the fabric address of NATS server i (from 0).
func ServerAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 19, 0, byte(i + 1)}) }

// AgentAddr is the fabric address of agent i (from 0).
func AgentAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 19, 1, byte(i + 1)}) }

// NodeName is the fleet node name of agent i (from 0): agent-1, agent-2...
func NodeName(i int) string { return fmt.Sprintf("agent-%d", i+1) }

// Options shape a Bed.
type Options struct {
	// Servers is the number of NATS servers (a JetStream cluster when
	// more than 1); Agents the number of agents (at most 250 each).
	Servers, Agents int
	// Config is agent i's config before its fleet block; nil: the zero
	// agenttest.Config (small maps).
	Config func(i int) agenttest.Config
	// Fleet is extra HCL inside agent i's fleet block (e.g. caps); nil:
	// none.
	Fleet func(i int) string
	// Node is agent i's fleet node name; nil: NodeName(i).
	Node func(i int) string
	// NoFleet leaves agent i without a fleet block (a host that is not
	// part of the fleet); nil: every agent has one.
	NoFleet func(i int) bool
	// DebianServer runs Debian's packaged nats-server (2.9) instead of
	// the pinned one.
	DebianServer bool
	// ServerConfig is appended to every server's configuration (e.g. tls
	// and authorization blocks).
	ServerConfig string
}

// Bed is one fleet testbed.
type Bed struct {
	T       testing.TB
	Opts    Options
	Fabric  string   // the fabric namespace (bridge br0)
	Servers []string // the namespace of each NATS server
	NATS    *Servers // the NATS server processes
	Agents  []*Agent
	Hosts   []string // namespaces of Host, hosts without an agent
}

// Agent is one host of the fleet: an agenttest env (its server namespace
// is the agent's namespace, with XDP on the veth to its client namespace)
// linked to the fabric.
type Agent struct {
	*agenttest.Env
	Index int
	Node  string     // fleet node name
	Addr  netip.Addr // fabric address
	Proc  *agenttest.Agent
	bed   *Bed
}

// New builds a testbed, starts its NATS servers and writes each agent's
// config; it starts no agent (StartAll, Agent.Start). It skips t when not
// root.
func New(t testing.TB, o Options) *Bed {
	t.Helper()
	testutil.RequireRoot(t)
	if o.Agents > 250 || o.Servers > 250 {
		t.Fatalf("testbed: at most 250 agents and 250 servers, got %d and %d", o.Agents, o.Servers)
	}
	b := &Bed{T: t, Opts: o, Fabric: "bwk-f-" + agenttest.RandHex(4)}
	// Namespaces go last (cleanups run last-registered first).
	t.Cleanup(b.destroy)
	if err := ipCmd("netns", "add", b.Fabric); err != nil {
		t.Fatalf("testbed: %v", err)
	}
	b.must(ipCmd("-n", b.Fabric, "link", "set", "lo", "up"))
	b.must(ipCmd("-n", b.Fabric, "link", "add", "br0", "type", "bridge"))
	b.must(ipCmd("-n", b.Fabric, "link", "set", "br0", "up"))
	for i := range o.Servers {
		ns := fmt.Sprintf("bwk-n%d-%s", i, b.Fabric[len("bwk-f-"):])
		if err := ipCmd("netns", "add", ns); err != nil {
			t.Fatalf("testbed: %v", err)
		}
		b.Servers = append(b.Servers, ns)
		b.must(ipCmd("-n", ns, "link", "set", "lo", "up"))
		b.link(ns, fmt.Sprintf("n%d", i), ServerAddr(i))
	}
	if o.Servers > 0 {
		b.NATS = startServers(t, b.Servers, ServerAddrs(o.Servers), o.DebianServer, o.ServerConfig)
	}
	for i := range o.Agents {
		e := agenttest.NewEnv(t, agenttest.Options{DirPrefix: "bwkf-", MetricsAddr: "127.0.0.1:9740", Receiver: true, Sender: true})
		a := &Agent{Env: e, Index: i, Node: NodeName(i), Addr: AgentAddr(i), bed: b}
		if o.Node != nil {
			a.Node = o.Node(i)
		}
		b.link(e.TB.Server, fmt.Sprintf("a%d", i), a.Addr)
		a.WriteConfig(nil)
		b.Agents = append(b.Agents, a)
	}
	return b
}

// ServerAddrs are the fabric addresses of n servers.
func ServerAddrs(n int) []netip.Addr {
	as := make([]netip.Addr, n)
	for i := range as {
		as[i] = ServerAddr(i)
	}
	return as
}

func (b *Bed) must(err error) {
	if err != nil {
		b.T.Helper()
		b.T.Fatalf("testbed: %v", err)
	}
}

// link joins namespace ns to the fabric bridge with a veth pair (fabName
// on the fabric side, fabricIf on ns's side, addr/16 on it).
func (b *Bed) link(ns, fabName string, addr netip.Addr) {
	b.T.Helper()
	b.must(ipCmd("-n", b.Fabric, "link", "add", fabName, "type", "veth", "peer", "name", fabricIf, "netns", ns))
	b.must(ipCmd("-n", b.Fabric, "link", "set", fabName, "master", "br0"))
	b.must(ipCmd("-n", b.Fabric, "link", "set", fabName, "up"))
	b.must(ipCmd("-n", ns, "addr", "add", addr.String()+"/16", "dev", fabricIf))
	b.must(ipCmd("-n", ns, "link", "set", fabricIf, "up"))
}

// Host adds a namespace linked to the fabric at 198.19.2.x, for a fleet
// client without an agent (the publisher), and returns its name.
func (b *Bed) Host() string {
	b.T.Helper()
	i := len(b.Hosts)
	ns := fmt.Sprintf("bwk-h%d-%s", i, b.Fabric[len("bwk-f-"):])
	b.must(ipCmd("netns", "add", ns))
	b.Hosts = append(b.Hosts, ns)
	b.must(ipCmd("-n", ns, "link", "set", "lo", "up"))
	b.link(ns, fmt.Sprintf("h%d", i), netip.AddrFrom4([4]byte{198, 19, 2, byte(i + 1)}))
	return ns
}

func (b *Bed) destroy() {
	for _, ns := range append(b.Hosts, b.Servers...) {
		_ = ipCmd("netns", "del", ns)
	}
	_ = ipCmd("netns", "del", b.Fabric)
}

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// URLs are the NATS URLs of the servers on the fabric.
func (b *Bed) URLs() []string { return b.NATS.URLs() }

// Replicas is the bucket's replica count for the bed: 3, or the number of
// servers when fewer.
func (b *Bed) Replicas() int { return min(3, len(b.Servers)) }

// FleetBlock is agent a's fleet block: the bed's servers, its node name,
// the replicas and Options.Fleet.
func (a *Agent) FleetBlock() string {
	b := a.bed
	q := make([]string, 0, len(b.Servers))
	for _, u := range b.URLs() {
		q = append(q, fmt.Sprintf("%q", u))
	}
	extra := ""
	if b.Opts.Fleet != nil {
		extra = b.Opts.Fleet(a.Index)
	}
	return fmt.Sprintf("\nfleet {\n  servers  = [%s]\n  node     = %q\n  replicas = %d\n%s}\n",
		strings.Join(q, ", "), a.Node, b.Replicas(), extra)
}

// WriteConfig writes a's config: c (nil: Options.Config's, or the zero
// Config) with the fleet block appended unless Options.NoFleet says not.
func (a *Agent) WriteConfig(c *agenttest.Config) {
	a.T.Helper()
	var cfg agenttest.Config
	switch {
	case c != nil:
		cfg = *c
	case a.bed.Opts.Config != nil:
		cfg = a.bed.Opts.Config(a.Index)
	}
	if nf := a.bed.Opts.NoFleet; nf == nil || !nf(a.Index) {
		cfg.Extra += a.FleetBlock()
	}
	a.Env.WriteConfig("", cfg)
}

// StartAll starts every agent at once and waits until each answers on its
// control socket.
func (b *Bed) StartAll() {
	b.T.Helper()
	for _, a := range b.Agents {
		a.Proc = a.Spawn("")
	}
	for _, a := range b.Agents {
		a.waitReady()
	}
}

// Start starts agent a and waits until it answers on its control socket.
func (a *Agent) Start() {
	a.T.Helper()
	a.Proc = a.Spawn("")
	a.waitReady()
}

func (a *Agent) waitReady() {
	a.T.Helper()
	a.WaitReady(a.Proc, func() bool { return a.CLI("status", "--json").Code == 0 })
}

// Stop ends agent a (SIGTERM, then SIGKILL after 5 s); its XDP program and
// pinned maps stay (fail-static), as after a real stop.
func (a *Agent) Stop() {
	if a.Proc != nil {
		a.Proc.Kill()
	}
}

// partitionTable is the nft table Partition adds in an agent's namespace.
const partitionTable = "bwk_partition"

// Partition cuts agent a off the fabric: nft rules in its namespace drop
// everything in and out of its fabric link (the TCP connections to the
// servers stay open, as in a real partition). Heal removes them.
func (a *Agent) Partition() {
	a.T.Helper()
	rules := fmt.Sprintf(`table inet %[1]s {
  chain in { type filter hook input priority -300; policy accept; iifname %[2]q drop; }
  chain out { type filter hook output priority -300; policy accept; oifname %[2]q drop; }
}
`, partitionTable, fabricIf)
	cmd := exec.Command("ip", "netns", "exec", a.TB.Server, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		a.T.Fatalf("partition %s: nft: %v: %s", a.Node, err, out)
	}
}

// Heal undoes Partition.
func (a *Agent) Heal() {
	a.T.Helper()
	if out, err := exec.Command("ip", "netns", "exec", a.TB.Server, "nft", "delete", "table", "inet", partitionTable).CombinedOutput(); err != nil {
		a.T.Fatalf("heal %s: nft: %v: %s", a.Node, err, out)
	}
}

// Status is `bulwark fleet status --json`.
type Status = api.FleetStatus

// FleetStatus is agent a's `bulwark fleet status --json`, which must
// succeed.
func (a *Agent) FleetStatus() Status {
	a.T.Helper()
	out := a.MustCLI("fleet", "status", "--json")
	var s Status
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		a.T.Fatalf("%s: fleet status --json: %v: %q", a.Node, err, out)
	}
	return s
}

// Verdicts reads agent a's kernel verdict map through its pin (not through
// the agent): the verdicts in force now, by source.
type Verdicts struct {
	m      *ebpf.Map
	prefix int
}

// OpenVerdicts opens agent a's pinned verdict map (the agent must have
// started once); it is closed when the test ends. v6prefix is the agent's
// IPv6 tracking prefix.
func (a *Agent) OpenVerdicts(v6prefix int) *Verdicts {
	a.T.Helper()
	p := filepath.Join(loader.PinDir(a.PinRoot, a.TB.ServerIf), "verdicts")
	m, err := ebpf.LoadPinnedMap(p, &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		a.T.Fatalf("%s: open the verdict map: %v", a.Node, err)
	}
	a.T.Cleanup(func() { m.Close() })
	return &Verdicts{m: m, prefix: v6prefix}
}

// MonoNow is CLOCK_MONOTONIC in nanoseconds, the kernel's verdict clock.
func MonoNow() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	return uint64(ts.Nano())
}

// Get is the verdict in force on src's source (expired ones are absent):
// its action and origin; ok false when none.
func (v *Verdicts) Get(src netip.Addr) (maps.VerdictAction, maps.Origin, bool) {
	var val bpf.BulwarkVerdict
	key := bpf.BulwarkSrcKey{Addr: maps.SourceKey(src, v.prefix)}
	if err := v.m.Lookup(key, &val); err != nil || val.ExpiresNs <= MonoNow() {
		return 0, 0, false
	}
	return maps.VerdictAction(val.Action), maps.Origin(val.Origin), true
}

// Count is the number of verdicts in force, read in batches (a syscall
// per countBatch entries, so that a 1M map is counted in a fraction of a
// second).
func (v *Verdicts) Count() (int, error) {
	now := MonoNow()
	keys := make([]bpf.BulwarkSrcKey, countBatch)
	vals := make([]bpf.BulwarkVerdict, countBatch)
	var cursor ebpf.MapBatchCursor
	total := 0
	for {
		n, err := v.m.BatchLookup(&cursor, keys, vals, nil)
		for _, val := range vals[:n] {
			if val.ExpiresNs > now {
				total++
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return total, nil
		}
		if err != nil {
			return 0, fmt.Errorf("walk verdicts: %w", err)
		}
	}
}

// countBatch is how many verdicts Count reads per syscall.
const countBatch = 8192

// SendPorts sends one UDP frame from src to each of ports on a's server
// address (from its client namespace, through its XDP program), e.g. a
// slow scan's probes, and returns how many reached a's stack on
// agenttest.UDPPort (frames to other ports reach no socket).
func (a *Agent) SendPorts(src netip.Addr, ports []uint16) int {
	a.T.Helper()
	before := a.Rcv.Count(src)
	tb := a.TB
	frames := make([][]byte, len(ports))
	for i, p := range ports {
		frames[i] = netns.UDP4(tb.ServerMAC, tb.ClientMAC, src, netns.ServerAddr4, 40000, p, netns.Payload(uint64(i), 64))
	}
	sent, _, err := a.Snd.Send(frames, len(frames), time.Now().Add(time.Minute), 0)
	if err != nil {
		a.T.Fatalf("%s: send: %v", a.Node, err)
	}
	for i, n := range sent {
		if n != 1 {
			a.T.Fatalf("%s: frame %d to port %d sent %d times, want once", a.Node, i, ports[i], n)
		}
	}
	a.Rcv.Settle(100*time.Millisecond, 10*time.Second)
	return a.Rcv.Count(src) - before
}

// WaitAll polls cond on every agent until it holds on all of them, and
// returns when each first held (measured from start); it fails the test
// after max.
func (b *Bed) WaitAll(start time.Time, limit time.Duration, what string, cond func(a *Agent) bool) []time.Duration {
	b.T.Helper()
	at := make([]time.Duration, len(b.Agents))
	done := 0
	deadline := start.Add(limit)
	for done < len(b.Agents) {
		for i, a := range b.Agents {
			if at[i] == 0 && cond(a) {
				at[i] = max(time.Since(start), time.Nanosecond)
				done++
			}
		}
		if done < len(b.Agents) {
			if time.Now().After(deadline) {
				var late []string
				for i, a := range b.Agents {
					if at[i] == 0 {
						late = append(late, a.Node)
					}
				}
				b.T.Fatalf("timed out after %s waiting for %s on %s", limit, what, strings.Join(late, ", "))
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	return at
}
