package testutil

// Packet builders for the datapath tests: Ethernet frames made with
// gopacket (lengths and checksums computed), optionally behind VLAN tags,
// with IPv4 options or fragment fields, or IPv6 extension headers.
//
// Addresses must come from the benchmarking ranges 198.18.0.0/15 and
// 2001:2::/48 (RFC 2544, RFC 5180); a builder fails the test otherwise, so
// no test frame can name a real host.

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// TCP flag bits, as in the TCP header's flags byte.
const (
	FlagFIN uint8 = 0x01
	FlagSYN uint8 = 0x02
	FlagRST uint8 = 0x04
	FlagPSH uint8 = 0x08
	FlagACK uint8 = 0x10
)

// EtherType values and TPIDs the tests use.
const (
	TPID8021Q  uint16 = 0x8100 // VLAN tag (IEEE 802.1Q)
	TPID8021AD uint16 = 0x88a8 // service VLAN tag (IEEE 802.1ad, QinQ)
	EtherARP   uint16 = 0x0806
	EtherLLDP  uint16 = 0x88cc
	EtherMPLS  uint16 = 0x8847
)

// IPv6 extension header and other protocol numbers the tests use.
const (
	ProtoHopByHop uint8 = 0
	ProtoGRE      uint8 = 47
	ProtoESP      uint8 = 50
	ProtoAH       uint8 = 51
	ProtoRouting  uint8 = 43
	ProtoFragment uint8 = 44
	ProtoNoNext   uint8 = 59
	ProtoDstOpts  uint8 = 60
	ProtoICMPv4   uint8 = 1
	ProtoTCP      uint8 = 6
	ProtoUDP      uint8 = 17
	ProtoICMPv6   uint8 = 58
	SourcePort          = 40000 // the source port of every TCP and UDP builder
)

var (
	testNet4 = netip.MustParsePrefix("198.18.0.0/15")
	testNet6 = netip.MustParsePrefix("2001:2::/48")
	srcMAC   = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	dstMAC   = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
)

// Ext is one IPv6 extension header. Use the constructors (HopByHop,
// Routing, DstOpts, Fragment, AH); the next-header field is filled in when
// the chain is built.
type Ext struct {
	Proto      uint8  // ProtoHopByHop, ProtoRouting, ProtoDstOpts, ProtoFragment or ProtoAH
	Len        uint8  // the header's length field, in the header's own unit
	FragOffset uint16 // fragment header: offset in 8-byte units
	More       bool   // fragment header: the M (more fragments) flag
}

// Size is the header's length in bytes: (Len+1)*8, 8 for a fragment
// header, (Len+2)*4 for AH (RFC 4302 counts AH in 4-byte units).
func (e Ext) Size() int {
	switch e.Proto {
	case ProtoFragment:
		return 8
	case ProtoAH:
		return (int(e.Len) + 2) * 4
	}
	return (int(e.Len) + 1) * 8
}

// HopByHop is a hop-by-hop options header of 8 bytes (PadN only).
func HopByHop() Ext { return Ext{Proto: ProtoHopByHop} }

// Routing is an 8-byte routing header (type 0 layout, no addresses).
func Routing() Ext { return Ext{Proto: ProtoRouting} }

// DstOpts is a destination options header of (words+1)*8 bytes.
func DstOpts(words uint8) Ext { return Ext{Proto: ProtoDstOpts, Len: words} }

// Fragment is a fragment header; offset is in 8-byte units (0 = first).
func Fragment(offset uint16, more bool) Ext {
	return Ext{Proto: ProtoFragment, FragOffset: offset, More: more}
}

// AH is an authentication header with payload length field plen, so
// (plen+2)*4 bytes long; plen 4 gives the usual 24-byte IPv6 AH.
func AH(plen uint8) Ext { return Ext{Proto: ProtoAH, Len: plen} }

// Option changes how a builder makes its frame.
type Option func(*spec)

type spec struct {
	vlans    []uint16
	optWords int
	fragOff  uint16
	fragMore bool
	exts     []Ext
}

// VLAN puts tags with these TPIDs (TPID8021Q, TPID8021AD) between the
// Ethernet header and the payload, outermost first; VLAN ids are 100, 101...
func VLAN(tpids ...uint16) Option {
	return func(s *spec) { s.vlans = append(s.vlans, tpids...) }
}

// IPv4Options adds words*4 bytes of NOP options to the IPv4 header, so its
// IHL is 5+words (words 0-10).
func IPv4Options(words int) Option { return func(s *spec) { s.optWords = words } }

// Fragment4 sets the IPv4 fragment offset (8-byte units) and the MF flag.
// The builder still writes its L4 header: in a non-first fragment those
// bytes are payload, which lets a test show the datapath does not read them.
func Fragment4(offset uint16, more bool) Option {
	return func(s *spec) { s.fragOff, s.fragMore = offset, more }
}

// IPv6Ext puts these extension headers, in order, between the IPv6 header
// and the upper layer.
func IPv6Ext(exts ...Ext) Option { return func(s *spec) { s.exts = append(s.exts, exts...) } }

// UDP4 is an Ethernet/IPv4/UDP frame from src to dst port dport with
// payload bytes of zeros.
func UDP4(t testing.TB, src, dst string, dport uint16, payload int, opts ...Option) []byte {
	t.Helper()
	return build(t, src, dst, ProtoUDP, opts, udp(dport), payloadOf(payload))
}

// UDP6 is UDP4 over IPv6.
func UDP6(t testing.TB, src, dst string, dport uint16, payload int, opts ...Option) []byte {
	t.Helper()
	return build(t, src, dst, ProtoUDP, opts, udp(dport), payloadOf(payload))
}

// TCP4 is an Ethernet/IPv4/TCP segment (20-byte header, no payload) to
// dport with these flags (FlagSYN|FlagACK...).
func TCP4(t testing.TB, src, dst string, dport uint16, flags uint8, opts ...Option) []byte {
	t.Helper()
	return build(t, src, dst, ProtoTCP, opts, tcp(dport, flags))
}

// TCP6 is TCP4 over IPv6.
func TCP6(t testing.TB, src, dst string, dport uint16, flags uint8, opts ...Option) []byte {
	t.Helper()
	return build(t, src, dst, ProtoTCP, opts, tcp(dport, flags))
}

// ICMP4 is an Ethernet/IPv4 ICMP echo request (8-byte header, 8 bytes of
// data).
func ICMP4(t testing.TB, src, dst string, opts ...Option) []byte {
	t.Helper()
	return build(t, src, dst, ProtoICMPv4, opts,
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 1, Seq: 1},
		payloadOf(8))
}

// ICMP6 is an Ethernet/IPv6 ICMPv6 echo request (8-byte header, 8 bytes of
// data).
func ICMP6(t testing.TB, src, dst string, opts ...Option) []byte {
	t.Helper()
	return build(t, src, dst, ProtoICMPv6, opts,
		&layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)},
		&layers.ICMPv6Echo{Identifier: 1, SeqNumber: 1},
		payloadOf(8))
}

// IP is an IPv4 or IPv6 packet (by the family of src) of protocol proto
// carrying payload bytes of zeros and no L4 header: GRE, ESP, no next
// header, or a truncated upper layer.
func IP(t testing.TB, src, dst string, proto uint8, payload int, opts ...Option) []byte {
	t.Helper()
	return build(t, src, dst, proto, opts, payloadOf(payload))
}

// Ether is a frame of a non-IP EtherType (EtherARP, EtherLLDP, EtherMPLS)
// with payload bytes of zeros; VLAN is the only option that applies.
func Ether(t testing.TB, ethertype uint16, payload int, opts ...Option) []byte {
	t.Helper()
	var s spec
	for _, o := range opts {
		o(&s)
	}
	ls := link(&s, ethertype)
	ls = append(ls, payloadOf(payload))
	return serialize(t, ls)
}

func payloadOf(n int) gopacket.Payload { return gopacket.Payload(make([]byte, n)) }

func udp(dport uint16) *layers.UDP {
	return &layers.UDP{SrcPort: SourcePort, DstPort: layers.UDPPort(dport)}
}

func tcp(dport uint16, flags uint8) *layers.TCP {
	return &layers.TCP{
		SrcPort: SourcePort, DstPort: layers.TCPPort(dport), Seq: 1, Window: 65535,
		FIN: flags&FlagFIN != 0, SYN: flags&FlagSYN != 0, RST: flags&FlagRST != 0,
		PSH: flags&FlagPSH != 0, ACK: flags&FlagACK != 0,
	}
}

// link is the Ethernet header and the VLAN tags, ending in ethertype.
func link(s *spec, ethertype uint16) []gopacket.SerializableLayer {
	types := append(append([]uint16(nil), s.vlans...), ethertype)
	ls := []gopacket.SerializableLayer{&layers.Ethernet{
		SrcMAC: srcMAC, DstMAC: dstMAC, EthernetType: layers.EthernetType(types[0]),
	}}
	for i := range s.vlans {
		ls = append(ls, &layers.Dot1Q{VLANIdentifier: uint16(100 + i), Type: layers.EthernetType(types[i+1])})
	}
	return ls
}

func parseAddr(t testing.TB, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatalf("test packet address %q: %v", s, err)
	}
	if !testNet4.Contains(a) && !testNet6.Contains(a) {
		t.Fatalf("test packet address %s is outside 198.18.0.0/15 and 2001:2::/48", a)
	}
	return a
}

func build(t testing.TB, src, dst string, proto uint8, opts []Option, upper ...gopacket.SerializableLayer) []byte {
	t.Helper()
	var s spec
	for _, o := range opts {
		o(&s)
	}
	sa, da := parseAddr(t, src), parseAddr(t, dst)
	if sa.Is4() != da.Is4() {
		t.Fatalf("test packet %s -> %s mixes address families", sa, da)
	}
	var ls []gopacket.SerializableLayer
	var nl gopacket.NetworkLayer
	if sa.Is4() {
		if len(s.exts) > 0 {
			t.Fatalf("IPv6 extension headers on an IPv4 packet")
		}
		ip := &layers.IPv4{
			Version: 4, TTL: 64, Id: 1, Protocol: layers.IPProtocol(proto),
			SrcIP: sa.AsSlice(), DstIP: da.AsSlice(), FragOffset: s.fragOff,
		}
		if s.fragMore {
			ip.Flags = layers.IPv4MoreFragments
		}
		for i := 0; i < s.optWords*4; i++ {
			ip.Options = append(ip.Options, layers.IPv4Option{OptionType: 1, OptionLength: 1})
		}
		ls, nl = append(link(&s, 0x0800), ip), ip
	} else {
		if s.optWords > 0 || s.fragOff > 0 || s.fragMore {
			t.Fatalf("IPv4 options or fragment fields on an IPv6 packet")
		}
		ip := &layers.IPv6{
			Version: 6, HopLimit: 64, NextHeader: layers.IPProtocol(proto),
			SrcIP: sa.AsSlice(), DstIP: da.AsSlice(),
		}
		ls, nl = append(link(&s, 0x86dd), ip), ip
		if len(s.exts) > 0 {
			ip.NextHeader = layers.IPProtocol(s.exts[0].Proto)
			ls = append(ls, extChain(s.exts, proto))
		}
	}
	for _, l := range upper {
		switch l := l.(type) {
		case *layers.UDP:
			l.SetNetworkLayerForChecksum(nl)
		case *layers.TCP:
			l.SetNetworkLayerForChecksum(nl)
		case *layers.ICMPv6:
			l.SetNetworkLayerForChecksum(nl)
		}
	}
	return serialize(t, append(ls, upper...))
}

// extChain is the raw bytes of the extension headers, each pointing at the
// next and the last at proto.
func extChain(exts []Ext, proto uint8) gopacket.Payload {
	var b []byte
	for i, e := range exts {
		next := proto
		if i+1 < len(exts) {
			next = exts[i+1].Proto
		}
		h := make([]byte, e.Size())
		h[0] = next
		switch e.Proto {
		case ProtoFragment:
			fo := e.FragOffset << 3
			if e.More {
				fo |= 1
			}
			binary.BigEndian.PutUint16(h[2:4], fo)
			binary.BigEndian.PutUint32(h[4:8], 0x1234)
		case ProtoAH:
			h[1] = e.Len
			binary.BigEndian.PutUint32(h[4:8], 0x100) // SPI
		default:
			h[1] = e.Len
			if e.Proto != ProtoRouting && len(h) > 2 {
				h[2], h[3] = 1, byte(len(h)-4) // one PadN option filling the header
			}
		}
		b = append(b, h...)
	}
	return gopacket.Payload(b)
}

func serialize(t testing.TB, ls []gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatalf("build test packet: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}
