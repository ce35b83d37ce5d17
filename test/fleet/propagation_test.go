package fleet_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	testbed "github.com/bulwark-filter/bulwark/test/fleet"
	"github.com/bulwark-filter/bulwark/test/fleetbench"
)

// propEnv names the environment variable that turns
// TestFleetPropagationBench on: the file its figures are written to, as
// JSON. make bench sets it.
const propEnv = "BULWARK_FLEET_AGENTS_OUT"

// propFigures is what propagation measured.
type propFigures struct {
	Agents   int `json:"agents"`
	Servers  int `json:"servers"`
	Replicas int `json:"replicas"`
	Rate     int `json:"rate_per_s"`
	Verdicts int `json:"verdicts"`
	// Samples are the (agent, verdict) pairs seen in a kernel map; Missed
	// those never seen (the test fails on any).
	Samples        int     `json:"samples"`
	Missed         int     `json:"missed"`
	PublishSeconds float64 `json:"publish_seconds"`
	// Propagation over every (agent, verdict) pair: from the publisher's
	// Publish call to the first lookup that found the verdict in the
	// agent's kernel verdict map.
	P50MS float64 `json:"propagation_p50_ms"`
	P99MS float64 `json:"propagation_p99_ms"`
	MaxMS float64 `json:"propagation_max_ms"`
	// The same per verdict to the last agent that got it.
	LastP50MS float64 `json:"last_agent_p50_ms"`
	LastP99MS float64 `json:"last_agent_p99_ms"`
	LastMaxMS float64 `json:"last_agent_max_ms"`
	// The poll's error (see pollAll): a sample's verdict arrived after
	// the last lookup that missed it (for one found at its first lookup,
	// FirstLook of them, after the round before began) and before the
	// lookup that found it; Bound* are those spans. OutOfOrder counts
	// verdicts found while one before them was still missing: the poll
	// may have seen them late, by less than their batch's write.
	PollEveryMS float64 `json:"poll_pause_ms"`
	PollWindow  int     `json:"poll_window"`
	// Where the time went: from the Publish call to the stream's
	// timestamp (the stream leader stamps a message as it takes it,
	// before it replicates it), per verdict; from that timestamp to each
	// agent's kernel map (replication, delivery, the agent's client, the
	// kernel write), per (agent, verdict).
	StoredP50MS   float64 `json:"publish_to_stored_p50_ms"`
	StoredP99MS   float64 `json:"publish_to_stored_p99_ms"`
	StoredMaxMS   float64 `json:"publish_to_stored_max_ms"`
	ToKernelP50MS float64 `json:"stored_to_kernel_p50_ms"`
	ToKernelP99MS float64 `json:"stored_to_kernel_p99_ms"`
	ToKernelMaxMS float64 `json:"stored_to_kernel_max_ms"`
	Rounds        int     `json:"poll_rounds"`
	BoundP50MS    float64 `json:"poll_bound_p50_ms"`
	BoundP99MS    float64 `json:"poll_bound_p99_ms"`
	BoundMaxMS    float64 `json:"poll_bound_max_ms"`
	FirstLook     int     `json:"first_look_samples"`
	OutOfOrder    int     `json:"out_of_order_samples"`
	// CPU per verdict published, less what the same processes used per
	// second while idle (measured for idleFor before the run): each
	// agent's (the mean over agents: its fleet client, the merge, the
	// kernel writes, the audit), the servers' together; the idle rates;
	// and the measuring process's (the poller) per second of the run.
	AgentCPUUS      float64 `json:"agent_cpu_us_per_verdict"`
	ServerCPUUS     float64 `json:"server_cpu_us_per_verdict"`
	IdleSeconds     float64 `json:"idle_seconds"`
	AgentIdleCPUPS  float64 `json:"agent_idle_cpu_s_per_s"`
	ServerIdleCPUPS float64 `json:"server_idle_cpu_s_per_s"`
	PollerCPUPerS   float64 `json:"poller_cpu_s_per_s"`
	// Per second of the run, raw: CPU each agent used (the mean) and the
	// servers together, and the time their threads spent runnable but
	// waiting for a CPU (run-queue wait, /proc/PID/task/*/schedstat).
	AgentCPUPerS   float64 `json:"agent_cpu_s_per_s"`
	AgentWaitPerS  float64 `json:"agent_runqueue_wait_s_per_s"`
	ServerCPUPerS  float64 `json:"server_cpu_s_per_s"`
	ServerWaitPerS float64 `json:"server_runqueue_wait_s_per_s"`
	// Deliveries: the clients reading the bucket (the agents and the
	// publisher's own client), each sent every verdict.
	BucketClients int `json:"bucket_clients"`
	// Bytes on the wire (Ethernet frames on the fabric) per verdict, less
	// the idle rate as for the CPU: into each agent (the mean), out of the
	// servers together (deliveries to every client, the replication
	// between servers, the acks).
	AgentWireBytes  float64 `json:"agent_wire_bytes_per_verdict"`
	ServerWireBytes float64 `json:"server_wire_bytes_per_verdict"`
}

// idleFor is how long the fleet is watched idle before the run, for the
// CPU and bytes its processes use doing nothing.
const idleFor = 5 * time.Second

// usage is what the fleet's processes and links had used at a time.
type usage struct {
	at   time.Time
	cpu  []time.Duration // by pid, in the order given
	wait []time.Duration // run-queue wait, likewise
	wire map[string]testbed.LinkBytes
	self time.Duration // this process
}

// measure reads the CPU time of pids, b's fabric counters and this
// process's CPU time.
func measure(t *testing.T, b *testbed.Bed, pids []int) usage {
	t.Helper()
	u := usage{at: time.Now(), cpu: make([]time.Duration, len(pids)), wait: make([]time.Duration, len(pids)), self: selfCPU(t)}
	var err error
	for i, pid := range pids {
		if u.cpu[i], err = testbed.ProcessCPU(pid); err != nil {
			t.Fatal(err)
		}
		if u.wait[i], err = testbed.RunqueueWait(pid); err != nil {
			t.Fatal(err)
		}
	}
	if u.wire, err = b.FabricBytes(); err != nil {
		t.Fatal(err)
	}
	return u
}

// propagation builds a fleet of agents (real agents, XDP on their veths,
// small maps) on a 3-node JetStream cluster (replicas 3), runs the
// publisher (the real fleet client) on a host of the fabric at rate
// verdicts per second for seconds, and polls every agent's kernel verdict
// map through its pin until each verdict is in every map. Any verdict
// missing on an agent 2 minutes after the publisher ended (once its own
// client had them all from the bucket) fails the test.
func propagation(t *testing.T, agents, rate, seconds int) propFigures {
	total := rate * seconds
	if total < 1 || total > 32768 {
		t.Fatalf("%d verdicts: want 1 to 32,768 (the publisher's IPv4 targets)", total)
	}
	b := testbed.New(t, testbed.Options{Servers: 3, Agents: agents, Config: config(total, ""), Fleet: caps(total)})
	b.StartAll()
	converge(t, b, time.Now(), 2*time.Minute, 0)
	ps := make([]*polled, agents)
	for i, a := range b.Agents {
		ps[i] = &polled{v: a.OpenVerdicts(64), seen: make([]int64, total), miss: make([]int64, total), firstLook: make([]bool, total)}
	}
	host := b.Host()
	pids := func() []int {
		var p []int
		for _, a := range b.Agents {
			p = append(p, a.Proc.Cmd.Process.Pid)
		}
		for i := range b.NATS.Len() {
			p = append(p, b.NATS.Pid(i))
		}
		return p
	}()
	idle0 := measure(t, b, pids)
	time.Sleep(idleFor)
	run0 := measure(t, b, pids)

	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(seconds)*time.Second+5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", host, testbed.Publisher, "-servers", strings.Join(b.URLs(), ","),
		"-node", "pub", "-count", strconv.Itoa(total), "-rate", strconv.Itoa(rate), "-replicas", strconv.Itoa(b.Replicas()),
		"-timeout", (time.Duration(seconds)*time.Second + 4*time.Minute).String())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout = w
	err = cmd.Start()
	w.Close()
	if err != nil {
		t.Fatalf("publisher: %v", err)
	}
	an := &announced{target: make([]netip.Addr, total), sent: make([]int64, total), stored: make([]int64, total)}
	polled, pollDone := make(chan struct{}), make(chan error, 1)
	var rounds int
	go func() {
		var err error
		rounds, err = pollAll(ps, an, out, total, polled)
		pollDone <- err
	}()
	<-polled
	run1 := measure(t, b, pids)
	// The publisher's output to its end, and its exit.
	pollErr, waitErr := <-pollDone, cmd.Wait()
	if waitErr != nil {
		t.Fatalf("publisher: %v: %s", waitErr, stderr.String())
	}
	if pollErr != nil {
		t.Fatal(pollErr)
	}
	if rest := strings.TrimSpace(an.rest.String()); rest != "" {
		t.Logf("publisher: %s", rest)
	}
	if an.n != total {
		t.Fatalf("the publisher announced %d verdicts, want %d", an.n, total)
	}

	f := propFigures{Agents: agents, Servers: b.NATS.Len(), Replicas: b.Replicas(), Rate: rate, Verdicts: total,
		PublishSeconds: float64(an.sent[total-1]-an.sent[0]) / 1e9, PollEveryMS: pollEvery.Seconds() * 1e3, PollWindow: pollWindow,
		BucketClients: agents + 1}
	if an.nStored != total {
		t.Fatalf("the publisher found %d of %d verdicts in the stream", an.nStored, total)
	}
	// The stream's timestamps are Unix time: this host's wall clock, here
	// on CLOCK_MONOTONIC.
	m0 := testbed.MonoNow()
	wall := time.Now().UnixNano()
	offset := wall - int64(m0+testbed.MonoNow())/2
	var delays, bounds, last, stored, toKernel []float64
	ms := func(ns int64) float64 { return float64(ns) / 1e6 }
	for k := range total {
		at := an.stored[k] - offset
		stored = append(stored, ms(at-an.sent[k]))
		worst := int64(0)
		for i, p := range ps {
			if p.seen[k] == 0 {
				f.Missed++
				if f.Missed <= 10 {
					t.Errorf("%s: verdict %d (%s) never in its kernel map", b.Agents[i].Node, k, an.target[k])
				}
				continue
			}
			d := p.seen[k] - an.sent[k]
			if d <= 0 {
				t.Errorf("%s: verdict %d in the kernel map %d ns before its Publish call", b.Agents[i].Node, k, -d)
			}
			delays = append(delays, ms(d))
			toKernel = append(toKernel, ms(p.seen[k]-at))
			worst = max(worst, d)
			bounds = append(bounds, ms(p.seen[k]-p.miss[k]))
			if p.firstLook[k] {
				f.FirstLook++
			}
		}
		if worst > 0 {
			last = append(last, ms(worst))
		}
	}
	if f.Missed > 0 {
		t.Errorf("%d of %d (agent, verdict) pairs never seen in a kernel map", f.Missed, agents*total)
	}
	f.Samples, f.Rounds = len(delays), rounds
	for _, p := range ps {
		f.OutOfOrder += p.outOfOrder
	}
	f.P50MS, f.P99MS, f.MaxMS = rank(delays)
	f.LastP50MS, f.LastP99MS, f.LastMaxMS = rank(last)
	f.BoundP50MS, f.BoundP99MS, f.BoundMaxMS = rank(bounds)
	f.StoredP50MS, f.StoredP99MS, f.StoredMaxMS = rank(stored)
	f.ToKernelP50MS, f.ToKernelP99MS, f.ToKernelMaxMS = rank(toKernel)
	idleS, runS := run0.at.Sub(idle0.at).Seconds(), run1.at.Sub(run0.at).Seconds()
	f.IdleSeconds = idleS
	// net is a counter's growth during the run less its idle rate's (its
	// readings before the idle wait, then before and after the run), per
	// verdict.
	net := func(idle, start, end float64) float64 {
		return (end - start - (start-idle)/idleS*runS) / float64(total)
	}
	cpu := func(i int) (float64, float64, float64) {
		return idle0.cpu[i].Seconds(), run0.cpu[i].Seconds(), run1.cpu[i].Seconds()
	}
	for i := range agents + f.Servers {
		idle, start, _ := cpu(i)
		us, idleRate := 1e6*net(cpu(i)), (start-idle)/idleS
		cpuRate, waitRate := (run1.cpu[i]-run0.cpu[i]).Seconds()/runS, (run1.wait[i]-run0.wait[i]).Seconds()/runS
		if i < agents {
			f.AgentCPUUS += us / float64(agents)
			f.AgentIdleCPUPS += idleRate / float64(agents)
			f.AgentCPUPerS += cpuRate / float64(agents)
			f.AgentWaitPerS += waitRate / float64(agents)
		} else {
			f.ServerCPUUS += us
			f.ServerIdleCPUPS += idleRate
			f.ServerCPUPerS += cpuRate
			f.ServerWaitPerS += waitRate
		}
	}
	// Into an agent is toward its node; out of a server, from its node.
	into := func(link string) (float64, float64, float64) {
		return float64(idle0.wire[link].ToNode), float64(run0.wire[link].ToNode), float64(run1.wire[link].ToNode)
	}
	outOf := func(link string) (float64, float64, float64) {
		return float64(idle0.wire[link].FromNode), float64(run0.wire[link].FromNode), float64(run1.wire[link].FromNode)
	}
	for i := range agents {
		f.AgentWireBytes += net(into(fmt.Sprintf("a%d", i))) / float64(agents)
	}
	for i := range f.Servers {
		f.ServerWireBytes += net(outOf(fmt.Sprintf("n%d", i)))
	}
	f.PollerCPUPerS = (run1.self - run0.self).Seconds() / runS
	return f
}

// rank is the p50, p99 (nearest rank) and max of xs, zeros when empty.
func rank(xs []float64) (p50, p99, most float64) {
	if len(xs) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	at := func(p float64) float64 { return s[max(0, min(len(s)-1, int(p*float64(len(s))+0.999999)-1))] }
	return at(0.50), at(0.99), s[len(s)-1]
}

// selfCPU is the CPU time this process has used.
func selfCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// logFigures writes f's figures to the test log.
func logFigures(t *testing.T, f propFigures) {
	t.Helper()
	t.Logf("%d agents, %d verdicts at %d/s (published in %.1f s): propagation (Publish call -> kernel map) p50 %.1f ms, "+
		"p99 %.1f ms, max %.1f ms over %d samples, %d missed; to the last agent p50 %.1f, p99 %.1f, max %.1f ms; poll bound "+
		"p50 %.2f, p99 %.2f, max %.2f ms (%d found at their first look, %d out of order) in %d rounds; CPU per verdict: agent %.1f us, servers %.1f us; "+
		"poller %.2f CPU-s/s; wire bytes per verdict: %.0f into each agent, %.0f out of the servers; "+
		"publish -> stored p50 %.1f, p99 %.1f, max %.1f ms; stored -> kernel p50 %.1f, p99 %.1f, max %.1f ms; per second: "+
		"each agent %.3f CPU-s and %.3f s waiting for a CPU, the servers %.3f and %.3f",
		f.Agents, f.Verdicts, f.Rate, f.PublishSeconds, f.P50MS, f.P99MS, f.MaxMS, f.Samples, f.Missed, f.LastP50MS,
		f.LastP99MS, f.LastMaxMS, f.BoundP50MS, f.BoundP99MS, f.BoundMaxMS, f.FirstLook, f.OutOfOrder, f.Rounds, f.AgentCPUUS, f.ServerCPUUS,
		f.PollerCPUPerS, f.AgentWireBytes, f.ServerWireBytes, f.StoredP50MS, f.StoredP99MS, f.StoredMaxMS, f.ToKernelP50MS,
		f.ToKernelP99MS, f.ToKernelMaxMS, f.AgentCPUPerS, f.AgentWaitPerS, f.ServerCPUPerS, f.ServerWaitPerS)
}

// TestFleetPropagation is the propagation benchmark at a small size for
// make test: 3 agents, 100 verdicts per second for 3 s; every agent must
// have every verdict in its kernel map, each after its Publish call, and
// the figures must be ordered.
func TestFleetPropagation(t *testing.T) {
	const agents, rate, seconds = 3, 100, 3
	f := propagation(t, agents, rate, seconds)
	if f.Samples != agents*rate*seconds || f.Missed != 0 {
		t.Errorf("%d samples, %d missed: want %d, none", f.Samples, f.Missed, agents*rate*seconds)
	}
	if !(0 < f.P50MS && f.P50MS <= f.P99MS && f.P99MS <= f.MaxMS && f.LastMaxMS == f.MaxMS && f.P50MS <= f.LastP50MS) {
		t.Errorf("figures out of order: %+v", f)
	}
	if f.AgentWireBytes <= 0 || f.ServerWireBytes <= 0 {
		t.Errorf("no bytes counted on the fabric: %+v", f)
	}
	logFigures(t, f)
	summary(t, "%d agents, %d verdicts: propagation p50 %.1f ms, p99 %.1f ms, max %.1f ms", agents, f.Verdicts, f.P50MS, f.P99MS, f.MaxMS)
}

// TestFleetPropagationBench measures propagation at full size (-fleet.agents,
// -fleet.rate, -fleet.seconds) and writes the figures where propEnv says.
// It runs only in make bench.
func TestFleetPropagationBench(t *testing.T) {
	out := os.Getenv(propEnv)
	if out == "" {
		t.Skipf("SKIP: set %s=FILE to measure propagation to %d agents at %d verdicts/s for %d s (make bench does)",
			propEnv, *fleetbench.Agents, *fleetbench.Rate, *fleetbench.Seconds)
	}
	f := propagation(t, *fleetbench.Agents, *fleetbench.Rate, *fleetbench.Seconds)
	logFigures(t, f)
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
		t.Fatalf("write the figures: %v", err)
	}
}
