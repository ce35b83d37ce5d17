package reputation

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/agent/api"
	"github.com/bulwark-filter/bulwark/maps"
)

// sim produces what the datapath's sources map would hold: cumulative
// counters per source, and the distinct-port sketch per ~1 s window, hashed
// as bpf/bulwark.c does.
type sim struct {
	src  map[netip.Addr]*maps.Source
	mono uint64
	now  time.Time
}

func newSim() *sim {
	return &sim{src: map[netip.Addr]*maps.Source{}, mono: 1 << 40, now: time.Unix(1_800_000_000, 0)}
}

func portBit(port uint16) (int, uint64) {
	h := (uint32(port) * 2654435761) >> 24
	return int(h>>6) & 3, 1 << (h & 63)
}

// send records n packets of size bytes from a to the given ports (cycled),
// syn of them SYN-without-ACK, in the current second.
func (s *sim) send(a netip.Addr, n, size, syn int, ports []uint16) {
	x := s.src[a]
	if x == nil {
		x = &maps.Source{Source: netip.PrefixFrom(a, a.BitLen()), FirstSeenNS: s.mono}
		s.src[a] = x
	}
	window := maps.PortWindowOf(s.mono)
	if x.PortWindow != window {
		set := 0
		for _, w := range x.PortBits {
			set += popcount(w)
		}
		x.PortsPrev = 0
		if x.PortWindow+1 == window {
			x.PortsPrev = set
		}
		x.PortWindow, x.PortBits = window, [4]uint64{}
	}
	x.Packets += uint64(n)
	x.Bytes += uint64(n * size)
	x.SYNs += uint64(syn)
	x.LastSeenNS = s.mono
	for i := 0; i < n && len(ports) > 0; i++ {
		w, b := portBit(ports[i%len(ports)])
		x.PortBits[w] |= b
	}
	set := 0
	for _, w := range x.PortBits {
		set += popcount(w)
	}
	x.PortBitsSet = set
}

func popcount(w uint64) int {
	n := 0
	for ; w != 0; w &= w - 1 {
		n++
	}
	return n
}

func (s *sim) read(fn func([]maps.Source) bool) error {
	batch := make([]maps.Source, 0, len(s.src))
	for _, x := range s.src {
		batch = append(batch, *x)
	}
	fn(batch)
	return nil
}

// tick advances one second.
func (s *sim) tick() { s.mono += 1 << 30; s.now = s.now.Add(time.Duration(1 << 30)) }

type fakeSink struct {
	puts    map[netip.Addr]maps.VerdictAction
	deletes int
}

func (f *fakeSink) PutVerdict(a netip.Addr, act maps.VerdictAction, _ uint64, _ uint16) error {
	if f.puts == nil {
		f.puts = map[netip.Addr]maps.VerdictAction{}
	}
	f.puts[a] = act
	return nil
}

func (f *fakeSink) DeleteVerdict(a netip.Addr) error { f.deletes++; delete(f.puts, a); return nil }

func testConfig() Config {
	return Config{Mode: "enforce", Interval: time.Second, ThrottleScore: 50, BlockScore: 80,
		ThrottleFor: 5 * time.Minute, BlockFor: 10 * time.Minute, MaxBlockFor: 24 * time.Hour, MaxVerdicts: 1000,
		Weights: Weights{RateAnomaly: 50, SYNRatio: 40, PortScan: 60, RatelimitDrops: 30, Malformed: 30, Repeat: 20}}
}

// goodTraffic is 50 ordinary sources: 2 to 60 packets per second, a few
// ports each, TCP clients with one SYN per new connection.
func goodTraffic(s *sim, r *rand.Rand, second int) {
	for i := 0; i < 50; i++ {
		a := netip.AddrFrom4([4]byte{198, 18, 20, byte(i + 1)})
		pps := 2 + int(58*r.Float64()*r.Float64())
		syn := 0
		if second%10 == i%10 {
			syn = 1
		}
		s.send(a, pps, 200+i*10, syn, []uint16{443, 80, uint16(53 + i%2)}[:1+i%3])
	}
}

func run(t *testing.T, e *Engine, s *sim, seconds int, attack func(second int)) {
	t.Helper()
	r := rand.New(rand.NewPCG(7, 7))
	for sec := 0; sec < seconds; sec++ {
		goodTraffic(s, r, sec)
		if attack != nil {
			attack(sec)
		}
		if err := e.Cycle(s.now, s.mono, s.read); err != nil {
			t.Fatal(err)
		}
		s.tick()
	}
}

var attacker = netip.MustParseAddr("198.18.66.66")

func TestVerdicts(t *testing.T) {
	ports := func(n, base int) []uint16 {
		p := make([]uint16, n)
		for i := range p {
			p[i] = uint16(base + i)
		}
		return p
	}
	tests := []struct {
		name    string
		attack  func(s *sim, second int) // from second 20 on
		within  int                      // seconds after the attack starts
		top     string                   // the component expected to contribute most
		exempt  bool
		wantAct maps.VerdictAction // 0: any verdict
	}{
		{name: "udp flood", within: 3, top: CompRateAnomaly, attack: func(s *sim, _ int) {
			s.send(attacker, 5000, 100, 0, []uint16{53})
		}},
		{name: "syn flood", within: 3, top: CompRateAnomaly, wantAct: maps.VerdictBlock, attack: func(s *sim, _ int) {
			s.send(attacker, 2000, 60, 2000, []uint16{443})
		}},
		{name: "fast port scan", within: 3, top: CompPortScan, attack: func(s *sim, sec int) {
			s.send(attacker, 200, 60, 200, ports(200, 1000+sec*200))
		}},
		{name: "slow scan", within: 60, top: CompPortScan, attack: func(s *sim, sec int) {
			s.send(attacker, 1, 60, 1, []uint16{uint16(2000 + sec)})
		}},
		{name: "exempt flood", exempt: true, attack: func(s *sim, _ int) {
			s.send(attacker, 5000, 100, 0, []uint16{53})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, sink := newSim(), &fakeSink{}
			ev := Evidence{}
			if tt.exempt {
				set := NewPrefixSet([]netip.Prefix{netip.MustParsePrefix("198.18.66.0/24")})
				ev.Exempt = set.Contains
			}
			e := New(testConfig(), ev, sink, 64)
			run(t, e, s, 20, nil)
			if len(sink.puts) != 0 {
				t.Fatalf("verdicts on well-behaved sources during warm-up: %v", sink.puts)
			}
			caught := -1
			for sec := 0; sec < 70 && caught < 0; sec++ {
				run(t, e, s, 1, func(int) { tt.attack(s, sec) })
				if _, ok := sink.puts[attacker]; ok {
					caught = sec + 1
				}
			}
			for a := range sink.puts {
				if a != attacker {
					t.Errorf("verdict on well-behaved source %s", a)
				}
			}
			if tt.exempt {
				if caught >= 0 {
					t.Fatalf("verdict on an exempt source")
				}
				if x := e.Explain(attacker, s.mono); !x.Exempt || x.Score < 50 {
					t.Errorf("explain: exempt %v, score %.1f; want exempt with a high score", x.Exempt, x.Score)
				}
				return
			}
			if caught < 0 || caught > tt.within {
				t.Fatalf("caught after %d s, want within %d s", caught, tt.within)
			}
			if tt.wantAct != 0 && sink.puts[attacker] != tt.wantAct {
				t.Errorf("verdict %s, want %s", sink.puts[attacker], tt.wantAct)
			}
			x := e.Explain(attacker, s.mono)
			if len(x.Components) == 0 || x.Components[0].Name != tt.top {
				t.Errorf("top component %v, want %s", x.Components, tt.top)
			}
			if x.Active == nil || len(x.History) != 1 {
				t.Errorf("explain: active %v, history %v", x.Active, x.History)
			}
			// A blocked source's packets no longer reach the engine: its
			// score is the one the verdict was issued at, not today's zero.
			if x.Active != nil && x.Active.Action == maps.VerdictBlock.String() &&
				(x.ScoreFrom != api.ScoreVerdict || x.Score != x.Active.Score || x.Score < testConfig().BlockScore) {
				t.Errorf("explain of a blocked source: score %.1f from %q, want the verdict's %.1f", x.Score, x.ScoreFrom, x.Active.Score)
			}
			t.Logf("caught after %d s: %s score %.1f, components %v", caught, sink.puts[attacker], x.Score, x.Components)
		})
	}
}

// TestShadow: shadow mode computes and counts verdicts and enforces none.
func TestShadow(t *testing.T) {
	s, sink := newSim(), &fakeSink{}
	cfg := testConfig()
	cfg.Mode = "shadow"
	e := New(cfg, Evidence{}, sink, 64)
	run(t, e, s, 20, nil)
	run(t, e, s, 5, func(int) { s.send(attacker, 5000, 100, 0, []uint16{53}) })
	if len(sink.puts) != 0 {
		t.Fatalf("shadow mode wrote verdicts: %v", sink.puts)
	}
	st := e.Snapshot()
	if st.ShadowVerdicts["block"]+st.ShadowVerdicts["throttle"] != 1 || len(st.Verdicts) != 0 {
		t.Errorf("shadow counts %v, enforced %v; want one shadow verdict", st.ShadowVerdicts, st.Verdicts)
	}
	vs := e.TakeVerdicts()
	if len(vs) != 1 || vs[0].Enforced {
		t.Errorf("verdicts %+v, want one not enforced", vs)
	}
}

// TestBlockDoubling: a repeat offender's block doubles each time, capped at
// max_block_for (fail2ban's bantime.increment).
func TestBlockDoubling(t *testing.T) {
	s, sink := newSim(), &fakeSink{}
	cfg := testConfig()
	cfg.BlockFor, cfg.MaxBlockFor = 10*time.Second, 35*time.Second
	e := New(cfg, Evidence{}, sink, 64)
	run(t, e, s, 20, nil)
	var fors []time.Duration
	for round := 0; round < 4; round++ {
		// Attack until blocked, then stay quiet (a blocked source's packets
		// are dropped before the observations) until the block expires.
		for i := 0; i < 10; i++ {
			run(t, e, s, 1, func(int) { s.send(attacker, 3000, 60, 3000, []uint16{443}) })
			if vs := e.TakeVerdicts(); len(vs) > 0 {
				if vs[0].Action != "block" {
					t.Fatalf("round %d: %s, want block", round, vs[0].Action)
				}
				fors = append(fors, vs[0].For)
				break
			}
		}
		run(t, e, s, int(fors[len(fors)-1]/time.Duration(1<<30))+2, nil)
	}
	want := []time.Duration{10 * time.Second, 20 * time.Second, 35 * time.Second, 35 * time.Second}
	if fmt.Sprint(fors) != fmt.Sprint(want) {
		t.Errorf("block durations %v, want %v", fors, want)
	}
	if x := e.Explain(attacker, s.mono); x.Score == 0 || len(x.History) != 4 {
		t.Errorf("history %d, want 4", len(x.History))
	}
}

// TestVerdictCap: at max_verdicts the lowest score gives way to a higher.
func TestVerdictCap(t *testing.T) {
	s, sink := newSim(), &fakeSink{}
	cfg := testConfig()
	cfg.MaxVerdicts = 1
	e := New(cfg, Evidence{}, sink, 64)
	run(t, e, s, 20, nil)
	low := netip.MustParseAddr("198.18.66.1")
	high := netip.MustParseAddr("198.18.66.2")
	// The first: a flood (throttle); then a SYN flood scoring higher.
	run(t, e, s, 3, func(int) { s.send(low, 3000, 100, 0, []uint16{53}) })
	if _, ok := sink.puts[low]; !ok {
		t.Fatalf("no verdict on the first attacker")
	}
	run(t, e, s, 3, func(int) {
		s.send(low, 3000, 100, 0, []uint16{53})
		s.send(high, 3000, 60, 3000, []uint16{443})
	})
	if _, ok := sink.puts[high]; !ok || len(sink.puts) != 1 || sink.deletes != 1 {
		t.Errorf("verdicts %v, deletes %d: want only the higher score", sink.puts, sink.deletes)
	}
	if e.Snapshot().CapHits == 0 {
		t.Error("cap hits not counted")
	}
}

// BenchmarkCycle scores a million sources from memory (the kernel read is
// benchmarked in test/bench with the real map).
func BenchmarkCycle(b *testing.B) {
	const n = 1_000_000
	batch := make([]maps.Source, n)
	for i := range batch {
		a := netip.AddrFrom4([4]byte{198, byte(18 + i>>16&1), byte(i >> 8), byte(i)})
		batch[i] = maps.Source{Source: netip.PrefixFrom(a, 32), Packets: uint64(i % 100)}
	}
	read := func(fn func([]maps.Source) bool) error {
		for i := 0; i < n; i += 4096 {
			fn(batch[i:min(i+4096, n)])
		}
		return nil
	}
	e := New(testConfig(), Evidence{}, &fakeSink{}, 64)
	now, mono := time.Unix(1_800_000_000, 0), uint64(1<<40)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range batch {
			batch[j].Packets += 10
		}
		now, mono = now.Add(time.Second), mono+1<<30
		if err := e.Cycle(now, mono, read); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSetPrefix: after the datapath's IPv6 prefix changes, the engine groups IPv6 sources by the new prefix
// (explain names the /56) and tracks them again from the next cycle; IPv4 sources keep their key.
func TestSetPrefix(t *testing.T) {
	s := newSim()
	e := New(testConfig(), Evidence{}, &fakeSink{}, 64)
	v6, v4 := netip.MustParseAddr("2001:2:0:1::7"), netip.MustParseAddr("198.18.0.7")
	s.send(v6, 10, 100, 0, nil)
	s.send(v4, 10, 100, 0, nil)
	if err := e.Cycle(s.now, s.mono, s.read); err != nil {
		t.Fatal(err)
	}
	if x := e.Explain(v6, s.mono); x.Source != netip.MustParsePrefix("2001:2:0:1::/64") || !x.Tracked {
		t.Fatalf("before: source %s tracked %v, want 2001:2:0:1::/64 tracked", x.Source, x.Tracked)
	}
	e.SetPrefix(56)
	if x := e.Explain(v6, s.mono); x.Source != netip.MustParsePrefix("2001:2::/56") || x.Tracked {
		t.Fatalf("after SetPrefix(56): source %s tracked %v, want 2001:2::/56, not tracked yet", x.Source, x.Tracked)
	}
	s.tick()
	s.send(v6, 10, 100, 0, nil)
	if err := e.Cycle(s.now, s.mono, s.read); err != nil {
		t.Fatal(err)
	}
	if x := e.Explain(v6, s.mono); x.Source != netip.MustParsePrefix("2001:2::/56") || !x.Tracked {
		t.Fatalf("next cycle: source %s tracked %v, want 2001:2::/56 tracked", x.Source, x.Tracked)
	}
	if x := e.Explain(v4, s.mono); x.Source != netip.MustParsePrefix("198.18.0.7/32") || !x.Tracked {
		t.Fatalf("IPv4: source %s tracked %v, want 198.18.0.7/32 tracked", x.Source, x.Tracked)
	}
}

// TestCounterRestartAndRace: a source's counter below its last reading is
// a lost increment (the datapath's plain increments race between CPUs) when
// first_seen is unchanged, and a restart (evicted, back with fresh
// counters) when first_seen changed.
func TestCounterRestartAndRace(t *testing.T) {
	s, sink := newSim(), &fakeSink{}
	e := New(testConfig(), Evidence{}, sink, 64)
	a := netip.MustParseAddr("198.18.77.7")
	pps := func() float64 {
		for _, v := range e.Top(100, "pps", s.mono) {
			if v.Source == a.String() {
				return v.PPS
			}
		}
		t.Fatalf("%s not in top", a)
		return 0
	}
	secs := float64(1<<30) / 1e9 // one sim tick
	for sec := 0; sec < 5; sec++ {
		s.send(a, 100, 200, 0, []uint16{443})
		if err := e.Cycle(s.now, s.mono, s.read); err != nil {
			t.Fatal(err)
		}
		s.tick()
	}
	// A race: the counters step back by 2 with first_seen unchanged.
	x := s.src[a]
	x.Packets -= 2
	x.Bytes -= 400
	if err := e.Cycle(s.now, s.mono, s.read); err != nil {
		t.Fatal(err)
	}
	if got, max := pps(), 100/secs+0.01; got > max {
		t.Errorf("after a counter stepped back by 2: %.1f pps, want at most %.1f (no spike of the whole count)", got, max)
	}
	s.tick()
	// Evicted and back: a new first_seen, 30 packets since.
	s.src[a] = &maps.Source{Source: x.Source, FirstSeenNS: s.mono, Packets: 30, Bytes: 6000}
	if err := e.Cycle(s.now, s.mono, s.read); err != nil {
		t.Fatal(err)
	}
	if got, want := pps(), 30/secs; got < want-0.01 || got > want+0.01 {
		t.Errorf("after eviction: %.2f pps, want %.2f (the fresh counters are all new)", got, want)
	}
}

// TestReadOrder: the scorer finds each source's state whatever order the
// map is read in. One engine reads the sources sorted, the other in an
// order that stays for some cycles (so the state after the last source's
// is the next one's) and then changes (reversed, rotated, split in small
// batches), while sources come, go and come back; both issue the same
// verdicts and hold the same state for every source after every cycle.
func TestReadOrder(t *testing.T) {
	s := newSim()
	sinkA, sinkB := &fakeSink{}, &fakeSink{}
	a, b := New(testConfig(), Evidence{}, sinkA, 64), New(testConfig(), Evidence{}, sinkB, 64)
	r := rand.New(rand.NewPCG(3, 3))
	var order []netip.Addr // b's order: kept while it holds the same sources
	for sec := 0; sec < 40; sec++ {
		goodTraffic(s, r, sec)
		for i := 0; i < 30; i++ {
			// Sources that come and go: each is away one second in four.
			if (sec+i)%4 != 0 {
				s.send(netip.AddrFrom4([4]byte{198, 18, 30, byte(i)}), 5, 100, 0, []uint16{443})
			} else {
				delete(s.src, netip.AddrFrom4([4]byte{198, 18, 30, byte(i)}))
			}
		}
		if sec >= 20 {
			s.send(attacker, 4000, 60, 4000, []uint16{22, 23, 80, 443, 8080})
		}
		sorted := make([]netip.Addr, 0, len(s.src))
		for ad := range s.src {
			sorted = append(sorted, ad)
		}
		slices.SortFunc(sorted, func(x, y netip.Addr) int { return x.Compare(y) })
		switch {
		case sec%10 == 3:
			order = slices.Clone(sorted)
			slices.Reverse(order)
		case sec%10 == 7:
			order = append(slices.Clone(sorted[17:]), sorted[:17]...)
		default:
			// The same order, less the sources gone and with the new ones
			// where they sort.
			kept := order[:0]
			for _, ad := range order {
				if s.src[ad] != nil {
					kept = append(kept, ad)
				}
			}
			for _, ad := range sorted {
				if !slices.Contains(kept, ad) {
					at := min(len(kept), int(ad.As4()[3]))
					kept = slices.Insert(kept, at, ad)
				}
			}
			order = kept
		}
		readIn := func(addrs []netip.Addr, per int) Reader {
			return func(fn func([]maps.Source) bool) error {
				for i := 0; i < len(addrs); i += per {
					batch := make([]maps.Source, 0, per)
					for _, ad := range addrs[i:min(len(addrs), i+per)] {
						batch = append(batch, *s.src[ad])
					}
					fn(batch)
				}
				return nil
			}
		}
		if err := a.Cycle(s.now, s.mono, readIn(sorted, len(sorted))); err != nil {
			t.Fatal(err)
		}
		if err := b.Cycle(s.now, s.mono, readIn(order, 1+sec%5)); err != nil {
			t.Fatal(err)
		}
		if a.states.n != len(s.src) || b.states.n != len(s.src) {
			t.Fatalf("second %d: %d and %d states, want %d", sec, a.states.n, b.states.n, len(s.src))
		}
		for ia := int32(0); int(ia) < a.states.n; ia++ {
			key := a.states.at(ia).key
			ib, ok := b.states.find(key)
			if !ok || *a.states.at(ia) != *b.states.at(ib) {
				t.Fatalf("second %d: source %s: state %+v read sorted, %+v (found %v) read in another order",
					sec, netip.AddrFrom16(key).Unmap(), *a.states.at(ia), *b.states.at(ib), ok)
			}
		}
		s.tick()
	}
	same := len(sinkA.puts) == len(sinkB.puts)
	for ad, act := range sinkA.puts {
		same = same && sinkB.puts[ad] == act
	}
	if sinkA.puts[attacker] != maps.VerdictBlock || !same {
		t.Fatalf("verdicts %v read sorted, %v in another order; want a block on %s in both", sinkA.puts, sinkB.puts, attacker)
	}
}

// TestTableIndex adds and removes states at random, through growth to
// 40,000 and shrinking back to a few: after every step the table finds
// every key it holds at the index that holds it, and none of those it
// removed.
func TestTableIndex(t *testing.T) {
	var tab table
	r := rand.New(rand.NewPCG(5, 5))
	held := map[[16]byte]bool{}
	keyOf := func(n int) [16]byte {
		return netip.AddrFrom4([4]byte{198, 18, byte(n >> 8), byte(n)}).As16()
	}
	check := func(step string) {
		t.Helper()
		if tab.n != len(held) {
			t.Fatalf("%s: %d states, want %d", step, tab.n, len(held))
		}
		for i := int32(0); int(i) < tab.n; i++ {
			if j, ok := tab.find(tab.at(i).key); !ok || j != i {
				t.Fatalf("%s: state %d (%v) found at %d, %v", step, i, tab.at(i).key, j, ok)
			}
		}
	}
	for round, size := range []int{40_000, 3000, 30_000, 5, 0} {
		for tab.n != size {
			k := keyOf(r.IntN(65536))
			i, ok := tab.find(k)
			if ok != held[k] {
				t.Fatalf("round %d: find(%v) = %v, held %v", round, k, ok, held[k])
			}
			switch {
			case !ok && tab.n < size:
				tab.add(state{key: k})
				held[k] = true
			case ok && tab.n > size:
				tab.removeSwap(i)
				delete(held, k)
			}
		}
		check(fmt.Sprintf("round %d (%d states, %d slots)", round, size, len(tab.slots)))
		if size > 0 && 2*tab.n > len(tab.slots) || len(tab.slots) > max(minSlots, 8*tab.n) {
			t.Errorf("round %d: %d states in %d slots, want at most half and at least an eighth full", round, tab.n, len(tab.slots))
		}
	}
}
