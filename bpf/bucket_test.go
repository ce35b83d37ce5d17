package bpf_test

import (
	"math"
	"net/netip"
	"runtime"
	"sync"
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

// TestBucketTwoCPUs: two CPUs hammer one source at once on the kernel's
// clock. Each goroutine is locked to its OS thread and that thread pinned to
// its own CPU; BPF_PROG_TEST_RUN runs the program on the calling CPU, so the per-source buckets are updated
// from two CPUs concurrently for about 2 s.
//
// What may pass: the program reads CLOCK_MONOTONIC_COARSE, which moves in
// ticks. A bucket that starts full at the first packet's time F and is
// drained continuously (the offered load is checked to be at least 10x the
// rate) has passed exactly burst + rate x (L - F) by the time L of the last
// packet. F and L are read back from the source's first_seen and last_seen,
// the datapath's own clock readings, so no user-space timing enters. Slack
// beyond the 1 % the issue allows, one tick's worth at each end: last_seen
// is a plain store, so a CPU that read the clock just before a tick may
// store it after the other CPU stored the newer time (L up to a tick old);
// and the CPU that creates the source may have read the clock a tick before
// the other CPU's first packet (F up to a tick early, which only lowers the
// bound, but both directions are allowed for symmetry). A packet that loses
// the compare-and-swap race four times is dropped without taking a token,
// so the token stays for the next packet: no loss except within the last
// tick, inside the same slack.
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
	// The machine may be too busy for an attempt to offer 10x the limit
	// it calibrated: then it is tried again on a fresh datapath.
	const attempts = 3
	for i := 1; i <= attempts; i++ {
		if bucketTwoCPUs(t, cpus, i == attempts) {
			return
		}
	}
}

// bucketTwoCPUs is one attempt of TestBucketTwoCPUs. It returns false when
// the CPUs offered too little load to measure the limit (then, if final,
// it fails t).
func bucketTwoCPUs(t *testing.T, cpus []int, final bool) bool {
	t.Helper()
	tooSlow := func(format string, args ...any) bool {
		if final {
			t.Fatalf(format, args...)
		}
		t.Logf(format+"; trying again", args...)
		return false
	}
	// The rate: 100000 packets/s if the two CPUs can offer 20x that, else
	// what they can offer / 20 (a slow VM runs ~150k packets/s per CPU; a
	// busy one much less), so the offered load stays above 10x the limit.
	// Calibrated on another source before the limit is set.
	d := testutil.Load(t, testutil.Setup{})
	offer := hammer(t, d, testutil.UDP4(t, b4, d4, 53, 16), cpus, 200*time.Millisecond)
	rate := min(uint64(100_000), uint64(offer/20)/100*100)
	if rate < 500 {
		return tooSlow("the two CPUs offer only %.0f packets/s: too slow to measure a limit", offer)
	}
	// Three seconds of depth, longer than the whole 2 s send: a gap in the
	// offered load (both threads descheduled on a loaded machine) then only
	// refills the bucket, never overflows it, so every ns of the datapath's
	// window turns into admitted packets and burst + rate x window holds
	// exactly. (With one second of depth, a 1.1 s gap under load lost 0.1 s
	// of refill and the test failed.)
	burst := 3 * rate
	policy := maps.Policy{Default: maps.Limit{PPS: rate, Burst: burst}}
	if err := d.Maps.ApplyPolicy(&policy); err != nil {
		t.Fatal(err)
	}
	before, err := d.Maps.Stats()
	if err != nil {
		t.Fatal(err)
	}
	frame := testutil.UDP4(t, a4, d4, 53, 16)

	var res unix.Timespec
	if err := unix.ClockGetres(unix.CLOCK_MONOTONIC_COARSE, &res); err != nil {
		t.Fatal(err)
	}
	tick := uint64(res.Nano())

	g0 := coarseNow(t)
	hammer(t, d, frame, cpus, 2*time.Second)
	g1 := coarseNow(t)

	after, err := d.Maps.Stats()
	if err != nil {
		t.Fatal(err)
	}
	passed := after[maps.ActionPass][maps.ReasonPassed].Packets - before[maps.ActionPass][maps.ReasonPassed].Packets
	limited := after[maps.ActionDrop][maps.ReasonRatelimit].Packets - before[maps.ActionDrop][maps.ReasonRatelimit].Packets
	total := after.Total().Packets - before.Total().Packets
	if passed+limited != total {
		t.Fatalf("stats: %d passed + %d limited, but %d packets in all", passed, limited, total)
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
	if src.Packets > total || src.Packets == 0 {
		t.Errorf("source observed %d packets; want 1..%d", src.Packets, total)
	}
	t.Logf("source's plain packet counter: %d of %d packets (%.3f %% lost to races)",
		src.Packets, total, 100*float64(total-min(src.Packets, total))/float64(total))
	first, last := src.FirstSeenNS, src.LastSeenNS
	if first < g0 || last > g1 || first > last {
		t.Fatalf("datapath window [%d, %d] not inside the user-space window [%d, %d]", first, last, g0, g1)
	}
	elapsed := float64(last-first) / 1e9
	if offered := float64(total) / elapsed; offered < 10*float64(rate) {
		return tooSlow("offered %.0f packets/s, under 10x the %d limit", offered, rate)
	}
	want := float64(burst) + float64(rate)*elapsed
	slack := 0.01*want + 2*float64(rate)*float64(tick)/1e9
	misc, _ := d.Maps.Misc()
	t.Logf("CPUs %v, limit %d/s burst %d: %d packets in %.3f s of datapath time (tick %v): %d passed, want %.0f +- %.0f; %d contended",
		cpus, rate, burst, total, elapsed, time.Duration(tick), passed, want, slack, misc.Contended)
	if math.Abs(float64(passed)-want) > slack {
		t.Errorf("%d passed, want %.0f +- %.0f (1%% + two ticks)", passed, want, slack)
	}
	// A hard upper bound from the user-space window, which contains the
	// datapath's: the bucket cannot have refilled for longer than it. In
	// the datapath's integer arithmetic a packet costs interval ns and the
	// bucket holds depth ns, so a bucket full at F has admitted at most
	// (depth + L - F) / interval packets by L. (interval is rounded down,
	// so this may be one more than burst + rate x window.)
	interval := uint64(time.Second) / rate
	if upper := (maps.Depth(burst, rate) + (g1 - g0)) / interval; passed > upper {
		t.Errorf("%d passed, more than (depth + the whole user-space window) / interval (%d)", passed, upper)
	}
	return true
}

// hammer sends frame from one goroutine per CPU, each locked to its thread
// and the thread pinned to the CPU, as fast as it can for d (and at most
// 50M packets per CPU). It returns the packets per second offered.
func hammer(t *testing.T, d *loader.Datapath, frame []byte, cpus []int, dur time.Duration) float64 {
	t.Helper()
	const maxPerCPU = 50_000_000
	var wg, start sync.WaitGroup
	start.Add(1)
	runs := make([]uint64, len(cpus))
	errs := make([]error, len(cpus))
	for i, cpu := range cpus {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var one unix.CPUSet
			one.Set(cpu)
			if errs[i] = unix.SchedSetaffinity(0, &one); errs[i] != nil {
				return
			}
			start.Wait()
			deadline := time.Now().Add(dur)
			for runs[i] < maxPerCPU && time.Now().Before(deadline) {
				if _, errs[i] = d.Run(frame); errs[i] != nil {
					return
				}
				runs[i]++
			}
		}()
	}
	s := time.Now()
	start.Done()
	wg.Wait()
	el := time.Since(s)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("CPU %d: %v", cpus[i], err)
		}
		if runs[i] == 0 {
			t.Fatalf("CPU %d sent nothing", cpus[i])
		}
	}
	t.Logf("sent %v packets on CPUs %v in %v", runs, cpus, el)
	return float64(runs[0]+runs[1]) / el.Seconds()
}

func coarseNow(t *testing.T) uint64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC_COARSE, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Nano())
}
