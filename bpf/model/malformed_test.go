package model_test

import (
	"fmt"
	"net/netip"
	"sort"
	"testing"

	"github.com/bulwark-filter/bulwark/loader"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/testutil"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// benign are captures of ordinary traffic: not one of their frames may be
// malformed. They must not appear in expectMalformed.
var benign = []string{
	"zeek_wikipedia.pcap", "zeek_bro.org.pcap", "zeek_sshguess.pcap", "tcpd_dnssec.pcap",
	"zeek_ipv6-fragmented-dns.pcap", "zeek_ipv6-http-atomic-frag.pcap", "tcpd_802.1ad_QinQ.pcap",
	"zeek_q-in-q.pcap", "zeek_mixed-vlan-mpls.pcap", "zeek_fragmented-syn.pcap", "sv_ipv4frags.pcap",
	"tcpd_ntp-mode7.pcap", "tcpd_ipv6_jumbogram_1.pcap", "tcpd_ipv6-routing-header.pcap",
}

// expectMalformed lists, by capture and packet number (from 1, as tcpdump
// counts), every frame of the captures the datapath calls malformed, and
// why (docs/datapath.md's "Malformed rules" names each rule). A capture not
// listed must have none.
var expectMalformed = map[string]map[int]string{
	"sv_decode-too-small_test.pcap": {
		1: "IPv4 TCP with no TCP header", 2: "IPv4 UDP with no UDP header", 3: "IPv4 UDP header cut to 4 bytes",
		5: "IPv6 TCP with no TCP header", 6: "IPv6 UDP with no UDP header", 7: "IPv6 UDP header cut to 4 bytes",
	},
	"sv_frag-eth-vlan-ip-tcp-syn.pcap": {
		1: "tiny TCP first fragment: 8 bytes of TCP (deliberate, RFC 1858)",
		2: "TCP fragment at offset 8 bytes (deliberate, RFC 1858)",
	},
	"sv_ipv4-truncated_truncated.pcap":  {1: "IPv4 total length past the frame"},
	"sv_udp-len-invalid_input.pcap":     {1: "UDP length under 8"},
	"tcpd_ip_printroute_asan.pcap":      {1: "IPv4 total length past the frame"},
	"tcpd_ipv4_invalid_hdr_length.pcap": {1: "IPv4 IHL under 5"},
	"tcpd_ipv6-bad-version.pcap":        {2: "version nibble 0 behind EtherType IPv6", 4: "version nibble 0 behind EtherType IPv6"},
	"zeek_ip6-ext-trunc.pcap":           {1: "IPv6 payload length past the frame"},
	"zeek_trunc-hdr.pcap":               {1: "8 bytes: shorter than an Ethernet header (never reaches XDP)"},
	// GRO made these of several 1500-byte frames on the capturing host; the
	// program (not frags-aware) sees only its first maxLinear bytes, so the
	// IPv6 payload length reaches past them. On the wire they were ordinary.
	"sv_community-id-ipv6_input.pcap": {
		6: "GRO super-frame cut to 3520 bytes", 40: "GRO super-frame cut to 3520 bytes",
		57: "GRO super-frame cut to 3520 bytes", 59: "GRO super-frame cut to 3520 bytes",
		61: "GRO super-frame cut to 3520 bytes",
	},
}

// runFrame runs a frame through the program as the harness does: cut to
// what a program that is not frags-aware sees; a frame shorter than an
// Ethernet header, which no NIC delivers and the kernel refuses to
// test-run, counts as malformed.
func runFrame(t *testing.T, d *loader.Datapath, f []byte) maps.Decision {
	t.Helper()
	if len(f) > maxLinear {
		f = f[:maxLinear]
	}
	if len(f) < minFrame {
		if _, _, err := d.RunAt(f, baseNS); err == nil {
			t.Fatalf("the kernel ran a %d-byte frame", len(f))
		}
		return maps.Decision{Action: maps.ActionDrop, Reason: maps.ReasonMalformed}
	}
	dec, _, err := d.RunAt(f, baseNS)
	if err != nil {
		t.Fatalf("run %d-byte frame: %v", len(f), err)
	}
	return dec
}

// TestCapturesMalformed runs every frame of every capture through the real
// program: a benign capture has no malformed frame, and the others exactly
// the ones expectMalformed lists.
func TestCapturesMalformed(t *testing.T) {
	testutil.RequireRoot(t)
	cs := loadCaptures(t)
	d := testutil.Load(t, testutil.Setup{Sizes: sizes(), ReplayClock: true})
	seen := map[string]bool{}
	total := 0
	for _, c := range cs {
		seen[c.name] = true
		want := expectMalformed[c.name]
		got := 0
		for i, f := range c.frames {
			dec := runFrame(t, d, f)
			total++
			why, listed := want[i+1]
			if isMalformed := dec.Reason == maps.ReasonMalformed; isMalformed != listed {
				t.Errorf("%s packet %d: %s/%s; listed as malformed: %v (%s)", c.name, i+1, dec.Action, dec.Reason, listed, why)
			}
			if dec.Reason == maps.ReasonMalformed {
				got++
			}
		}
		if got != len(want) {
			t.Errorf("%s: %d malformed frames, want %d", c.name, got, len(want))
		}
	}
	for _, b := range benign {
		if !seen[b] {
			t.Errorf("benign capture %s is missing", b)
		}
		if _, ok := expectMalformed[b]; ok {
			t.Errorf("benign capture %s has expected malformed frames", b)
		}
	}
	for n := range expectMalformed {
		if !seen[n] {
			t.Errorf("expectMalformed names %s, which is not a capture", n)
		}
	}
	t.Logf("%d frames of %d captures", total, len(cs))
}

// gpView is what gopacket makes of a frame: each header decoded by
// gopacket's own decoder for it, nothing of Bulwark's.
type gpView struct {
	malformed bool
	why       string
	ip        bool
	src       netip.Addr
	l4        layers.IPProtocol // TCP or UDP when its header is in the frame, else 0
	dport     uint16
}

// feedback records a decoder's report of truncation.
type feedback struct{ truncated bool }

func (f *feedback) SetTruncated() { f.truncated = true }

// decodeOne decodes one header of type lt at the start of data with
// gopacket's registered decoder and returns it, or the decoder's error.
func decodeOne(data []byte, lt gopacket.LayerType) (gopacket.Layer, error) {
	p := gopacket.NewPacket(data, lt, gopacket.DecodeOptions{NoCopy: true, Lazy: true})
	l := p.Layers()
	if len(l) == 0 {
		return nil, fmt.Errorf("no %s layer", lt)
	}
	if f, ok := l[0].(*gopacket.DecodeFailure); ok {
		return nil, f.Error()
	}
	return l[0], nil
}

func gopacketView(frame []byte) (v gpView) {
	bad := func(format string, a ...any) gpView {
		v.malformed, v.why = true, fmt.Sprintf(format, a...)
		return v
	}
	// Link layer: Ethernet, VLAN tags, MPLS labels.
	next, data := layers.LayerTypeEthernet, frame
	for next == layers.LayerTypeEthernet || next == layers.LayerTypeDot1Q || next == layers.LayerTypeMPLS {
		if next == layers.LayerTypeMPLS { // the label stack, and gopacket's guess of what it carries
			ls := gopacket.NewPacket(data, next, gopacket.NoCopy).Layers()
			i := 0
			for i < len(ls) && ls[i].LayerType() == layers.LayerTypeMPLS {
				i++
			}
			if i == 0 || i == len(ls) || ls[i].LayerType() == gopacket.LayerTypeDecodeFailure {
				return bad("MPLS: nothing decodable behind the labels")
			}
			next, data = ls[i].LayerType(), ls[i-1].LayerPayload()
			continue
		}
		l, err := decodeOne(data, next)
		if err != nil {
			return bad("%s: %v", next, err)
		}
		next, data = l.(gopacket.DecodingLayer).NextLayerType(), l.LayerPayload()
	}
	var fb feedback
	var proto layers.IPProtocol
	first := false // a first fragment: the transport's own length may run past it
	switch next {
	case layers.LayerTypeIPv4:
		ip := &layers.IPv4{}
		if err := ip.DecodeFromBytes(data, &fb); err != nil || fb.truncated {
			return bad("IPv4: %v (truncated %v)", err, fb.truncated)
		}
		v.ip, v.src = true, netip.AddrFrom4([4]byte(ip.SrcIP.To4()))
		if ip.FragOffset != 0 {
			return v
		}
		first = ip.Flags&layers.IPv4MoreFragments != 0
		proto, data = ip.Protocol, ip.Payload
	case layers.LayerTypeIPv6:
		ip := &layers.IPv6{}
		if err := ip.DecodeFromBytes(data, &fb); err != nil || fb.truncated {
			return bad("IPv6: %v (truncated %v)", err, fb.truncated)
		}
		v.ip, v.src = true, netip.AddrFrom16([16]byte(ip.SrcIP.To16()))
		proto, data = ip.NextHeader, ip.Payload
		if ip.HopByHop != nil {
			proto = ip.HopByHop.NextHeader
		}
		for proto == layers.IPProtocolIPv6Routing || proto == layers.IPProtocolIPv6Destination ||
			proto == layers.IPProtocolIPv6HopByHop || proto == layers.IPProtocolIPv6Fragment || proto == layers.IPProtocolAH {
			l, err := decodeOne(data, proto.LayerType())
			if err != nil {
				return bad("%s: %v", proto, err)
			}
			switch e := l.(type) {
			case *layers.IPv6Routing:
				proto = e.NextHeader
			case *layers.IPv6Destination:
				proto = e.NextHeader
			case *layers.IPv6HopByHop:
				proto = e.NextHeader
			case *layers.IPSecAH:
				proto = e.NextHeader
			case *layers.IPv6Fragment:
				if e.FragmentOffset != 0 {
					return v
				}
				first, proto = e.MoreFragments, e.NextHeader
			}
			data = l.LayerPayload()
		}
	default:
		return v
	}
	fb = feedback{}
	var err error
	switch proto {
	case layers.IPProtocolTCP:
		tcp := &layers.TCP{}
		err = tcp.DecodeFromBytes(data, &fb)
		v.l4, v.dport = proto, uint16(tcp.DstPort)
	case layers.IPProtocolUDP:
		udp := &layers.UDP{}
		err = udp.DecodeFromBytes(data, &fb)
		v.l4, v.dport = proto, uint16(udp.DstPort)
	case layers.IPProtocolICMPv4:
		err = (&layers.ICMPv4{}).DecodeFromBytes(data, &fb)
	case layers.IPProtocolICMPv6:
		err = (&layers.ICMPv6{}).DecodeFromBytes(data, &fb)
	}
	if err != nil || fb.truncated && !first {
		return bad("%s: %v (truncated %v)", proto, err, fb.truncated)
	}
	return v
}

// gopacketDiffers lists every frame where gopacket and Bulwark disagree,
// by the kind of difference; docs/datapath.md ("Where gopacket disagrees")
// explains each kind and who is right.
var gopacketDiffers = map[string]map[int]string{
	"sv_frag-eth-vlan-ip-tcp-syn.pcap": {2: "TCP at offset 8"},
	"tcpd_ipv6-bad-version.pcap":       {2: "version nibble", 4: "version nibble"},
	"sv_community-id-ipv6_input.pcap": {6: "GRO super-frame", 40: "GRO super-frame", 57: "GRO super-frame",
		59: "GRO super-frame", 61: "GRO super-frame"},
	"sv_ip_secopt.pcap": {3: "IPv4 option length 2"},
	"sv_tcp-session-decode-malformed-ipv4_input.pcap": {8: "IPv4 option length 2"},
	"zeek_fragmented-syn.pcap":                        {1: "first fragment's TCP options"},
	"sv_denial6-5.pcap":                               {4: "hop-by-hop length", 7: "hop-by-hop length"},
	"sv_frag-15.pcap":                                 {4: "hop-by-hop length", 5: "hop-by-hop length"},
	"sv_toobig.pcap":                                  {4: "hop-by-hop length", 5: "hop-by-hop length"},
	"zeek_ipv6-http-atomic-frag.pcap": {23: "hop-by-hop length", 25: "hop-by-hop length", 26: "hop-by-hop length",
		30: "hop-by-hop length", 31: "hop-by-hop length"},
	"zeek_mixed-vlan-mpls.pcap": {1: "MPLS", 2: "MPLS", 3: "MPLS", 4: "MPLS", 5: "MPLS", 6: "MPLS", 7: "MPLS",
		8: "MPLS", 9: "MPLS", 10: "MPLS", 11: "MPLS"},
}

// TestGopacketSecondOpinion decodes every frame of every capture with
// gopacket's layers and checks the real program against it: malformed or
// not, IP or not, the source the packet is charged to, and for TCP and UDP
// (outside fragments, where gopacket stops at IP) the protocol and
// destination port the program read. To see that port, each (protocol,
// port) pair gopacket finds gets a rule of its own with a bucket of depth
// zero, so the program drops the packet over that rule and names it.
func TestGopacketSecondOpinion(t *testing.T) {
	testutil.RequireRoot(t)
	cs := loadCaptures(t)
	type frame struct {
		capture string
		n       int // packet number from 1
		data    []byte
		v       gpView
	}
	type pair struct {
		proto layers.IPProtocol
		port  uint16
	}
	var frames []frame
	pairs := map[pair]bool{}
	for _, c := range cs {
		for i, f := range c.frames {
			v := gopacketView(f)
			frames = append(frames, frame{c.name, i + 1, f, v})
			if !v.malformed && v.l4 != 0 {
				pairs[pair{v.l4, v.dport}] = true
			}
		}
	}
	ordered := make([]pair, 0, len(pairs))
	for p := range pairs {
		ordered = append(ordered, p)
	}
	sort.Slice(ordered, func(i, j int) bool {
		return ordered[i].proto < ordered[j].proto || ordered[i].proto == ordered[j].proto && ordered[i].port < ordered[j].port
	})
	const perBatch = 250 // rules of one policy (253 at most)
	batchOf, ruleOf := map[pair]int{}, map[pair]int{}
	for i, p := range ordered {
		batchOf[p], ruleOf[p] = i/perBatch, i%perBatch+1
	}
	differs := map[string]map[int]bool{}
	for b := 0; b*perBatch < max(len(ordered), 1); b++ {
		var pol maps.Policy
		for _, p := range ordered[b*perBatch : min(len(ordered), (b+1)*perBatch)] {
			proto := maps.ProtoTCP
			if p.proto == layers.IPProtocolUDP {
				proto = maps.ProtoUDP
			}
			pol.Rules = append(pol.Rules, maps.Rule{Name: fmt.Sprintf("%s-%d", proto, p.port), Protocol: proto,
				Ports: []maps.PortRange{{Lo: p.port, Hi: p.port}}, Limit: maps.Limit{PPS: 1}})
		}
		d := testutil.Load(t, testutil.Setup{Sizes: sizes(), ReplayClock: true, Policy: pol})
		for _, fr := range frames {
			p := pair{fr.v.l4, fr.v.dport}
			if fr.v.l4 != 0 && !fr.v.malformed && batchOf[p] != b || fr.v.l4 == 0 && b != 0 {
				continue // each frame runs once: in its pair's batch, or the first
			}
			where := fmt.Sprintf("%s packet %d", fr.capture, fr.n)
			var before uint64
			if fr.v.ip {
				before = sourceCount(t, d, fr.v.src)
			}
			dec := runFrame(t, d, fr.data)
			differ := func(format string, a ...any) {
				if differs[fr.capture] == nil {
					differs[fr.capture] = map[int]bool{}
				}
				differs[fr.capture][fr.n] = true
				if gopacketDiffers[fr.capture][fr.n] == "" {
					t.Errorf("%s: %s; not a known difference", where, fmt.Sprintf(format, a...))
				}
			}
			kMalformed := dec.Reason == maps.ReasonMalformed
			if kMalformed != fr.v.malformed {
				differ("Bulwark %s/%s, gopacket malformed: %v (%s)", dec.Action, dec.Reason, fr.v.malformed, fr.v.why)
				continue
			}
			if kMalformed {
				continue
			}
			if (dec.Reason == maps.ReasonNonIP) == fr.v.ip {
				differ("Bulwark %s, gopacket decodes IP: %v", dec.Reason, fr.v.ip)
				continue
			}
			if !fr.v.ip {
				continue
			}
			if after := sourceCount(t, d, fr.v.src); after != before+1 {
				t.Errorf("%s: gopacket's source %s went from %d to %d packets; want one more", where, fr.v.src, before, after)
			}
			switch {
			case fr.v.l4 != 0:
				if dec.Reason != maps.ReasonRatelimit || dec.Detail != uint32(ruleOf[p]) {
					t.Errorf("%s: gopacket reads %s port %d (rule %d); Bulwark %s/%s rule %d", where, fr.v.l4, fr.v.dport,
						ruleOf[p], dec.Action, dec.Reason, dec.Detail)
				}
			case dec.Reason != maps.ReasonPassed:
				t.Errorf("%s: gopacket reads no TCP or UDP port; Bulwark %s/%s rule %d", where, dec.Action, dec.Reason, dec.Detail)
			}
		}
	}
	for c, ns := range gopacketDiffers {
		for n, kind := range ns {
			if !differs[c][n] {
				t.Errorf("%s packet %d is listed as a difference (%s), but gopacket and Bulwark agree", c, n, kind)
			}
		}
	}
	t.Logf("%d frames, %d TCP/UDP (protocol, port) pairs in %d policies", len(frames), len(ordered), (len(ordered)+perBatch-1)/perBatch)
}

// sourceCount is the packets the program charged to addr's source, passed
// or malformed.
func sourceCount(t *testing.T, d *loader.Datapath, addr netip.Addr) uint64 {
	t.Helper()
	s, ok, err := d.Maps.LookupSource(addr)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		return 0
	}
	return s.Packets + s.Malformed
}
