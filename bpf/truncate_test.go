package bpf_test

import (
	"encoding/binary"
	"testing"

	"github.com/bulwark-filter/bulwark/bpf/model"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// truncFrame is a valid frame and where its headers lie.
type truncFrame struct {
	name  string
	frame []byte
	ip    bool // an IP frame: l3 is the IP header, l4 the upper layer
	v6    bool
	l3    int
	l4    int  // offset of the L4 header (after options / extension headers)
	need  int  // bytes every parse needs: the end of the last required header
	udp   bool // fix the UDP length too
}

// TestTruncation cuts valid frames at every length from 0 to len-1 and sends
// each cut through the program and the model, which must agree.
//
// Raw cuts keep the lengths the headers declare, so every cut of an IP
// frame is malformed (the IP header claims more than the frame holds), and
// a non-IP frame is malformed exactly when the cut falls inside its
// Ethernet header or VLAN tags. "Fixed" cuts also rewrite the IPv4 total
// length, IPv6 payload length and UDP length to what is left, so each header
// boundary is tested on its own: a cut before the end of the last required
// header (need) is malformed, one after it passes.
//
// Cuts under 14 bytes cannot be run: BPF_PROG_TEST_RUN rejects XDP input
// shorter than an Ethernet header (EINVAL); the test checks it does and
// that the model calls them malformed.
func TestTruncation(t *testing.T) {
	q, ad := testutil.TPID8021Q, testutil.TPID8021AD
	exts := testutil.IPv6Ext(testutil.HopByHop(), testutil.Routing(), testutil.Fragment(0, true), testutil.AH(4), testutil.DstOpts(1))
	frames := []truncFrame{
		{name: "udp4 2 tags + options", ip: true, l3: 22, l4: 22 + 28, need: 22 + 28 + 8, udp: true,
			frame: testutil.UDP4(t, a4, d4, 53, 30, testutil.VLAN(q, ad), testutil.IPv4Options(2))},
		{name: "tcp4", ip: true, l3: 14, l4: 34, need: 34 + 20,
			frame: testutil.TCP4(t, a4, d4, 80, testutil.FlagSYN)},
		{name: "icmp4", ip: true, l3: 14, l4: 34, need: 34 + 8,
			frame: testutil.ICMP4(t, a4, d4)},
		{name: "gre4 3 tags", ip: true, l3: 26, l4: 46, need: 46,
			frame: testutil.IP(t, a4, d4, testutil.ProtoGRE, 16, testutil.VLAN(q, q, ad))},
		{name: "tcp6 5 extension headers", ip: true, v6: true, l3: 14, l4: 54 + 64, need: 54 + 64 + 20,
			frame: testutil.TCP6(t, a6, d6, 80, testutil.FlagSYN, exts)},
		{name: "udp6", ip: true, v6: true, l3: 14, l4: 54, need: 54 + 8, udp: true,
			frame: testutil.UDP6(t, a6, d6, 53, 20)},
		{name: "icmp6 1 tag", ip: true, v6: true, l3: 18, l4: 58, need: 58 + 8,
			frame: testutil.ICMP6(t, a6, d6, testutil.VLAN(ad))},
		{name: "arp 1 tag", l3: 18, need: 18,
			frame: testutil.Ether(t, testutil.EtherARP, 28, testutil.VLAN(q))},
	}
	d := testutil.Load(t, testutil.Setup{Policy: maps.Policy{}})
	m, err := model.New(maps.Policy{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range frames {
		if f.ip { // drop gopacket's Ethernet padding: cut the IP packet itself
			if f.v6 {
				f.frame = f.frame[:f.l3+40+int(binary.BigEndian.Uint16(f.frame[f.l3+4:]))]
			} else {
				f.frame = f.frame[:f.l3+int(binary.BigEndian.Uint16(f.frame[f.l3+2:]))]
			}
		}
		t.Run(f.name, func(t *testing.T) {
			if p, r := model.Parse(f.frame); f.ip && (r != model.ParseOK || p.Family == 0) {
				t.Fatalf("the uncut frame does not parse: %v", r)
			}
			for _, fixed := range []bool{false, true} {
				if fixed && !f.ip {
					continue
				}
				for n := 0; n < len(f.frame); n++ {
					cut := append([]byte(nil), f.frame[:n]...)
					if fixed {
						fixLengths(cut, f)
					}
					md := m.Decide(cut, 0)
					if n < 14 {
						if _, err := d.Run(cut); err == nil {
							t.Errorf("cut %d: the kernel ran a frame shorter than Ethernet", n)
						}
						if md.Reason != maps.ReasonMalformed {
							t.Errorf("cut %d: model %s/%s, want malformed", n, md.Action, md.Reason)
						}
						continue
					}
					ret, act, why := run(t, d, cut)
					if act != md.Action || why != md.Reason || ret != xdpFor(md.Action) {
						t.Errorf("fixed=%v cut %d: kernel XDP %d %s/%s, model %s/%s", fixed, n, ret, act, why, md.Action, md.Reason)
					}
					want := maps.ReasonMalformed
					switch {
					case n < f.need:
					case !f.ip:
						want = maps.ReasonNonIP
					case fixed:
						want = maps.ReasonPassed
					}
					if why != want {
						t.Errorf("fixed=%v cut %d (headers end at %d): %s, want %s", fixed, n, f.need, why, want)
					}
				}
			}
		})
	}
}

// fixLengths rewrites the length fields that lie inside the cut frame to
// what the frame holds.
func fixLengths(b []byte, f truncFrame) {
	n := len(b)
	if f.v6 {
		if n >= f.l3+40 {
			put16(b, f.l3+4, uint16(n-f.l3-40))
		}
	} else if n >= f.l3+4 {
		put16(b, f.l3+2, uint16(n-f.l3))
	}
	if f.udp && n >= f.l4+6 {
		put16(b, f.l4+4, uint16(n-f.l4))
	}
}
