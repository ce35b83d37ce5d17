package bpf_test

import (
	"fmt"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// TestSigSampling checks what live signature detection reads: per
// destination (protocol, port) the packets that reach the signature step
// and those of sources without state, and 1 in every of them per
// destination sampled into the sample ring, at most budget per second of
// the datapath's clock; allow-listed packets are neither counted nor
// sampled; with every 0 nothing is.
func TestSigSampling(t *testing.T) {
	const (
		syns  = 100 // one each from 100 sources to tcp/80
		dns   = 50  // all from one source to udp/53
		every = 4
	)
	tests := []struct {
		name           string
		every, budget  uint32
		wantSamples    int
		wantDestsKnown bool
	}{
		// Sampled: packets 1, 5, 9, ... of each destination.
		{"one in four", every, 1000, (syns+every-1)/every + (dns+every-1)/every, true},
		{"budget", every, 10, 10, true},
		{"off", 0, 1000, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The budget is per CPU: every run on one CPU, or a thread
			// moved by the scheduler mid-test draws on two budgets.
			pinToOneCPU(t)
			d := testutil.Load(t, testutil.Setup{ReplayClock: true, Allow: []maps.Entry{host("198.18.9.9", 1)}})
			if err := d.Maps.SetSigSampling(tt.every, tt.budget); err != nil {
				t.Fatal(err)
			}
			rd, err := d.Maps.SigSamples()
			if err != nil {
				t.Fatal(err)
			}
			defer rd.Close()
			now := uint64(1e15) // one second of the replay clock
			var sent [][]byte
			for i := 0; i < syns; i++ {
				f := testutil.TCP4(t, fmt.Sprintf("198.18.%d.%d", 10+i/200, 1+i%200), "198.18.1.1", 80, 0x02)
				sent = append(sent, f)
				if _, ret, err := d.RunAt(f, now+uint64(i)); err != nil || ret != xdpPass {
					t.Fatalf("syn %d: %d %v, want pass", i, ret, err)
				}
			}
			for i := 0; i < dns; i++ {
				f := testutil.UDP4(t, "198.18.2.2", "198.18.1.1", 53, 20)
				sent = append(sent, f)
				if _, ret, err := d.RunAt(f, now+uint64(syns+i)); err != nil || ret != xdpPass {
					t.Fatalf("dns %d: %d %v, want pass", i, ret, err)
				}
			}
			allowed := testutil.UDP4(t, "198.18.9.9", "198.18.1.1", 53, 20)
			for i := 0; i < 30; i++ {
				if _, ret, err := d.RunAt(allowed, now+uint64(syns+dns+i)); err != nil || ret != xdpPass {
					t.Fatalf("allowed %d: %d %v, want pass", i, ret, err)
				}
			}

			dests, err := d.Maps.SigDests()
			if err != nil {
				t.Fatal(err)
			}
			want := map[maps.SigDest]maps.SigDestCount{}
			if tt.wantDestsKnown {
				want[maps.SigDest{Proto: 6, Port: 80}] = maps.SigDestCount{Packets: syns, NewSources: syns}
				want[maps.SigDest{Proto: 17, Port: 53}] = maps.SigDestCount{Packets: dns, NewSources: 1}
			}
			if fmt.Sprint(dests) != fmt.Sprint(want) {
				t.Errorf("destinations %v, want %v", dests, want)
			}

			samples := readRing(t, rd)
			for i, raw := range samples {
				frame, n, err := maps.SampleFrame(raw)
				if err != nil {
					t.Fatal(err)
				}
				found := false
				for _, s := range sent {
					found = found || string(s[:min(len(s), 128)]) == string(frame) && n == len(s)
				}
				if !found {
					t.Errorf("sample %d is none of the frames sent (allow-listed ones are not sampled)", i)
				}
			}
			if n := len(samples); n != tt.wantSamples {
				t.Errorf("%d samples, want %d", n, tt.wantSamples)
			}
		})
	}
}

// pinToOneCPU keeps the test's goroutine on its OS thread and that thread
// on CPU 0 until the test ends, so BPF_PROG_TEST_RUN runs the program on
// one CPU.
func pinToOneCPU(t *testing.T) {
	runtime.LockOSThread()
	var old, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		t.Fatal(err)
	}
	one.Set(0)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = unix.SchedSetaffinity(0, &old)
		runtime.UnlockOSThread()
	})
}

// TestSigRenewKeepsBucket renews a limiting signature (a new expiry, as
// detection does each anomalous second): its bucket and counters carry on,
// where writing the signature anew refills the bucket and zeroes them.
func TestSigRenewKeepsBucket(t *testing.T) {
	const burst = 5
	d := testutil.Load(t, testutil.Setup{ReplayClock: true})
	now := uint64(1e15)
	sig := maps.Signature{Fields: maps.SigProto | maps.SigDPort, Proto: 17, DPort: maps.Range{Lo: 53, Hi: 53},
		Action: maps.SigLimit, PPS: 1, Burst: burst, ExpiresNS: now + 1e9}
	if err := d.Maps.PutSignature(0, sig); err != nil {
		t.Fatal(err)
	}
	f := testutil.UDP4(t, "198.18.2.2", "198.18.1.1", 53, 20)
	send := func(n int) (passed int) {
		for i := 0; i < n; i++ {
			if _, ret, err := d.RunAt(f, now); err != nil {
				t.Fatal(err)
			} else if ret == xdpPass {
				passed++
			}
		}
		return passed
	}
	// At one instant a bucket of burst 5 passes 5 packets.
	if got := send(burst + 3); got != burst {
		t.Fatalf("%d of %d passed, want the burst of %d", got, burst+3, burst)
	}
	if err := d.Maps.RenewSignature(0, now+60e9); err != nil {
		t.Fatal(err)
	}
	if got := send(3); got != 0 {
		t.Errorf("after a renewal %d of 3 passed, want 0: the bucket was refilled", got)
	}
	c, err := d.Maps.SignatureCounter(0)
	if err != nil {
		t.Fatal(err)
	}
	if c.Matched != burst+6 || c.Dropped != 6 {
		t.Errorf("counters %+v after a renewal, want %d matched and 6 dropped", c, burst+6)
	}
	// The new expiry holds: past the old one the signature still limits.
	now += 2e9 // two tokens
	if got := send(4); got != 2 {
		t.Errorf("2 s later %d of 4 passed, want 2", got)
	}
	// Writing it anew is a full bucket (what renewing must not do).
	sig.ExpiresNS = now + 60e9
	if err := d.Maps.PutSignature(0, sig); err != nil {
		t.Fatal(err)
	}
	if got := send(burst + 1); got != burst {
		t.Errorf("written anew: %d of %d passed, want %d", got, burst+1, burst)
	}
	if err := d.Maps.RenewSignature(1, now); err == nil {
		t.Error("renewing an empty slot: no error")
	}
}
