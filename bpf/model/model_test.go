package model

import (
	"encoding/binary"
	"math"
	"math/big"
	"net/netip"
	"testing"

	"github.com/bulwark-filter/bulwark/maps"
)

// udp4 is an Ethernet/IPv4/UDP frame from src to dport with n payload bytes
// (checksums are not looked at).
func udp4(src string, dport uint16, n int) []byte {
	f := make([]byte, 14+20+8+n)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+n))
	ip[8], ip[9] = 64, ProtoUDP
	a := netip.MustParseAddr(src).As4()
	copy(ip[12:16], a[:])
	copy(ip[16:20], []byte{198, 18, 0, 1})
	binary.BigEndian.PutUint16(ip[20+2:], dport)
	binary.BigEndian.PutUint16(ip[20+4:], uint16(8+n))
	return f
}

func TestPermille(t *testing.T) {
	for _, c := range []struct {
		m    float64
		want uint64
	}{{1, 1000}, {0.1, 100}, {0.0015, 2}, {0.0014, 1}, {0.0004, 1}, {0, 1}, {1e30, math.MaxUint64}} {
		if got := permille(c.m); got != c.want {
			t.Errorf("permille(%v) = %d, want %d", c.m, got, c.want)
		}
	}
}

func TestCheckRules(t *testing.T) {
	lim := maps.Limit{PPS: 1}
	bad := [][]maps.Rule{
		{{Name: "a", Protocol: maps.ProtoUDP}},
		{{Name: "a", Protocol: maps.ProtoUDP, SYN: true, Limit: lim}},
		{{Name: "a", Protocol: maps.ProtoICMP, Ports: []maps.PortRange{{Lo: 1, Hi: 1}}, Limit: lim}},
		{{Name: "a", Protocol: maps.ProtoTCP, Limit: lim}, {Name: "b", Protocol: maps.ProtoTCP, Ports: []maps.PortRange{{Lo: 5, Hi: 5}}, Limit: lim}},
		{{Name: "a", Protocol: maps.ProtoICMPv6, Limit: lim}, {Name: "b", Protocol: maps.ProtoICMPv6, Limit: lim}},
		{{Name: "a", Protocol: "sctp", Limit: lim}},
	}
	for i, rules := range bad {
		if err := checkRules(rules); err == nil {
			t.Errorf("case %d: accepted %+v", i, rules)
		}
	}
	good := []maps.Rule{
		{Name: "a", Protocol: maps.ProtoTCP, Ports: []maps.PortRange{{Lo: 1, Hi: 9}}, Limit: lim},
		{Name: "b", Protocol: maps.ProtoTCP, Ports: []maps.PortRange{{Lo: 10, Hi: 10}}, Limit: lim},
		{Name: "c", Protocol: maps.ProtoTCP, SYN: true, Limit: lim},
		{Name: "d", Protocol: maps.ProtoICMP, Limit: lim},
		{Name: "e", Protocol: maps.ProtoICMPv6, Limit: lim},
	}
	if err := checkRules(good); err != nil {
		t.Errorf("refused a valid policy: %v", err)
	}
}

// TestBucketByHand runs one source through a 2 pps, burst 2 limit at times
// chosen so the arithmetic is plain: two pass at once, the third is over,
// and 0.5 s later (one interval) one more passes.
func TestBucketByHand(t *testing.T) {
	m, err := New(maps.Policy{Default: maps.Limit{PPS: 2, Burst: 2}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := udp4("198.18.1.1", 9, 10)
	const t0 = 10_000_000_000
	steps := []struct {
		at   uint64
		pass bool
	}{{t0, true}, {t0, true}, {t0, false}, {t0 + 499_999_999, false}, {t0 + 500_000_000, true}, {t0 + 500_000_000, false}}
	for i, s := range steps {
		d := m.Decide(f, s.at)
		if got := d.Reason == maps.ReasonPassed; got != s.pass {
			t.Errorf("step %d at +%d ns: %+v, want pass=%v", i, s.at-t0, d, s.pass)
		}
	}
}

// TestRuleScan checks the rules a packet takes from are found by protocol
// and port, at the edges of a range.
func TestRuleScan(t *testing.T) {
	lim := maps.Limit{PPS: 1, Burst: 1}
	m, err := New(maps.Policy{Rules: []maps.Rule{
		{Name: "low", Protocol: maps.ProtoUDP, Ports: []maps.PortRange{{Lo: 100, Hi: 200}}, Limit: lim},
		{Name: "high", Protocol: maps.ProtoUDP, Ports: []maps.PortRange{{Lo: 201, Hi: 300}}, Limit: lim},
	}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		port uint16
		want []int
	}{{99, nil}, {100, []int{1}}, {200, []int{1}}, {201, []int{2}}, {300, []int{2}}, {301, nil}} {
		p, r := Parse(udp4("198.18.1.1", c.port, 0))
		if r != ParseOK {
			t.Fatalf("port %d: parse %d", c.port, r)
		}
		got := m.rulesFor(&p)
		if len(got) != len(c.want) || (len(got) == 1 && got[0] != c.want[0]) {
			t.Errorf("port %d: rules %v, want %v", c.port, got, c.want)
		}
	}
}

// TestNoWrap: buckets are exact, so an interval that would wrap a 64-bit
// time in the datapath does not wrap here.
func TestNoWrap(t *testing.T) {
	var tat big.Int
	tat.SetUint64(math.MaxUint64 - 10)
	iv := big.NewInt(100)
	depth := new(big.Int).SetUint64(math.MaxUint64)
	if !gcraTake(&tat, math.MaxUint64-20, iv, depth) {
		t.Fatal("a take within the depth was refused")
	}
	want := new(big.Int).Add(new(big.Int).SetUint64(math.MaxUint64-10), iv)
	if tat.Cmp(want) != 0 {
		t.Errorf("tat %v, want %v (no wrap)", &tat, want)
	}
}
