package bpf_test

import (
	"math"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bulwark-filter/bulwark/bpf/model"
	"github.com/bulwark-filter/bulwark/loader"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// TestBucketAccuracyReplay: a source sending at 10x its limit for 2 s, on
// the replay clock advanced per packet, has rate x 2 s + burst passed
// within 1 %, and exactly what the model passes.
func TestBucketAccuracyReplay(t *testing.T) {
	d := testutil.Load(t, testutil.Setup{ReplayClock: true})
	frame := testutil.UDP4(t, a4, d4, 53, 100-42) // 100 bytes
	if len(frame) != 100 {
		t.Fatalf("frame is %d bytes, want 100", len(frame))
	}
	cases := []struct {
		name   string
		policy maps.Policy
		src    string
		want   float64 // rate x 2 s + burst, in frames
	}{
		{name: "packets", src: a4, want: 1000*2 + 100,
			policy: maps.Policy{Default: maps.Limit{PPS: 1000, Burst: 100}}},
		{name: "bytes", src: b4, want: (100_000*2 + 10_000) / 100,
			policy: maps.Policy{Default: maps.Limit{BytesPerSec: 100_000, ByteBurst: 10_000}}},
		{name: "udp port rule", src: c4, want: 1000*2 + 100,
			policy: maps.Policy{Rules: []maps.Rule{{Name: "dns", Protocol: maps.ProtoUDP,
				Ports: []maps.PortRange{{Lo: 53, Hi: 53}}, Limit: maps.Limit{PPS: 1000, Burst: 100}}}}},
		{name: "class x10 packets", src: c4, want: 10 * (1000*2 + 100),
			policy: maps.Policy{Default: maps.Limit{PPS: 1000, Burst: 100}, Classes: []maps.Class{{Name: "p",
				CIDRs: []netip.Prefix{netip.MustParsePrefix("198.18.1.0/24")}, Multiplier: 10}}}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := d.Maps.ApplyPolicy(&c.policy); err != nil {
				t.Fatal(err)
			}
			f := testutil.UDP4(t, c.src, d4, 53, 100-42)
			m, err := model.New(c.policy, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			// 10 * want frames evenly over 2 s: a little over 10x the rate.
			base := t0 + uint64(i)*caseGap
			sent := int(10 * c.want)
			step := uint64(2e9) / uint64(sent)
			before, err := d.Maps.Stats()
			if err != nil {
				t.Fatal(err)
			}
			kernel, modelPassed := 0, 0
			for k := 0; k < sent; k++ {
				now := base + uint64(k)*step
				_, ret, err := d.RunAt(f, now)
				if err != nil {
					t.Fatal(err)
				}
				if ret == xdpPass {
					kernel++
				}
				if m.Decide(f, now).Action == maps.ActionPass {
					modelPassed++
				}
			}
			after, err := d.Maps.Stats()
			if err != nil {
				t.Fatal(err)
			}
			pass := after[maps.ActionPass][maps.ReasonPassed].Packets - before[maps.ActionPass][maps.ReasonPassed].Packets
			drop := after[maps.ActionDrop][maps.ReasonRatelimit].Packets - before[maps.ActionDrop][maps.ReasonRatelimit].Packets
			if pass != uint64(kernel) || pass+drop != uint64(sent) {
				t.Errorf("stats: %d passed, %d rate-limited; XDP said %d of %d passed", pass, drop, kernel, sent)
			}
			if kernel != modelPassed {
				t.Errorf("kernel passed %d, model %d", kernel, modelPassed)
			}
			if dev := math.Abs(float64(kernel)-c.want) / c.want; dev > 0.01 {
				t.Errorf("%d of %d passed, want %.0f within 1%% (off by %.2f%%)", kernel, sent, c.want, 100*dev)
			}
			t.Logf("%d of %d passed, want %.0f", kernel, sent, c.want)
		})
	}
}

// TestBucketTwoCPUs: two CPUs take from one source's bucket at once. Each
// goroutine is locked to its OS thread and that thread pinned to its own
// CPU; BPF_PROG_TEST_RUN runs the program on the calling CPU, so the
// bucket's compare-and-swap is raced from two CPUs.
//
// It counts packets, not seconds: the datapath is on the replay clock and
// packet k of a fixed number carries time T0 + k x step, k taken from one
// counter by whichever CPU is free, so the offered load is exactly 10x the
// rate in datapath time however fast or busy the machine is (the two CPUs
// see times slightly out of order, as with the kernel's clock).
//
// What may pass: a bucket full at the first packet's time F and drained
// without a pause (every step is a tenth of the interval) has passed
// burst + rate x (L - F) by the time L of the last packet, to a packet: the
// theoretical arrival time starts at F + interval, grows one interval per
// pass, and ends between L + depth - interval and L + depth. A packet
// seen out of order (older than one already run) finds the bucket one
// interval short and is dropped without taking a token, so the token
// stays for the next. F is the source's first_seen (the time of the packet
// that created it). A lost compare-and-swap that paid twice, or a token
// taken twice, would be off by the contention, not by a packet or two.
func TestBucketTwoCPUs(t *testing.T) {
	testutil.RequireRoot(t)
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	var cpus []int
	for c := 0; c < 1024 && len(cpus) < 2; c++ {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	if len(cpus) < 2 {
		t.Skipf("SKIP: needs two CPUs, this process may use %d", set.Count())
	}
	const (
		rate     = 100_000
		burst    = 10_000 // 0.1 s of depth
		step     = uint64(time.Second) / rate / 10
		n        = 400_000 // 0.4 s of datapath time
		t0       = uint64(1) << 40
		interval = uint64(time.Second) / rate
	)
	d := testutil.Load(t, testutil.Setup{ReplayClock: true, Policy: maps.Policy{Default: maps.Limit{PPS: rate, Burst: burst}}})
	frame := testutil.UDP4(t, a4, d4, 53, 16)
	runs := runOnCPUs(t, d, frame, cpus, n, func(k uint64) uint64 { return t0 + k*step })

	stats, err := d.Maps.Stats()
	if err != nil {
		t.Fatal(err)
	}
	passed := stats[maps.ActionPass][maps.ReasonPassed].Packets
	limited := stats[maps.ActionDrop][maps.ReasonRatelimit].Packets
	if total := stats.Total().Packets; passed+limited != total || total != n {
		t.Fatalf("stats: %d passed + %d limited, %d packets in all; want %d in all", passed, limited, total, n)
	}
	src, ok, err := d.Maps.LookupSource(netip.MustParseAddr(a4))
	if err != nil || !ok {
		t.Fatalf("source state: %v %v", ok, err)
	}
	// The drop counter is atomic: exact. The packet counter is a plain
	// increment (bpf/sources.h, observe): two CPUs updating the source at
	// once may lose an increment, never add one.
	if src.DropsRatelimit != limited {
		t.Errorf("source observed %d drops; want %d", src.DropsRatelimit, limited)
	}
	if src.Packets > n || src.Packets == 0 {
		t.Errorf("source observed %d packets; want 1..%d", src.Packets, n)
	}
	last := t0 + (n-1)*step
	first := src.FirstSeenNS
	if first < t0 || first > last {
		t.Fatalf("first_seen %d outside the packets' times [%d, %d]", first, t0, last)
	}
	want := burst + (last-first)/interval
	misc, _ := d.Maps.Misc()
	t.Logf("CPUs %v ran %v packets; limit %d/s burst %d over %v of datapath time: %d passed, want %d (-2 to +1); "+
		"%d contended compare-and-swaps; plain packet counter %d of %d", cpus, runs, rate, burst,
		time.Duration(last-first), passed, want, misc.Contended, src.Packets, n)
	if passed > want+1 || passed+2 < want {
		t.Errorf("%d passed, want %d (burst + rate x (last - first), within a packet or two)", passed, want)
	}
}

// runOnCPUs runs n packets of frame from one goroutine per CPU, each locked
// to its thread and the thread pinned to the CPU; packet k (from a shared
// counter) runs at time at(k) on the replay clock. It returns how many each
// CPU ran.
func runOnCPUs(t *testing.T, d *loader.Datapath, frame []byte, cpus []int, n uint64, at func(k uint64) uint64) []uint64 {
	t.Helper()
	var wg, start sync.WaitGroup
	var next atomic.Uint64
	start.Add(1)
	runs := make([]uint64, len(cpus))
	errs := make([]error, len(cpus))
	for i, cpu := range cpus {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Locked to the end: the thread, pinned to one CPU, exits with
			// the goroutine instead of going back to the runtime's pool (a
			// later test, or run, would find this process on one CPU).
			runtime.LockOSThread()
			var one unix.CPUSet
			one.Set(cpu)
			if errs[i] = unix.SchedSetaffinity(0, &one); errs[i] != nil {
				return
			}
			r := d.NewRunner()
			start.Wait()
			for k := next.Add(1) - 1; k < n; k = next.Add(1) - 1 {
				if _, _, errs[i] = r.RunAt(frame, at(k)); errs[i] != nil {
					return
				}
				runs[i]++
			}
		}()
	}
	start.Done()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("CPU %d: %v", cpus[i], err)
		}
	}
	return runs
}
