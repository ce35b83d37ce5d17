// Package parsecases is the table of hand-built frames behind docs/datapath.md's
// "Malformed rules": for every rule, frames on both sides of it, each with
// the outcome the table promises (malformed, passed or non-IP). The
// datapath tests in bpf/ run them through the real program and the model, the
// replay test through `bulwark replay`.
package parsecases

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"github.com/bulwark-filter/bulwark/test/testutil"
)

// Outcome is what the datapath must make of a frame (with no policy).
type Outcome int

// Outcomes.
const (
	Passed    Outcome = iota // parsed: decided by lists and limits (none here)
	Malformed                // dropped as malformed by default
	NonIP                    // not IP: passed as non_ip
)

// String is the outcome as the datapath's counters name it.
func (o Outcome) String() string {
	return [...]string{"passed", "malformed", "non_ip"}[o]
}

// The rules, as the first column of the table of docs/datapath.md names them.
const (
	RuleVLAN      = "VLAN tags"
	RulePadding   = "Ethernet padding"
	RuleIPv4      = "IPv4 header"
	RuleIPv4Len   = "IPv4 total length"
	RuleIPv4Opts  = "IPv4 options"
	RuleIPv6      = "IPv6 header"
	RuleJumbo     = "IPv6 payload length 0"
	RuleIPv6Ext   = "IPv6 extension headers"
	RuleFirstFrag = "First fragments"
	RuleLaterFrag = "Later fragments"
	RuleTinyFrag  = "Tiny TCP fragments"
	RuleTCP       = "TCP header"
	RuleUDP       = "UDP length"
	RuleICMP      = "ICMP and ICMPv6"
	RuleOther     = "Other protocols"
)

// Rules lists every rule, in the order of docs/datapath.md.
var Rules = []string{RuleVLAN, RulePadding, RuleIPv4, RuleIPv4Len, RuleIPv4Opts, RuleIPv6, RuleJumbo,
	RuleIPv6Ext, RuleFirstFrag, RuleLaterFrag, RuleTinyFrag, RuleTCP, RuleUDP, RuleICMP, RuleOther}

// Case is one hand-built frame.
type Case struct {
	Rule  string
	Name  string
	Frame []byte
	Src   netip.Addr // the source the datapath must see, if the IP header parses
	Want  Outcome
}

// Header offsets in frames without VLAN tags.
const (
	l3   = 14
	l4v4 = l3 + 20
	l4v6 = l3 + 40
)

const (
	dst4 = "198.19.0.1"
	dst6 = "2001:2:0:ff::1"
)

func put16(b []byte, off int, v uint16) { binary.BigEndian.PutUint16(b[off:], v) }

// patch returns a copy of f with fn applied.
func patch(f []byte, fn func(b []byte)) []byte {
	b := append([]byte(nil), f...)
	fn(b)
	return b
}

// trim drops the Ethernet padding gopacket adds below 60 bytes, so that a
// test of a length field is not also a test of padding.
func trim(f []byte, v6 bool) []byte {
	if v6 {
		return f[:l3+40+int(binary.BigEndian.Uint16(f[l3+4:]))]
	}
	return f[:l3+int(binary.BigEndian.Uint16(f[l3+2:]))]
}

// cutIPv4 makes f (a plain IPv4 frame) hold only n bytes of IP payload,
// with the total length to match.
func cutIPv4(f []byte, n int) []byte {
	ihl := int(f[l3]&0x0f) * 4
	b := append([]byte(nil), f[:l3+ihl+n]...)
	put16(b, l3+2, uint16(ihl+n))
	return b
}

// cutIPv6 makes f hold only n bytes of IPv6 payload (extension headers
// included), with the payload length to match.
func cutIPv6(f []byte, n int) []byte {
	b := append([]byte(nil), f[:l3+40+n]...)
	put16(b, l3+4, uint16(n))
	return b
}

// builder hands each case its own source, so a per-source check (the
// kernel's source table, the replay's report) can tell the cases apart:
// 198.18.10.x for IPv4 and the /64 2001:2:0:1xx:: for IPv6.
type builder struct {
	t  testing.TB
	n  int
	cs []Case
}

func (b *builder) src4() string {
	b.n++
	return fmt.Sprintf("198.18.%d.%d", 10+b.n/250, 1+b.n%250)
}

func (b *builder) src6() string {
	b.n++
	return fmt.Sprintf("2001:2:0:%x::1", 0x100+b.n)
}

func (b *builder) add(rule, name string, want Outcome, src string, frame []byte) {
	c := Case{Rule: rule, Name: name, Frame: frame, Want: want}
	if src != "" {
		c.Src = netip.MustParseAddr(src)
	}
	b.cs = append(b.cs, c)
}

// Cases builds the table's frames.
func Cases(t testing.TB) []Case {
	t.Helper()
	b := &builder{t: t}
	b.link()
	b.ipv4()
	b.ipv6()
	b.fragments()
	b.l4()
	return b.cs
}

func (b *builder) link() {
	t := b.t
	q, ad := testutil.TPID8021Q, testutil.TPID8021AD
	s := b.src4()
	b.add(RuleVLAN, "3 tags (802.1ad, 802.1Q, 802.1Q)", Passed, s, testutil.UDP4(t, s, dst4, 53, 16, testutil.VLAN(ad, q, q)))
	s = b.src4()
	b.add(RuleVLAN, "4 tags (deliberate)", Malformed, "", testutil.UDP4(t, s, dst4, 53, 16, testutil.VLAN(ad, q, q, q)))
	b.add(RuleVLAN, "tag cut short", Malformed, "", testutil.Ether(t, testutil.EtherARP, 28, testutil.VLAN(q))[:16])

	s = b.src4()
	ack := testutil.TCP4(t, s, dst4, 443, testutil.FlagACK)
	if len(ack) != 60 || binary.BigEndian.Uint16(ack[l3+2:]) != 40 {
		t.Fatalf("a bare TCP ACK should be a 40-byte packet padded to 60 bytes, is %d bytes", len(ack))
	}
	b.add(RulePadding, "IPv4 TCP ACK padded to 60 bytes", Passed, s, ack)
	s = b.src4()
	b.add(RulePadding, "IPv4 UDP with a 100-byte trailer", Passed, s,
		append(trim(testutil.UDP4(t, s, dst4, 53, 16), false), make([]byte, 100)...))
	s = b.src6()
	b.add(RulePadding, "IPv6 UDP with a 20-byte trailer", Passed, s,
		append(trim(testutil.UDP6(t, s, dst6, 53, 16), true), make([]byte, 20)...))

	b.add(RuleOther, "ARP", NonIP, "", testutil.Ether(t, testutil.EtherARP, 28))
	b.add(RuleOther, "MPLS", NonIP, "", testutil.Ether(t, testutil.EtherMPLS, 40))
	for _, p := range []struct {
		name  string
		proto uint8
		n     int
	}{{"GRE", testutil.ProtoGRE, 4}, {"ESP", testutil.ProtoESP, 24}, {"AH (not walked over IPv4)", testutil.ProtoAH, 24},
		{"SCTP", 132, 12}, {"GRE with no bytes", testutil.ProtoGRE, 0}} {
		s = b.src4()
		b.add(RuleOther, "IPv4 "+p.name, Passed, s, testutil.IP(t, s, dst4, p.proto, p.n))
	}
	s = b.src6()
	b.add(RuleOther, "IPv6 no next header", Passed, s, testutil.IP(t, s, dst6, testutil.ProtoNoNext, 0))
}

func (b *builder) ipv4() {
	t := b.t
	udp := func(s string, o ...testutil.Option) []byte {
		return trim(testutil.UDP4(t, s, dst4, 53, 16, o...), false)
	}
	s := b.src4()
	b.add(RuleIPv4, "cut inside the header", Malformed, "", udp(s)[:l3+19])
	s = b.src4()
	b.add(RuleIPv4, "version 6 behind EtherType IPv4", Malformed, "", patch(udp(s), func(f []byte) { f[l3] = 0x65 }))
	s = b.src4()
	b.add(RuleIPv4, "IHL 4", Malformed, "", patch(udp(s), func(f []byte) { f[l3] = 0x44 }))
	s = b.src4()
	b.add(RuleIPv4, "wrong header checksum", Passed, s, patch(udp(s), func(f []byte) { f[l3+10] ^= 0xff }))
	s = b.src4()
	b.add(RuleIPv4, "reserved flag set", Passed, s, patch(udp(s), func(f []byte) { f[l3+6] |= 0x80 }))

	s = b.src4()
	b.add(RuleIPv4Len, "total length past the frame", Malformed, "",
		patch(udp(s), func(f []byte) { put16(f, l3+2, uint16(len(f)-l3+1)) }))
	s = b.src4()
	b.add(RuleIPv4Len, "total length under the header", Malformed, "", patch(udp(s), func(f []byte) { put16(f, l3+2, 19) }))

	for words := 1; words <= 10; words++ {
		s = b.src4()
		b.add(RuleIPv4Opts, fmt.Sprintf("%d bytes of options (IHL %d)", 4*words, 5+words), Passed, s,
			udp(s, testutil.IPv4Options(words)))
	}
	s = b.src4()
	b.add(RuleIPv4Opts, "option 241 with length 255", Passed, s,
		patch(udp(s, testutil.IPv4Options(1)), func(f []byte) { f[l3+20], f[l3+21] = 241, 255 }))
}

func (b *builder) ipv6() {
	t := b.t
	udp := func(s string, o ...testutil.Option) []byte {
		return trim(testutil.UDP6(t, s, dst6, 53, 16, o...), true)
	}
	ext := testutil.IPv6Ext
	s := b.src6()
	b.add(RuleIPv6, "cut inside the header", Malformed, "", udp(s)[:l3+39])
	s = b.src6()
	b.add(RuleIPv6, "version 4 behind EtherType IPv6", Malformed, "", patch(udp(s), func(f []byte) { f[l3] = 0x45 }))
	s = b.src6()
	b.add(RuleIPv6, "payload length past the frame", Malformed, "",
		patch(udp(s), func(f []byte) { put16(f, l3+4, uint16(len(f)-l3-40+1)) }))

	// A jumbogram: payload length 0, a hop-by-hop header whose option is a
	// Jumbo Payload (type 0xc2, 4 bytes), UDP length 0 (RFC 2675 4).
	s = b.src6()
	b.add(RuleJumbo, "hop-by-hop Jumbo Payload option, UDP length 0", Passed, s,
		patch(udp(s, ext(testutil.HopByHop())), func(f []byte) {
			n := len(f) - l3 - 40
			put16(f, l3+4, 0)
			f[l3+40+2], f[l3+40+3] = 0xc2, 4
			binary.BigEndian.PutUint32(f[l3+40+4:], uint32(n))
			put16(f, l3+48+4, 0)
		}))
	s = b.src6()
	b.add(RuleJumbo, "no hop-by-hop header: an empty payload, no room for UDP", Malformed, s,
		patch(udp(s), func(f []byte) { put16(f, l3+4, 0) }))
	s = b.src6()
	b.add(RuleJumbo, "no hop-by-hop header, no next header", Passed, s,
		patch(testutil.IP(t, s, dst6, testutil.ProtoNoNext, 0), func(f []byte) { put16(f, l3+4, 0) }))

	kinds := []testutil.Ext{testutil.HopByHop(), testutil.DstOpts(1), testutil.Routing(), testutil.Fragment(0, false),
		testutil.AH(4), testutil.DstOpts(0), testutil.AH(1), testutil.Routing(), testutil.HopByHop()}
	s = b.src6()
	b.add(RuleIPv6Ext, "8 headers", Passed, s, udp(s, ext(kinds[:8]...)))
	s = b.src6()
	b.add(RuleIPv6Ext, "9 headers (deliberate)", Malformed, s, udp(s, ext(kinds...)))
	s = b.src6()
	b.add(RuleIPv6Ext, "AH (4-byte units) then UDP", Passed, s, udp(s, ext(testutil.AH(4))))
	s = b.src6()
	b.add(RuleIPv6Ext, "ESP ends the walk", Passed, s, testutil.IP(t, s, dst6, testutil.ProtoESP, 24, ext(testutil.HopByHop())))
	s = b.src6()
	b.add(RuleIPv6Ext, "destination options longer than the payload", Malformed, s,
		patch(udp(s, ext(testutil.DstOpts(0))), func(f []byte) { f[l3+41] = 50 }))
}

func (b *builder) fragments() {
	t := b.t
	f4, ext, frag := testutil.Fragment4, testutil.IPv6Ext, testutil.Fragment

	// First fragments carry the UDP header; its length is the datagram's.
	s := b.src4()
	b.add(RuleFirstFrag, "IPv4 UDP, length past the fragment", Passed, s,
		cutIPv4(testutil.UDP4(t, s, dst4, 53, 1472, f4(0, true)), 1000))
	s = b.src6()
	b.add(RuleFirstFrag, "IPv6 UDP, length past the fragment", Passed, s,
		cutIPv6(testutil.UDP6(t, s, dst6, 53, 1400, ext(frag(0, true))), 8+1000))
	s = b.src6()
	b.add(RuleFirstFrag, "IPv6 destination options and AH after the fragment header, then UDP", Passed, s,
		cutIPv6(testutil.UDP6(t, s, dst6, 53, 1400, ext(testutil.HopByHop(), frag(0, true), testutil.DstOpts(0), testutil.AH(4))), 8+8+8+24+960))
	s = b.src4()
	b.add(RuleFirstFrag, "IPv4 TCP, options continue in the next fragment", Passed, s,
		patch(cutIPv4(testutil.TCP4(t, s, dst4, 80, testutil.FlagSYN, f4(0, true)), 24), func(f []byte) { f[l4v4+12] = 10 << 4 }))
	s = b.src4()
	b.add(RuleFirstFrag, "IPv4 UDP, length 7", Malformed, s,
		patch(cutIPv4(testutil.UDP4(t, s, dst4, 53, 1472, f4(0, true)), 1000), func(f []byte) { put16(f, l4v4+4, 7) }))
	s = b.src6()
	b.add(RuleFirstFrag, "IPv6 UDP header not in the first fragment", Malformed, s,
		cutIPv6(testutil.UDP6(t, s, dst6, 53, 16, ext(frag(0, true), testutil.DstOpts(0))), 8+8))
	s = b.src6()
	b.add(RuleFirstFrag, "IPv6 atomic fragment (M clear): a whole packet, UDP length past it", Malformed, s,
		patch(trim(testutil.UDP6(t, s, dst6, 53, 16, ext(frag(0, false))), true), func(f []byte) { put16(f, l4v6+8+4, 100) }))

	s = b.src4()
	b.add(RuleLaterFrag, "IPv4, no L4 bytes read", Passed, s, testutil.IP(t, s, dst4, testutil.ProtoUDP, 8, f4(185, false)))
	s = b.src4()
	b.add(RuleTinyFrag, "IPv4 TCP at offset 16 bytes", Passed, s, testutil.IP(t, s, dst4, testutil.ProtoTCP, 16, f4(2, true)))
	s = b.src4()
	b.add(RuleLaterFrag, "IPv4 UDP at offset 8 bytes", Passed, s, testutil.IP(t, s, dst4, testutil.ProtoUDP, 16, f4(1, true)))
	s = b.src6()
	b.add(RuleLaterFrag, "IPv6, no L4 bytes read", Passed, s, testutil.IP(t, s, dst6, testutil.ProtoUDP, 8, ext(frag(100, false))))

	s = b.src4()
	b.add(RuleTinyFrag, "IPv4 first fragment with 8 bytes of TCP (deliberate)", Malformed, s,
		cutIPv4(testutil.TCP4(t, s, dst4, 80, testutil.FlagSYN, f4(0, true)), 8))
	s = b.src4()
	b.add(RuleTinyFrag, "IPv4 first fragment with 16 bytes of TCP (deliberate)", Malformed, s,
		cutIPv4(testutil.TCP4(t, s, dst4, 80, testutil.FlagSYN, f4(0, true)), 16))
	s = b.src6()
	b.add(RuleTinyFrag, "IPv6 first fragment with 8 bytes of TCP", Malformed, s,
		cutIPv6(testutil.TCP6(t, s, dst6, 80, testutil.FlagSYN, ext(frag(0, true))), 8+8))
	s = b.src4()
	b.add(RuleTinyFrag, "IPv4 TCP at offset 8 bytes (deliberate)", Malformed, s, testutil.IP(t, s, dst4, testutil.ProtoTCP, 16, f4(1, false)))
	s = b.src6()
	b.add(RuleTinyFrag, "IPv6 TCP at offset 8 bytes (deliberate)", Malformed, s,
		testutil.IP(t, s, dst6, testutil.ProtoTCP, 16, ext(frag(1, false))))
}

func (b *builder) l4() {
	t := b.t
	u4 := func(s string) []byte { return trim(testutil.UDP4(t, s, dst4, 53, 16), false) }
	u6 := func(s string) []byte { return trim(testutil.UDP6(t, s, dst6, 53, 16), true) }
	syn := func(s string) []byte { return trim(testutil.TCP4(t, s, dst4, 80, testutil.FlagSYN), false) }

	s := b.src4()
	b.add(RuleTCP, "header cut by the IP length", Malformed, s, cutIPv4(syn(s), 19))
	s = b.src4()
	b.add(RuleTCP, "data offset 4", Malformed, s, patch(syn(s), func(f []byte) { f[l4v4+12] = 4 << 4 }))
	s = b.src4()
	b.add(RuleTCP, "data offset past the payload", Malformed, s, patch(syn(s), func(f []byte) { f[l4v4+12] = 6 << 4 }))
	s = b.src4()
	b.add(RuleTCP, "data offset 15, 40 bytes of options", Passed, s,
		patch(testutil.IP(t, s, dst4, testutil.ProtoTCP, 60), func(f []byte) { put16(f, l4v4+2, 80); f[l4v4+12] = 15 << 4 }))
	s = b.src4()
	b.add(RuleTCP, "option of length 0", Passed, s,
		patch(testutil.IP(t, s, dst4, testutil.ProtoTCP, 24), func(f []byte) {
			put16(f, l4v4+2, 80)
			f[l4v4+12], f[l4v4+20], f[l4v4+21] = 6<<4, 8, 0
		}))

	s = b.src4()
	b.add(RuleUDP, "header cut by the IP length", Malformed, s, cutIPv4(u4(s), 7))
	// The UDP length field of a 16-byte payload (24 is exact).
	for _, u := range []struct {
		name string
		v6   bool
		ulen uint16
		want Outcome
	}{
		{"IPv4 length 7", false, 7, Malformed},
		{"IPv4 length 0", false, 0, Malformed},
		{"IPv6 length 0: the rest of the payload", true, 0, Passed},
		{"IPv4 length past the payload", false, 25, Malformed},
		{"IPv6 length past the payload", true, 25, Malformed},
		{"IPv4 length short of the payload (trailing bytes)", false, 8, Passed},
		{"IPv6 length short of the payload (trailing bytes)", true, 10, Passed},
	} {
		s, f, at := b.src4(), u4, l4v4
		if u.v6 {
			s, f, at = b.src6(), u6, l4v6
		}
		b.add(RuleUDP, u.name, u.want, s, patch(f(s), func(f []byte) { put16(f, at+4, u.ulen) }))
	}

	s = b.src4()
	b.add(RuleICMP, "ICMP 7 bytes", Malformed, s, testutil.IP(t, s, dst4, testutil.ProtoICMPv4, 7))
	s = b.src6()
	b.add(RuleICMP, "ICMPv6 4 bytes", Malformed, s, testutil.IP(t, s, dst6, testutil.ProtoICMPv6, 4))
	// Errors quote as much of the offending packet as fits (RFC 792: its
	// header and 8 bytes; RFC 4443: up to the minimum MTU), so the quoted
	// packet's lengths claim more than is there.
	s = b.src4()
	b.add(RuleICMP, "ICMP unreachable quoting 28 bytes of a 1500-byte datagram", Passed, s,
		patch(testutil.IP(t, s, dst4, testutil.ProtoICMPv4, 8+28), func(f []byte) {
			f[l4v4], f[l4v4+1] = 3, 4 // fragmentation needed
			q := f[l4v4+8:]
			q[0], q[9] = 0x45, 17
			put16(q, 2, 1500)
		}))
	s = b.src4()
	b.add(RuleICMP, "ICMP time exceeded quoting 12 bytes of a header", Passed, s,
		patch(testutil.IP(t, s, dst4, testutil.ProtoICMPv4, 8+12), func(f []byte) {
			f[l4v4] = 11
			f[l4v4+8] = 0x45
		}))
	s = b.src6()
	b.add(RuleICMP, "ICMPv6 packet too big quoting 48 bytes of a 1400-byte packet", Passed, s,
		patch(testutil.IP(t, s, dst6, testutil.ProtoICMPv6, 8+48), func(f []byte) {
			f[l4v6] = 2
			binary.BigEndian.PutUint32(f[l4v6+4:], 1280)
			q := f[l4v6+8:]
			q[0], q[6] = 0x60, 17
			put16(q, 4, 1360)
		}))
}
