package reputation

import (
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// attempt records a connection attempt of a to dst:port (port < 0: an echo
// request) in a's scan sketches as bpf/scans.h does, at the sim's clock with
// the default scan epoch; a must have sent (sim.send) this second.
func (s *sim) attempt(a, dst netip.Addr, port int) {
	x := s.src[a]
	shift := maps.ScanShift(0)
	epoch := uint32(s.mono >> shift)
	g := epoch & 1
	if x.ScanEpoch != epoch {
		if x.ScanEpoch+1 != epoch {
			x.ScanPorts[g^1], x.ScanAddrs[g^1] = [2]uint64{}, 0
		}
		x.ScanPorts[g], x.ScanAddrs[g] = [2]uint64{}, 0
		x.ScanEpoch = epoch
	}
	sk := testutil.ScanSketch{Ports: x.ScanPorts[g], Addrs: x.ScanAddrs[g]}
	sk.Addr(dst)
	if port >= 0 {
		sk.Port(uint16(port))
		x.ScanPort = uint16(port)
	}
	x.ScanPorts[g], x.ScanAddrs[g] = sk.Ports, sk.Addrs
}

var server = netip.MustParseAddr("198.19.0.1")

func scanConfig() Config {
	c := testConfig()
	c.Weights.PortScanLong, c.Weights.HorizontalScan = 80, 80
	return c
}

// scanGood is goodTraffic with its connection attempts in the sketches
// (each SYN one attempt on the source's first port), and a monitoring
// prober that checks the same 20 ports every minute, and a client of 8 of
// the host's addresses: none may be judged.
func scanGood(s *sim, r *rand.Rand, second int) {
	goodTraffic(s, r, second)
	for i := 0; i < 50; i++ {
		if second%10 == i%10 {
			s.attempt(netip.AddrFrom4([4]byte{198, 18, 20, byte(i + 1)}), server, []int{443, 80, 53 + i%2}[i%3])
		}
	}
	prober := netip.MustParseAddr("198.18.21.1")
	if second%60 == 0 {
		s.send(prober, 20, 60, 20, nil)
		for p := range 20 {
			s.attempt(prober, server, 8000+p*7)
		}
	}
	multi := netip.MustParseAddr("198.18.21.2")
	if second%5 == 0 {
		s.send(multi, 1, 60, 1, nil)
		s.attempt(multi, netip.AddrFrom4([4]byte{198, 19, 0, byte(1 + second/5%8)}), 443)
	}
}

// TestScans: scans of every shape are blocked (not throttled: a throttle
// scales rate limits, which a scanner never reaches) by their scan
// component, within the time their shape allows, and explained; the
// well-behaved sources, a monitoring prober and a client of several
// addresses get nothing.
func TestScans(t *testing.T) {
	dsts := make([]netip.Addr, 256)
	for i := range dsts {
		dsts[i] = netip.AddrFrom4([4]byte{198, 19, 1, byte(i)})
	}
	tests := []struct {
		name   string
		attack func(s *sim, second int)
		within int    // seconds after the attack starts
		top    string // the component expected to contribute most
		detail string // in the top component's detail
	}{
		// 1 port per 10 s: 48 ports (the component's full value) after
		// 480 s; the window (at least 550 s) holds them all.
		{name: "slow scan, 1 port per 10 s", within: 600, top: CompPortScanLong, detail: "ports in ", attack: func(s *sim, sec int) {
			if sec%10 == 0 {
				s.send(attacker, 1, 60, 1, []uint16{uint16(2000 + sec)})
				s.attempt(attacker, server, 2000+sec)
			}
		}},
		// A UDP scan of 1000 ports in 10 s.
		{name: "UDP scan, 100 ports/s", within: 2, top: CompPortScanLong, detail: "tried ", attack: func(s *sim, sec int) {
			if sec < 10 {
				ps := make([]uint16, 100)
				for i := range ps {
					ps[i] = uint16(1 + sec*100 + i)
					s.send(attacker, 1, 60, 0, ps[i:i+1])
					s.attempt(attacker, server, int(ps[i]))
				}
			}
		}},
		// 240 addresses on port 22 in 60 s.
		{name: "horizontal scan, 4 addresses/s", within: 60, top: CompHorizontalScan, detail: "addresses on port 22 in", attack: func(s *sim, sec int) {
			for i := range 4 {
				s.send(attacker, 1, 60, 1, []uint16{22})
				s.attempt(attacker, dsts[(sec*4+i)%len(dsts)], 22)
			}
		}},
		// A ping sweep, 1 address every 5 s.
		{name: "ICMP sweep, 1 address per 5 s", within: 600, top: CompHorizontalScan, detail: "with ICMP echo requests", attack: func(s *sim, sec int) {
			if sec%5 == 0 {
				s.send(attacker, 1, 64, 0, nil)
				s.attempt(attacker, dsts[sec/5%len(dsts)], -1)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, sink := newSim(), &fakeSink{}
			e := New(scanConfig(), Evidence{}, sink, 64)
			r := rand.New(rand.NewPCG(7, 7))
			step := func(attack func(int), sec int) {
				scanGood(s, r, sec)
				if attack != nil {
					attack(sec)
				}
				if err := e.Cycle(s.now, s.mono, s.read); err != nil {
					t.Fatal(err)
				}
				s.tick()
			}
			for sec := range 30 {
				step(nil, sec)
			}
			// Partial evidence may throttle first; the test runs until a
			// block.
			caught, blocked := -1, -1
			for sec := 0; sec < 900 && blocked < 0; sec++ {
				step(func(int) { tt.attack(s, sec) }, 30+sec)
				if _, ok := sink.puts[attacker]; ok && caught < 0 {
					caught = sec + 1
				}
				if sink.puts[attacker] == maps.VerdictBlock {
					blocked = sec + 1
				}
			}
			for a := range sink.puts {
				if a != attacker {
					t.Errorf("verdict on well-behaved source %s", a)
				}
			}
			if blocked < 0 || blocked > tt.within {
				t.Fatalf("blocked after %d s (first verdict after %d s), want a block within %d s", blocked, caught, tt.within)
			}
			ex := e.Explain(attacker, s.mono)
			if len(ex.Components) == 0 || ex.Components[0].Name != tt.top {
				t.Fatalf("top component %v, want %s", ex.Components, tt.top)
			}
			if d := ex.Components[0].Detail; !strings.Contains(d, tt.detail) {
				t.Errorf("detail %q, want it to say %q", d, tt.detail)
			}
			t.Logf("first verdict after %d s, blocked after %d s: score %.1f, %s: %s; %v", caught, blocked, ex.Score, ex.Components[0].Name, ex.Components[0].Detail, ex.Components)
			// Fifteen more minutes of well-behaved traffic: nothing else.
			for sec := range 900 {
				step(nil, 930+sec)
			}
			if len(sink.puts) != 1 {
				t.Errorf("verdicts %v, want only the attacker's", sink.puts)
			}
		})
	}
}

// TestScanWindow: the scan components forget attempts older than two
// epochs, and a new epoch (here 2^33 ns) starts from the one before.
func TestScanWindow(t *testing.T) {
	s := newSim()
	cfg := scanConfig()
	cfg.ScanWindow = 1 << 33
	e := New(cfg, Evidence{}, &fakeSink{}, 64)
	x := &maps.Source{Source: netip.PrefixFrom(attacker, 32), FirstSeenNS: s.mono, Packets: 1}
	epoch := uint32(s.mono >> 33)
	x.ScanEpoch = epoch
	x.ScanPorts[epoch&1] = [2]uint64{0xff, 0}   // 8 ports
	x.ScanPorts[epoch&1^1] = [2]uint64{0, 0xf0} // 4 more, the epoch before
	// Linear counting: 12 bits of 128 set read 128 ln(128/116) = 12.6,
	// 8 bits 128 ln(128/120) = 8.26.
	for _, tc := range []struct {
		after time.Duration
		want  uint16
	}{{0, 13}, {1 << 33, 8}, {2 << 33, 0}} {
		st := &state{}
		var f [numFeatures]float64
		e.scanFeatures(st, x, s.mono+uint64(tc.after), &f)
		if st.scan.ports != tc.want {
			t.Errorf("%v after: %d ports, want %d", tc.after, st.scan.ports, tc.want)
		}
	}
}
