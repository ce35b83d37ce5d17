package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulwark-filter/bulwark/agent/fleet"
	testbed "github.com/bulwark-filter/bulwark/test/fleet"
	"github.com/bulwark-filter/bulwark/test/fleetbench"
	"github.com/bulwark-filter/bulwark/test/natstest"
)

// fleetEnv names the environment variable that turns TestFleetBench on: the
// file its figures are written to, as JSON. make bench sets it.
const fleetEnv = "BULWARK_FLEET_OUT"

// The full-size fleet benchmark's parameters: test/fleetbench's flags.
var (
	fleetClients  = fleetbench.Clients
	fleetRate     = fleetbench.Rate
	fleetSeconds  = fleetbench.Seconds
	fleetColdSync = fleetbench.ColdSync
)

// fleetFigures is what TestFleetBench measured.
type fleetFigures struct {
	Clients        int     `json:"clients"`
	Rate           int     `json:"rate_per_s"`
	Verdicts       int     `json:"verdicts"`
	Samples        int     `json:"samples"` // (client, verdict) pairs applied
	PublishSeconds float64 `json:"publish_seconds"`
	P50MS          float64 `json:"propagation_p50_ms"`
	P99MS          float64 `json:"propagation_p99_ms"`
	MaxMS          float64 `json:"propagation_max_ms"`
	// ClientCPUUS is the CPU time of the benchmark's process (the clients,
	// and the publisher's little) per verdict per client, in microseconds.
	ClientCPUUS float64 `json:"client_cpu_us_per_verdict"`
	ColdSync    int     `json:"coldsync_verdicts"`
	ColdSyncS   float64 `json:"coldsync_seconds"`
	// ColdSyncCPUS and ColdSyncServerCPUS are the fresh client's and the
	// server's CPU time during the cold sync; ColdSyncHeapB the heap the
	// client holds after it, per verdict.
	ColdSyncCPUS       float64 `json:"coldsync_cpu_seconds"`
	ColdSyncServerCPUS float64 `json:"coldsync_server_cpu_seconds"`
	ColdSyncHeapB      float64 `json:"coldsync_heap_bytes_per_verdict"`
}

// benchTarget is the i-th verdict's target (i < 131072), in 198.18.0.0/15.
func benchTarget(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18 + byte(i>>16), byte(i >> 8), byte(i)}), 32)
}

func benchIndex(p netip.Prefix) int {
	a := p.Addr().As4()
	return int(a[1]-18)<<16 | int(a[2])<<8 | int(a[3])
}

// timeApplier records when each verdict was first applied (unix ns, by
// verdict index) and how many were.
type timeApplier struct {
	at    []atomic.Int64
	count atomic.Int64
}

func (a *timeApplier) Apply(changes []fleet.Change) map[netip.Prefix]string {
	now := time.Now().UnixNano()
	for _, c := range changes {
		if c.Remove {
			continue
		}
		if i := benchIndex(c.Target); i >= 0 && i < len(a.at) && a.at[i].CompareAndSwap(0, now) {
			a.count.Add(1)
		}
	}
	return nil
}

// benchOptions are Options with caps that the benchmark does not reach.
func benchOptions(node string, urls []string, replicas int) fleet.Options {
	o := fleet.DefaultOptions()
	o.Servers, o.Node, o.Replicas = urls, node, replicas
	o.IssuerRate, o.IssuerBurst, o.MaxActive, o.Buffer = 1e7, 1e7, 1e7, 1e7
	return o
}

// runClient runs a Client until the test ends or stop is called.
func runClient(t *testing.T, o fleet.Options, a fleet.Applier) (c *fleet.Client, stop func()) {
	t.Helper()
	c, err := fleet.New(o, a, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return c, stop
}

// waitUntil polls cond, failing after bound (a bound against a hung run, not
// an assertion on speed).
func waitUntil(t *testing.T, bound time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", bound, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// publisher writes verdicts into the bucket as an issuer would (the value
// is fleet.EncodeValue's under fleet.Key), recording when each put was
// issued. Propagation is measured from there, not from the ack: the ack's
// goroutine runs late when the clients load the CPUs (an ack recorded after
// the verdict was applied gave negative delays), and the publish call
// comes before the ack, so the figure can only be larger than ack ->
// applied.
type publisher struct {
	js   jetstream.JetStream
	sent []atomic.Int64
}

func newPublisher(t *testing.T, url string, n int) *publisher {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		t.Fatal(err)
	}
	return &publisher{js: js, sent: make([]atomic.Int64, n)}
}

// put publishes verdict i of issuer asynchronously, recording when; a
// put that is not acknowledged fails the test.
func (p *publisher) put(t *testing.T, issuer string, i int, wg *sync.WaitGroup) {
	now := time.Now()
	v := fleet.Verdict{Target: benchTarget(i), Action: fleet.ActionBlock, Issuer: issuer, Origin: "scorer",
		Reason: "bench", IssuedAt: now.UTC(), Expires: now.Add(time.Hour).UTC()}
	data, err := fleet.EncodeValue(v)
	if err != nil {
		t.Error(err)
		return
	}
	subj := "$KV." + fleet.DefaultOptions().Bucket + "." + fleet.Key(issuer, v.Target)
	p.sent[i].Store(time.Now().UnixNano())
	f, err := p.js.PublishAsync(subj, data)
	// With the most acks outstanding the client stalls the publish: wait
	// for the outstanding ones, then publish again (a bounded number of
	// times), so a fill of 1M never outruns the server.
	for try := 0; errors.Is(err, jetstream.ErrTooManyStalledMsgs) && try < 60; try++ {
		select {
		case <-p.js.PublishAsyncComplete():
		case <-time.After(time.Second):
		}
		f, err = p.js.PublishAsync(subj, data)
	}
	if err != nil {
		t.Errorf("publish %d: %v", i, err)
		return
	}
	wg.Go(func() {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			t.Errorf("publish %d: %v", i, err)
		case <-time.After(time.Minute):
			t.Errorf("publish %d: no ack", i)
		}
	})
}

// fanout runs clients lightweight Clients against a 3-node cluster with 3
// replicas while a publisher puts rate verdicts per second for seconds;
// it checks that every client applied every verdict and returns the
// propagation (publish call -> applied) over all clients.
func fanout(t *testing.T, clients, rate, seconds int) fleetFigures {
	total := rate * seconds
	if total > 1<<17 {
		t.Fatalf("%d verdicts: at most %d", total, 1<<17)
	}
	c := natstest.Cluster(t, 3, natstest.Options{})
	urls := c.URLs()
	appliers := make([]*timeApplier, clients)
	var cs []*fleet.Client
	for i := range clients {
		appliers[i] = &timeApplier{at: make([]atomic.Int64, total)}
		// Spread the clients over the servers, each knowing all of them.
		rot := append(slices.Clone(urls[i%3:]), urls[:i%3]...)
		o := benchOptions(fmt.Sprintf("c%d", i), rot, 3)
		c, _ := runClient(t, o, appliers[i])
		cs = append(cs, c)
	}
	waitUntil(t, 5*time.Minute, "every client connected", func() bool {
		for _, cl := range cs {
			if !cl.Status().Connected {
				return false
			}
		}
		return true
	})
	pub := newPublisher(t, urls[0], total)
	var wg sync.WaitGroup
	cpu0 := processCPU(t)
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	for sent := 0; sent < total; {
		<-tick.C
		due := min(total, int(time.Since(start).Seconds()*float64(rate))+1)
		for ; sent < due; sent++ {
			pub.put(t, "pub", sent, &wg)
		}
	}
	tick.Stop()
	pubSeconds := time.Since(start).Seconds()
	wg.Wait()
	for i, a := range appliers {
		waitUntil(t, 5*time.Minute, fmt.Sprintf("client %d applies all %d", i, total), func() bool { return a.count.Load() == int64(total) })
	}
	cpuUS := (processCPU(t) - cpu0).Seconds() * 1e6 / float64(clients*total)
	var ms []float64
	for _, a := range appliers {
		for i := range total {
			ms = append(ms, float64(a.at[i].Load()-pub.sent[i].Load())/1e6)
		}
	}
	slices.Sort(ms)
	pct := func(p float64) float64 { return ms[min(len(ms)-1, int(p*float64(len(ms))))] }
	return fleetFigures{Clients: clients, Rate: rate, Verdicts: total, Samples: len(ms), PublishSeconds: pubSeconds,
		P50MS: pct(0.50), P99MS: pct(0.99), MaxMS: ms[len(ms)-1], ClientCPUUS: cpuUS}
}

// processCPU is the user and system CPU time this process has used.
func processCPU(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// coldFigures is what one cold sync measured: the wall time until the
// fresh client applied every verdict, this process's CPU time meanwhile
// (the fresh client; nothing else runs here), the server's, and the heap
// the client holds after it, per verdict.
type coldFigures struct {
	Seconds, CPUSeconds, ServerCPUSeconds, HeapBytesPerVerdict float64
}

// coldSync fills a bucket (one server) with n active verdicts of 100
// issuers and measures a fresh Client until it has applied them all; with
// cpuProfile set it writes a CPU profile of that phase there (and an
// allocation profile beside it, .alloc).
func coldSync(t *testing.T, n int, cpuProfile string) coldFigures {
	c := natstest.Cluster(t, 1, natstest.Options{})
	// Let a Client create the bucket as the agents do, then stop it: it
	// would otherwise read the whole fill and still be busy with it, on the
	// same CPUs, while the fresh client is timed.
	_, stopCreator := runClient(t, benchOptions("creator", c.URLs(), 1), &timeApplier{})
	pub := newPublisher(t, c.URL(0), 0)
	waitUntil(t, time.Minute, "the bucket exists", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := pub.js.KeyValue(ctx, fleet.DefaultOptions().Bucket)
		return err == nil
	})
	stopCreator()
	var wg sync.WaitGroup
	pub.sent = make([]atomic.Int64, n)
	for i := range n {
		pub.put(t, fmt.Sprintf("n%d", i%100), i, &wg)
		if i%4096 == 4095 {
			wg.Wait()
		}
	}
	wg.Wait()
	a := &timeApplier{at: make([]atomic.Int64, n)}
	heap0 := liveHeap()
	if cpuProfile != "" {
		stop := profile(t, cpuProfile)
		defer stop()
	}
	cpu0, server0 := processCPU(t), serverCPU(t, c)
	start := time.Now()
	runClient(t, benchOptions("fresh", c.URLs(), 1), a)
	// (The publisher's acks were all received before: nothing else runs.)
	waitUntil(t, 10*time.Minute, fmt.Sprintf("the fresh client applies %d", n), func() bool { return a.count.Load() == int64(n) })
	f := coldFigures{Seconds: time.Since(start).Seconds(), CPUSeconds: (processCPU(t) - cpu0).Seconds(),
		ServerCPUSeconds: (serverCPU(t, c) - server0).Seconds()}
	f.HeapBytesPerVerdict = float64(liveHeap()-heap0) / float64(n)
	return f
}

// serverCPU is the CPU time of the cluster's first server.
func serverCPU(t *testing.T, c *natstest.Servers) time.Duration {
	d, err := testbed.ProcessCPU(c.Pid(0))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// liveHeap is the heap in use after a full collection.
func liveHeap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// profile starts a CPU profile into path; stop ends it and writes the
// allocation profile to path+".alloc".
func profile(t *testing.T, path string) (stop func()) {
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		t.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		af, err := os.Create(path + ".alloc")
		if err != nil {
			t.Fatal(err)
		}
		defer af.Close()
		if err := pprof.Lookup("allocs").WriteTo(af, 0); err != nil {
			t.Fatal(err)
		}
	}
}

// coldEnv names the environment variable that sizes TestFleetColdSyncAlone
// (default coldDefault, for make test); coldProfEnv, if set, is where its
// CPU profile goes. It measures the cold sync alone, to compare builds side
// by side and profile them.
const (
	coldEnv     = "BULWARK_COLDSYNC"
	coldProfEnv = "BULWARK_COLDSYNC_PROFILE"
	coldDefault = 10_000
)

// TestFleetColdSyncAlone runs one cold sync of $BULWARK_COLDSYNC verdicts
// (coldSync fails unless the fresh client applies every one) and logs its
// wall time, CPU times and heap per verdict.
func TestFleetColdSyncAlone(t *testing.T) {
	n := coldDefault
	if s := os.Getenv(coldEnv); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n <= 0 || n > 1<<22 {
			t.Fatalf("%s=%q: want a number of verdicts, 1 to %d", coldEnv, s, 1<<22)
		}
	}
	f := coldSync(t, n, os.Getenv(coldProfEnv))
	if f.CPUSeconds <= 0 {
		t.Errorf("the fresh client used no CPU time for %d verdicts: %+v", n, f)
	}
	t.Logf("cold sync of %d verdicts: %.2f s, client CPU %.2f s (%.2f CPU-s per 1M), server CPU %.2f s, heap %.0f B per verdict",
		n, f.Seconds, f.CPUSeconds, f.CPUSeconds*1e6/float64(n), f.ServerCPUSeconds, f.HeapBytesPerVerdict)
}

// TestFleetFanoutShort is the fan-out at a small size for make test: 20
// clients, 100 verdicts per second for 3 s; every client must apply all
// 300, and the figures must be ordered.
func TestFleetFanoutShort(t *testing.T) {
	f := fanout(t, 20, 100, 3)
	if f.Samples != 20*300 || !(f.P50MS <= f.P99MS && f.P99MS <= f.MaxMS) {
		t.Fatalf("fan-out figures %+v: want 6000 samples, p50 <= p99 <= max", f)
	}
	t.Logf("fleet fan-out (short): %d clients, %d verdicts: propagation p50 %.1f ms, p99 %.1f ms, max %.1f ms",
		f.Clients, f.Verdicts, f.P50MS, f.P99MS, f.MaxMS)
}

// TestFleetBench measures, at full size, the fan-out simulation
// (-fleet.clients, -fleet.rate, -fleet.seconds: lightweight clients in one
// process, which load the servers like a large fleet but share this
// machine's CPUs, so it has no propagation target; test/fleet's
// TestFleetPropagationBench measures propagation to real agents) and the
// cold sync of -fleet.coldsync verdicts, and writes the figures where
// fleetEnv says. It runs only in make bench.
func TestFleetBench(t *testing.T) {
	out := os.Getenv(fleetEnv)
	if out == "" {
		t.Skipf("SKIP: set %s=FILE to measure fleet propagation and cold sync (make bench does)", fleetEnv)
	}
	f := fanout(t, *fleetClients, *fleetRate, *fleetSeconds)
	t.Logf("fan-out: %+v", f)
	f.ColdSync = *fleetColdSync
	cold := coldSync(t, *fleetColdSync, "")
	f.ColdSyncS, f.ColdSyncCPUS, f.ColdSyncServerCPUS = cold.Seconds, cold.CPUSeconds, cold.ServerCPUSeconds
	f.ColdSyncHeapB = cold.HeapBytesPerVerdict
	t.Logf("cold sync of %d verdicts: %.2f s, client CPU %.2f s, server CPU %.2f s, heap %.0f B per verdict",
		f.ColdSync, f.ColdSyncS, f.ColdSyncCPUS, f.ColdSyncServerCPUS, f.ColdSyncHeapB)
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
		t.Fatalf("write the figures: %v", err)
	}
}
