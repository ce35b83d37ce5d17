package model_test

import (
	"fmt"
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// hdr is what a test frame varies; gopacket builds the frame from it.
type hdr struct {
	v6      bool
	ttl     uint8
	df      bool
	ipid    uint16
	proto   string // tcp, udp, icmp
	sport   uint16
	dport   uint16
	flags   string // S, SA, A, R
	window  uint16
	opts    int // TCP options bytes: 0, 4 (MSS), 8, 12, 20 (Linux SYN)
	icmp    uint8
	payload []byte
}

func gopacketFrame(t testing.TB, h hdr) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}}
	var ls []gopacket.SerializableLayer
	var l3 gopacket.NetworkLayer
	proto := map[string]layers.IPProtocol{"tcp": layers.IPProtocolTCP, "udp": layers.IPProtocolUDP,
		"icmp": layers.IPProtocolICMPv4}[h.proto]
	if h.v6 {
		eth.EthernetType = layers.EthernetTypeIPv6
		if h.proto == "icmp" {
			proto = layers.IPProtocolICMPv6
		}
		ip := &layers.IPv6{Version: 6, HopLimit: h.ttl, NextHeader: proto,
			SrcIP: net.ParseIP("2001:2::10"), DstIP: net.ParseIP("2001:2::1")}
		l3 = ip
		ls = append(ls, eth, ip)
	} else {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: h.ttl, Id: h.ipid, Protocol: proto,
			SrcIP: net.IP{198, 18, 7, 10}, DstIP: net.IP{198, 18, 0, 1}}
		if h.df {
			ip.Flags = layers.IPv4DontFragment
		}
		l3 = ip
		ls = append(ls, eth, ip)
	}
	switch h.proto {
	case "tcp":
		tcp := &layers.TCP{SrcPort: layers.TCPPort(h.sport), DstPort: layers.TCPPort(h.dport), Window: h.window, Seq: 1}
		for _, c := range h.flags {
			switch c {
			case 'S':
				tcp.SYN = true
			case 'A':
				tcp.ACK = true
			case 'R':
				tcp.RST = true
			}
		}
		for n := 0; n < h.opts; n += 4 {
			tcp.Options = append(tcp.Options, layers.TCPOption{OptionType: layers.TCPOptionKindNop},
				layers.TCPOption{OptionType: layers.TCPOptionKindNop},
				layers.TCPOption{OptionType: layers.TCPOptionKindNop},
				layers.TCPOption{OptionType: layers.TCPOptionKindNop})
		}
		if err := tcp.SetNetworkLayerForChecksum(l3); err != nil {
			t.Fatal(err)
		}
		ls = append(ls, tcp)
	case "udp":
		udp := &layers.UDP{SrcPort: layers.UDPPort(h.sport), DstPort: layers.UDPPort(h.dport)}
		if err := udp.SetNetworkLayerForChecksum(l3); err != nil {
			t.Fatal(err)
		}
		ls = append(ls, udp)
	case "icmp":
		if h.v6 {
			ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(h.icmp, 0)}
			if err := ic.SetNetworkLayerForChecksum(l3); err != nil {
				t.Fatal(err)
			}
			ls = append(ls, ic, gopacket.Payload([]byte{0, 1, 0, 1}))
		} else {
			ls = append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(h.icmp, 0), Id: 1, Seq: 1})
		}
	}
	ls = append(ls, gopacket.Payload(h.payload))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// synFlood is a typical spoofed SYN: no options, TTL 250, window 1024.
var synFlood = hdr{ttl: 250, ipid: 7, proto: "tcp", sport: 40000, dport: 80, flags: "S", window: 1024}

// TestSignatureFields puts one signature into an otherwise empty table and
// runs frames built by gopacket at and across each field's bounds through
// the kernel and the model: both must agree, and drop exactly the frames
// the signature's definition says (docs/datapath.md, "Attack signatures").
func TestSignatureFields(t *testing.T) {
	testutil.RequireRoot(t)
	with := func(f func(*hdr)) hdr { h := synFlood; f(&h); return h }
	dns := hdr{ttl: 64, proto: "udp", sport: 5353, dport: 53, payload: []byte{0x12, 0x34, 0x01, 0x00, 0, 1}}
	cases := []struct {
		name string
		sig  maps.Signature
		drop []hdr
		pass []hdr
	}{{
		name: "ttl range",
		sig:  maps.Signature{Fields: maps.SigTTL, TTL: maps.Range{Lo: 200, Hi: 250}},
		drop: []hdr{with(func(h *hdr) { h.ttl = 200 }), synFlood, with(func(h *hdr) { h.v6 = true; h.ttl = 220 })},
		pass: []hdr{with(func(h *hdr) { h.ttl = 199 }), with(func(h *hdr) { h.ttl = 251 })},
	}, {
		name: "ip length",
		// IPv4 20 + TCP 20 + options; IPv6 40 + TCP 20.
		sig:  maps.Signature{Fields: maps.SigIPLen, IPLen: maps.Range{Lo: 44, Hi: 60}},
		drop: []hdr{with(func(h *hdr) { h.opts = 4 }), with(func(h *hdr) { h.opts = 20 }), with(func(h *hdr) { h.v6 = true })},
		pass: []hdr{synFlood, with(func(h *hdr) { h.opts = 24 }), with(func(h *hdr) { h.v6 = true; h.opts = 4 })},
	}, {
		name: "df and ip id zero, IPv4 only",
		sig:  maps.Signature{Fields: maps.SigDF | maps.SigIPID, DF: true, IPIDZero: true},
		drop: []hdr{with(func(h *hdr) { h.df = true; h.ipid = 0 })},
		pass: []hdr{synFlood, with(func(h *hdr) { h.df = true }), with(func(h *hdr) { h.ipid = 0 }),
			with(func(h *hdr) { h.v6 = true; h.ipid = 0 })},
	}, {
		name: "ip id nonzero",
		sig:  maps.Signature{Fields: maps.SigIPID, IPIDZero: false},
		drop: []hdr{synFlood},
		pass: []hdr{with(func(h *hdr) { h.ipid = 0 })},
	}, {
		name: "syn without ack, dst port, window, no options",
		sig: maps.Signature{Fields: maps.SigProto | maps.SigTCPFlags | maps.SigDPort | maps.SigWindow | maps.SigTCPOptLen,
			Proto: 6, TCPMask: 0x12, TCPValue: 0x02, DPort: maps.Range{Lo: 80, Hi: 80},
			Window: maps.Range{Lo: 512, Hi: 1024}},
		drop: []hdr{synFlood, with(func(h *hdr) { h.window = 512; h.v6 = true })},
		pass: []hdr{with(func(h *hdr) { h.flags = "SA" }), with(func(h *hdr) { h.dport = 81 }),
			with(func(h *hdr) { h.window = 1025 }), with(func(h *hdr) { h.opts = 4 }), with(func(h *hdr) { h.proto = "udp" })},
	}, {
		name: "src port range",
		sig:  maps.Signature{Fields: maps.SigSPort, SPort: maps.Range{Lo: 1024, Hi: 40000}},
		drop: []hdr{synFlood, with(func(h *hdr) { h.proto = "udp"; h.sport = 1024 })},
		pass: []hdr{with(func(h *hdr) { h.sport = 40001 }), with(func(h *hdr) { h.sport = 1023 }),
			{ttl: 64, proto: "icmp", icmp: 8}},
	}, {
		name: "udp payload prefix under a mask",
		// DNS header: any id, flags QR=0 and opcode 0 (query), RD set.
		sig: maps.Signature{Fields: maps.SigProto | maps.SigDataPrefix, Proto: 17,
			Data: []byte{0, 0, 0x01}, DataMask: []byte{0, 0, 0xf9}},
		drop: []hdr{dns, func() hdr { h := dns; h.payload = []byte{0xff, 0xff, 0x01}; return h }()},
		pass: []hdr{func() hdr { h := dns; h.payload = []byte{0x12, 0x34, 0x81, 0x80}; return h }(),
			func() hdr { h := dns; h.payload = []byte{0x12, 0x34}; return h }(), // too short
			with(func(h *hdr) { h.payload = []byte{0, 0, 0x01} })},              // TCP: bytes after the header
	}, {
		name: "tcp options layout as data prefix",
		// Four NOPs (gopacket here) at the start of the options.
		sig:  maps.Signature{Fields: maps.SigDataPrefix, Data: []byte{1, 1, 1, 1}, DataMask: []byte{0xff, 0xff, 0xff, 0xff}},
		drop: []hdr{with(func(h *hdr) { h.opts = 4 })},
		pass: []hdr{synFlood, with(func(h *hdr) { h.payload = []byte{1, 1, 1} })},
	}, {
		name: "icmp type, both families",
		sig:  maps.Signature{Fields: maps.SigICMPType, ICMPType: 128},
		drop: []hdr{{v6: true, ttl: 64, proto: "icmp", icmp: 128}, {ttl: 64, proto: "icmp", icmp: 128}},
		pass: []hdr{{v6: true, ttl: 64, proto: "icmp", icmp: 129}, {ttl: 64, proto: "icmp", icmp: 8}, synFlood},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.sig.Action = maps.SigDrop
			h := newHarness(t, setup{name: c.name, sigs: map[int]maps.Signature{5: c.sig}})
			for want, hs := range map[bool][]hdr{true: c.drop, false: c.pass} {
				for i, x := range hs {
					f := gopacketFrame(t, x)
					before := h.decisions[maps.ActionDrop][maps.ReasonSignature]
					if diff, _ := h.step(f, baseNS); diff != "" {
						(&divergences{t: t, limit: 1}).add(fmt.Sprintf("frame %d %+v", i, x), diff, f)
						continue
					}
					if got := h.decisions[maps.ActionDrop][maps.ReasonSignature] > before; got != want {
						t.Errorf("%+v: dropped by the signature %v, want %v", x, got, want)
					}
				}
			}
			h.checkCounters()
		})
	}
}

// TestSignatureLimitAndOrder checks the aggregate bucket of a limiting
// signature by arithmetic, that a shadow signature only counts, that the
// allow list wins and that monitor mode turns drops into would_drop.
func TestSignatureLimitAndOrder(t *testing.T) {
	testutil.RequireRoot(t)
	syn := gopacketFrame(t, synFlood)
	sigs := map[int]maps.Signature{
		0: {Fields: maps.SigTTL, TTL: maps.Range{Lo: 250, Hi: 250}}, // shadow
		1: {Fields: maps.SigTCPFlags, TCPMask: 0x12, TCPValue: 0x02, Action: maps.SigLimit, PPS: 10, Burst: 5},
	}
	for _, mode := range []maps.Mode{maps.ModeEnforce, maps.ModeMonitor} {
		t.Run(fmt.Sprint(mode), func(t *testing.T) {
			h := newHarness(t, setup{name: "limit", policy: maps.Policy{Mode: mode}, sigs: sigs,
				allow: []maps.Entry{{Prefix: pfx("198.18.9.0/24"), ListID: 1}}})
			dropped := 0
			// 20 SYNs at one instant: the bucket holds 5; then 1 s later
			// 10 more tokens (10 pps), capped at the burst of 5.
			for i := 0; i < 20; i++ {
				if diff, _ := h.step(syn, baseNS); diff != "" {
					t.Fatalf("frame %d: %s", i, diff)
				}
			}
			for i := 0; i < 20; i++ {
				if diff, _ := h.step(syn, baseNS+1_000_000_000); diff != "" {
					t.Fatalf("frame %d: %s", i, diff)
				}
			}
			c, err := h.d.Maps.SignatureCounter(1)
			if err != nil {
				t.Fatal(err)
			}
			dropped = int(c.Dropped)
			if c.Matched != 40 || dropped != 30 {
				t.Errorf("limiting signature matched %d, dropped %d; want 40 and 15+15", c.Matched, dropped)
			}
			if s0, _ := h.d.Maps.SignatureCounter(0); s0.Matched != 40 || s0.Dropped != 0 {
				t.Errorf("shadow signature matched %d, dropped %d; want 40, 0", s0.Matched, s0.Dropped)
			}
			wantAction := maps.ActionDrop
			if mode == maps.ModeMonitor {
				wantAction = maps.ActionWouldDrop
			}
			if n := h.decisions[wantAction][maps.ReasonSignature]; n != 30 {
				t.Errorf("%d frames %v/signature, want 30", n, wantAction)
			}
			// An allow-listed source is never matched.
			allowed := synFlood
			g := gopacketFrame(t, allowed)
			copy(g[14+12:14+16], []byte{198, 18, 9, 1})
			if diff, _ := h.step(g, baseNS+1_000_000_000); diff != "" {
				t.Fatal(diff)
			}
			if n := h.decisions[maps.ActionPass][maps.ReasonAllowlist]; n != 1 {
				t.Errorf("allow-listed SYN: %d allowlist passes, want 1", n)
			}
			h.checkCounters()
		})
	}
}
