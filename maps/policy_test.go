package maps

import (
	"strings"
	"testing"
)

// TestCompile checks the port tables rule by rule at the edges of each
// range (the port before, the first, the last and the one after), and
// every refusal.
func TestCompile(t *testing.T) {
	lim := Limit{PPS: 10, Burst: 10}
	p := Policy{Rules: []Rule{
		{Name: "web", Protocol: ProtoTCP, Ports: []PortRange{{80, 80}, {443, 445}}, Limit: lim},
		{Name: "syn", Protocol: ProtoTCP, SYN: true, Ports: []PortRange{{1, 1024}}, Limit: lim},
		{Name: "dns", Protocol: ProtoUDP, Ports: []PortRange{{53, 53}}, Limit: lim},
		{Name: "udp-high", Protocol: ProtoUDP, Ports: []PortRange{{60000, 65535}}, Limit: lim},
		{Name: "ping", Protocol: ProtoICMP, Limit: lim},
		{Name: "ping6", Protocol: ProtoICMPv6, Limit: lim},
	}}
	pt, err := p.Compile()
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		table int
		port  int
		id    uint8
	}{
		{TableTCP, 79, 0}, {TableTCP, 80, 1}, {TableTCP, 81, 0},
		{TableTCP, 442, 0}, {TableTCP, 443, 1}, {TableTCP, 445, 1}, {TableTCP, 446, 0},
		{TableTCPSYN, 0, 0}, {TableTCPSYN, 1, 2}, {TableTCPSYN, 1024, 2}, {TableTCPSYN, 1025, 0},
		{TableUDP, 52, 0}, {TableUDP, 53, 3}, {TableUDP, 54, 0},
		{TableUDP, 59999, 0}, {TableUDP, 60000, 4}, {TableUDP, 65535, 4},
		{TableUDP, 80, 0}, {TableTCP, 53, 0},
	}
	for _, w := range want {
		if got := pt.Table[w.table][w.port]; got != w.id {
			t.Errorf("table %d port %d: rule %d, want %d", w.table, w.port, got, w.id)
		}
	}
	if pt.ICMPRule != 5 || pt.ICMPv6Rule != 6 || !pt.Any {
		t.Errorf("ICMP rule %d, ICMPv6 rule %d, any %v; want 5, 6, true", pt.ICMPRule, pt.ICMPv6Rule, pt.Any)
	}
	// Every port entry set comes from a rule's range: count them.
	set := 0
	for tb := range pt.Table {
		for _, id := range pt.Table[tb] {
			if id != 0 {
				set++
			}
		}
	}
	if wantSet := 1 + 3 + 1024 + 1 + 5536; set != wantSet {
		t.Errorf("%d port entries set, want %d", set, wantSet)
	}

	all, err := (&Policy{Rules: []Rule{{Name: "all", Protocol: ProtoUDP, Limit: lim}}}).Compile()
	if err != nil {
		t.Fatal(err)
	}
	if all.Table[TableUDP][0] != 1 || all.Table[TableUDP][65535] != 1 || all.Table[TableTCP][0] != 0 {
		t.Error("a rule without ports must cover every UDP port and nothing else")
	}
}

func TestCompileRefuses(t *testing.T) {
	lim := Limit{PPS: 1}
	many := make([]Rule, MaxRules+1)
	for i := range many {
		many[i] = Rule{Name: "r", Protocol: ProtoUDP, Ports: []PortRange{{uint16(i), uint16(i)}}, Limit: lim}
	}
	tests := []struct {
		name  string
		rules []Rule
		want  string
	}{
		{"too many", many, "at most 253"},
		{"no rate", []Rule{{Name: "a", Protocol: ProtoUDP}}, `rule "a": no rate set`},
		{"overlap at an edge", []Rule{
			{Name: "a", Protocol: ProtoTCP, Ports: []PortRange{{10, 20}}, Limit: lim},
			{Name: "b", Protocol: ProtoTCP, Ports: []PortRange{{20, 30}}, Limit: lim}}, `rule "b" overlaps rule "a" on tcp port 20`},
		{"two icmp rules", []Rule{
			{Name: "a", Protocol: ProtoICMP, Limit: lim}, {Name: "b", Protocol: ProtoICMP, Limit: lim}}, `rule "b" overlaps rule "a" on icmp`},
		{"ports on icmp", []Rule{{Name: "a", Protocol: ProtoICMP, Ports: []PortRange{{1, 1}}, Limit: lim}}, "need protocol tcp or udp"},
		{"syn on udp", []Rule{{Name: "a", Protocol: ProtoUDP, SYN: true, Limit: lim}}, "unsupported protocol"},
		{"reversed", []Rule{{Name: "a", Protocol: ProtoUDP, Ports: []PortRange{{9, 8}}, Limit: lim}}, "reversed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := (&Policy{Rules: tt.rules}).Compile()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
	// A TCP rule and a TCP SYN rule on the same port do not overlap: they
	// are different tables.
	if _, err := (&Policy{Rules: []Rule{
		{Name: "a", Protocol: ProtoTCP, Ports: []PortRange{{22, 22}}, Limit: lim},
		{Name: "b", Protocol: ProtoTCP, SYN: true, Ports: []PortRange{{22, 22}}, Limit: lim}}}).Compile(); err != nil {
		t.Errorf("tcp and tcp syn on one port: %v", err)
	}
}

// TestDepthAndPermille checks the integer conversions the loader writes,
// against values worked by hand.
func TestDepthAndPermille(t *testing.T) {
	depths := []struct{ burst, rate, want uint64 }{
		{10, 10, 1_000_000_000},
		{1, 3, 333_333_333}, // rounded down
		{0, 5, 0},
		{5, 0, 0},
		{1 << 40, 1, ^uint64(0)}, // 2^40 s does not fit in u64 ns: saturates
	}
	for _, d := range depths {
		if got := Depth(d.burst, d.rate); got != d.want {
			t.Errorf("Depth(%d, %d) = %d, want %d", d.burst, d.rate, got, d.want)
		}
	}
	permille := []struct {
		m    float64
		want uint32
	}{{1, 1000}, {0.1, 100}, {2.5, 2500}, {0.0004, 1}, {0.0006, 1}, {0.0016, 2}}
	for _, p := range permille {
		if got := Permille(p.m); got != p.want {
			t.Errorf("Permille(%v) = %d, want %d", p.m, got, p.want)
		}
	}
}
