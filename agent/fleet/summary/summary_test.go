package summary

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

var t0 = time.Unix(1_800_000_000, 0).UTC() // a multiple of 60 s

func sketchOf(ports ...uint16) Sketch {
	var s Sketch
	for _, p := range ports {
		s.AddPort(p)
	}
	return s
}

// The datapath's hash: (port * 2654435761 mod 2^32) >> 24, computed
// independently (python3) for these ports.
func TestSketchHashIsTheDatapaths(t *testing.T) {
	for port, bit := range map[uint16]int{22: 152, 80: 113, 443: 201, 1000: 8, 65535: 219} {
		s := sketchOf(port)
		if s.Bits() != 1 || s[bit>>6] != 1<<(bit&63) {
			t.Errorf("port %d: sketch %x, want bit %d alone", port, s, bit)
		}
	}
}

func TestEstimateArithmetic(t *testing.T) {
	full := Sketch{^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)}
	for _, c := range []struct {
		s    Sketch
		want float64
	}{
		{Sketch{}, 0},
		{Sketch{1}, 256 * math.Log(256.0/255)},          // 1.00196
		{Sketch{0b11}, 256 * math.Log(256.0/254)},       // 2.0078
		{Sketch{^uint64(0)}, 256 * math.Log(256.0/192)}, // 64 bits: 73.65
		{full, 256 * math.Log(256)},                     // saturated: 1419.57
	} {
		if got := c.s.Estimate(); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("estimate of %d bits: %v, want %v", c.s.Bits(), got, c.want)
		}
	}
	// Consecutive ports 1..n hash to n distinct bits for n <= 100 (python3),
	// so the estimate is 256 ln(256/(256-n)).
	for _, n := range []int{1, 10, 50, 100} {
		var s Sketch
		for p := 1; p <= n; p++ {
			s.AddPort(uint16(p))
		}
		want := 256 * math.Log(256/float64(256-n))
		if s.Bits() != n || math.Abs(s.Estimate()-want) > 1e-9 {
			t.Errorf("ports 1..%d: %d bits, estimate %v, want %d bits, %v", n, s.Bits(), s.Estimate(), n, want)
		}
	}
}

// Linear counting of n items in m bits has a standard error of
// sqrt(m (e^t - t - 1)) and a bias of (e^t - t - 1)/2, t = n/m (Whang et
// al. 1990). Over many random port sets, every estimate is within 4
// standard errors (+1 for rounding at small n) and the mean error within 4
// standard errors of the mean of the bias.
func TestEstimateErrorBound(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const m, trials = 256.0, 200
	for _, n := range []int{2, 5, 12, 20, 50, 100, 200, 400} {
		tt := float64(n) / m
		sigma := math.Sqrt(m * (math.Exp(tt) - tt - 1))
		bias := (math.Exp(tt) - tt - 1) / 2
		var sumErr float64
		for range trials {
			seen := map[uint16]bool{}
			var s Sketch
			for len(seen) < n {
				p := uint16(r.Uint32())
				if !seen[p] {
					seen[p] = true
					s.AddPort(p)
				}
			}
			e := s.Estimate() - float64(n)
			sumErr += e
			if math.Abs(e) > 4*sigma+1 {
				t.Errorf("n=%d: estimate %.1f, off by more than 4 sigma (%.2f)", n, s.Estimate(), sigma)
			}
		}
		if mean := sumErr / trials; math.Abs(mean-bias) > 4*sigma/math.Sqrt(trials)+0.05 {
			t.Errorf("n=%d: mean error %.2f, want %.2f +- %.2f", n, mean, bias, 4*sigma/math.Sqrt(trials))
		}
	}
}

// The OR of two hosts' sketches is the sketch of the union of their ports.
func TestSketchUnion(t *testing.T) {
	a, b := sketchOf(1, 2, 3, 80), sketchOf(3, 80, 443, 8080)
	u := a
	u.Or(b)
	if u != sketchOf(1, 2, 3, 80, 443, 8080) {
		t.Fatalf("union %x != sketch of the union", u)
	}
}

func v4(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 32)
}

func TestRoundTrip(t *testing.T) {
	v6 := netip.MustParsePrefix("2001:2::/64")
	s := &Summary{Node: "edge-1", Start: t0, Length: time.Minute, OmittedSources: 3, OmittedPackets: 99,
		Entries: []Entry{
			{Source: v4(1), Ports: sketchOf(22, 23), Packets: 2},
			{Source: v6, Ports: Sketch{^uint64(0), 1, 0, 5}, Packets: math.MaxUint64},
			{Source: v4(2), Packets: 7},
		}}
	b, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// Arithmetic: header 4+1+6 + varints (start 1.8e18 < 2^63: 9 bytes,
	// length 6e10 < 2^42: 6, then 1, 1, 1) = 29; v6 raw 1+1+16+32+10 = 60;
	// v4 with 2 bits 1+4+1+2+1 = 9; v4 with no bit 1+4+1+1 = 7.
	if len(b) != 29+60+9+7 {
		t.Errorf("encoded %d bytes, want %d", len(b), 29+60+9+7)
	}
	got, err := Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, s) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, s)
	}
	if got.Entries[0].Source != v6 || got.Entries[2].Source != v4(2) {
		t.Errorf("order: most ports first, got %v", got.Entries)
	}
	// Every truncation is a precise error, never a panic.
	for i := range len(b) {
		if _, err := Unmarshal(b[:i]); err == nil {
			t.Fatalf("truncated to %d bytes: no error", i)
		}
	}
}

func TestUnmarshalRefuses(t *testing.T) {
	s := &Summary{Node: "n1", Start: t0, Length: time.Minute,
		Entries: []Entry{{Source: v4(1), Ports: sketchOf(22), Packets: 1}}}
	good, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		b    []byte
		want string
	}{
		"magic":    {append([]byte("XWS1"), good[4:]...), "bad magic"},
		"trailing": {append(bytes.Clone(good), 0), "trailing"},
		"too big":  {make([]byte, MaxSize+1), "over the"},
		"bad node": {bytes.Replace(bytes.Clone(good), []byte("n1"), []byte("n!"), 1), "node"},
	}
	// A duplicate source: the count says 2 and the entry is repeated.
	s2 := &Summary{Node: "n1", Start: t0, Length: time.Minute,
		Entries: []Entry{{Source: v4(1), Packets: 1}, {Source: v4(2), Packets: 1}}}
	b2, err := s2.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	dup := bytes.Clone(b2)
	copy(dup[len(dup)-7:], dup[len(dup)-14:len(dup)-7])
	cases["duplicate"] = struct {
		b    []byte
		want string
	}{dup, "appears twice"}
	for name, c := range cases {
		if _, err := Unmarshal(c.b); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", name, err, c.want)
		}
	}
	for name, bad := range map[string]*Summary{
		"node":      {Node: "", Start: t0, Length: time.Minute},
		"unaligned": {Node: "n", Start: t0.Add(time.Second), Length: time.Minute},
		"short":     {Node: "n", Start: t0, Length: time.Millisecond},
		"unmasked":  {Node: "n", Start: t0, Length: time.Minute, Entries: []Entry{{Source: netip.MustParsePrefix("2001:2::1/64")}}},
		"v4 /24":    {Node: "n", Start: t0, Length: time.Minute, Entries: []Entry{{Source: netip.MustParsePrefix("198.18.0.0/24")}}},
	} {
		if _, err := bad.Marshal(); err == nil {
			t.Errorf("marshal %s: no error", name)
		}
	}
}

// The worst input: IPv6 sources with every port bit set and the largest
// packet count, from a 64-character node. Each entry is 1+1+16+32+10 = 60
// bytes; the header is reserved at its largest, 4+1+64+5*10 = 119 bytes, so
// floor((65536-119)/60) = 1090 entries fit and the rest are counted omitted.
func TestBoundOnWorstInput(t *testing.T) {
	const n = 100000
	s := &Summary{Node: strings.Repeat("n", 64), Start: t0, Length: time.Minute}
	full := Sketch{^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)}
	for i := range n {
		a := [16]byte{0x20, 0x01, 0x00, 0x02, 0, byte(i >> 16), byte(i >> 8), byte(i)}
		s.Entries = append(s.Entries, Entry{Source: netip.PrefixFrom(netip.AddrFrom16(a), 64), Ports: full, Packets: math.MaxUint64})
	}
	b, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > MaxSize {
		t.Fatalf("encoded %d bytes, over %d", len(b), MaxSize)
	}
	if len(s.Entries) != 1090 || s.OmittedSources != n-1090 || s.OmittedPackets != math.MaxUint64 {
		t.Errorf("kept %d, omitted %d (%d packets); want 1090, %d, saturated", len(s.Entries), s.OmittedSources, s.OmittedPackets, n-1090)
	}
	got, err := Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Entries) != 1090 || got.OmittedSources != n-1090 {
		t.Errorf("decoded %d entries, %d omitted", len(got.Entries), got.OmittedSources)
	}
}

// Scans first: with too many sources, the ones with the most distinct ports
// are kept, then the heaviest.
func TestKeepsScansFirst(t *testing.T) {
	s := &Summary{Node: "n", Start: t0, Length: time.Minute}
	for i := range 20000 {
		s.Entries = append(s.Entries, Entry{Source: v4(i), Ports: sketchOf(443), Packets: uint64(i)})
	}
	scanner := netip.MustParsePrefix("198.19.9.9/32")
	s.Entries = append(s.Entries, Entry{Source: scanner, Ports: sketchOf(1000, 1001), Packets: 2})
	if _, err := s.Marshal(); err != nil {
		t.Fatal(err)
	}
	if s.Entries[0].Source != scanner {
		t.Fatalf("first kept %v, want the scanner", s.Entries[0].Source)
	}
	// Then by packets: the heaviest single-port sources, 19999 downwards.
	if s.Entries[1].Packets != 19999 || s.Entries[len(s.Entries)-1].Packets != uint64(20000-len(s.Entries)+1) {
		t.Errorf("kept packets %d..%d", s.Entries[1].Packets, s.Entries[len(s.Entries)-1].Packets)
	}
	if uint64(len(s.Entries))+s.OmittedSources != 20001 {
		t.Errorf("kept %d + omitted %d != 20001", len(s.Entries), s.OmittedSources)
	}
}

// A distributed slow scan: 10 hosts, 2 ports each (1000+2i, 1001+2i), so
// ports 1000..1019 fleet-wide: 20 distinct bits (python3), estimate
// 256 ln(256/236) = 20.82 -> 21; each host 2 bits -> 2.008 -> 2. Benign:
// ports 80 and 443 on every host (2 fleet-wide); a source with 30 ports on
// 2 hosts (fewer than min_hosts).
func TestRuleFlagsWhatNoHostFlags(t *testing.T) {
	scanner, client, local := v4(1), v4(2), v4(3)
	w, err := NewWindow(t0, time.Minute, 0)
	if err != nil {
		t.Fatal(err)
	}
	for h := range 10 {
		s := &Summary{Node: fmt.Sprintf("edge-%d", h), Start: t0, Length: time.Minute, Entries: []Entry{
			{Source: scanner, Ports: sketchOf(uint16(1000+2*h), uint16(1001+2*h)), Packets: 2},
			{Source: client, Ports: sketchOf(80, 443), Packets: 1000},
		}}
		if h < 2 {
			var many Sketch
			for p := range 30 {
				many.AddPort(uint16(2000 + p))
			}
			s.Entries = append(s.Entries, Entry{Source: local, Ports: many, Packets: 30})
		}
		if ok, err := w.Add(s); !ok || err != nil {
			t.Fatalf("add %s: %v %v", s.Node, ok, err)
		}
		// Redelivery changes nothing.
		if ok, err := w.Add(s); ok || err != nil {
			t.Fatalf("second add of %s: %v %v", s.Node, ok, err)
		}
	}
	got := w.Findings(Rule{MinHosts: DefaultMinHosts, MinPorts: DefaultMinPorts})
	want := []Finding{{Source: scanner, Hosts: 10, Ports: 21, PortsEach: 2, Packets: 20, Window: time.Minute}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("findings %+v, want %+v", got, want)
	}
	if r := got[0].Reason(); r != "fleet: seen on 10 hosts, 2 ports each (21 distinct) in 60 s" {
		t.Errorf("reason %q", r)
	}
	// Stricter: 11 hosts, or 22 ports: nothing.
	if f := w.Findings(Rule{MinHosts: 11, MinPorts: 12}); len(f) != 0 {
		t.Errorf("min_hosts 11: %v", f)
	}
	if f := w.Findings(Rule{MinHosts: 3, MinPorts: 22}); len(f) != 0 {
		t.Errorf("min_ports 22: %v", f)
	}
	// min_hosts 2 also flags the 30-port source (256 ln(256/(256-30)) = 31.9 -> 32, python3: 30 bits).
	if f := w.Findings(Rule{MinHosts: 2, MinPorts: 12}); len(f) != 2 || f[1].Source != local || f[1].Ports != 32 || f[1].Hosts != 2 {
		t.Errorf("min_hosts 2: %+v", f)
	}
	if _, err := w.Add(&Summary{Node: "x", Start: t0.Add(time.Minute), Length: time.Minute}); err == nil {
		t.Error("a summary of another window was merged")
	}
}

func randomSummary(r *rand.Rand, node string) *Summary {
	s := &Summary{Node: node, Start: t0, Length: time.Minute, OmittedSources: uint64(r.IntN(5))}
	for i := range 50 {
		if r.IntN(2) == 0 {
			continue
		}
		var sk Sketch
		for range r.IntN(6) {
			sk.AddPort(uint16(r.Uint32()))
		}
		s.Entries = append(s.Entries, Entry{Source: v4(i), Ports: sk, Packets: uint64(r.IntN(1000))})
	}
	return s
}

func windowOf(t *testing.T, ss ...*Summary) *Window {
	t.Helper()
	w, err := NewWindow(t0, time.Minute, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ss {
		if _, err := w.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// Merge is associative and commutative, and merging windows equals adding
// every summary to one window.
func TestMergeAssociative(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	a, b, c := randomSummary(r, "a"), randomSummary(r, "b"), randomSummary(r, "c")
	all := windowOf(t, c, a, b)

	ab := windowOf(t, a)
	if err := ab.Merge(windowOf(t, b)); err != nil {
		t.Fatal(err)
	}
	left := ab // (a+b)+c
	if err := left.Merge(windowOf(t, c)); err != nil {
		t.Fatal(err)
	}
	bc := windowOf(t, b)
	if err := bc.Merge(windowOf(t, c)); err != nil {
		t.Fatal(err)
	}
	right := windowOf(t, a) // a+(b+c)
	if err := right.Merge(bc); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(left, right) || !reflect.DeepEqual(left, all) {
		t.Fatal("merge is not associative / not equal to adding every summary")
	}
	rule := Rule{MinHosts: 2, MinPorts: 2}
	if len(all.Findings(rule)) == 0 {
		t.Fatal("the random summaries flag nothing: the test proves nothing")
	}
	if !reflect.DeepEqual(left.Findings(rule), all.Findings(rule)) {
		t.Fatal("findings differ")
	}
	if err := left.Merge(windowOf(t, a)); err == nil {
		t.Fatal("merging a node twice: no error")
	}
}

func TestRuleValidate(t *testing.T) {
	if err := (Rule{DefaultMinHosts, DefaultMinPorts}).Validate(); err != nil {
		t.Fatal(err)
	}
	for _, r := range []Rule{{1, 12}, {3, 1}, {3, 201}} {
		if err := r.Validate(); err == nil {
			t.Errorf("%+v: no error", r)
		}
	}
}
