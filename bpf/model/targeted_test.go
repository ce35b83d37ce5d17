package model_test

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// udp4 is an Ethernet/IPv4/UDP frame from src to port 9 with n payload bytes.
func udp4(src string, n int) []byte {
	f := make([]byte, 14+20+8+n)
	f[0], f[6] = 0x02, 0x02
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+n))
	a := addr(src).As4()
	copy(ip[12:16], a[:])
	copy(ip[16:20], []byte{198, 51, 100, 1})
	u := ip[20:]
	binary.BigEndian.PutUint16(u[0:], 12345)
	binary.BigEndian.PutUint16(u[2:], 9)
	binary.BigEndian.PutUint16(u[4:], uint16(8+n))
	return f
}

// udp6 is an Ethernet/IPv6/UDP frame from src to port 9 with n payload bytes.
func udp6(src string, n int) []byte {
	f := make([]byte, 14+40+8+n)
	f[0], f[6] = 0x02, 0x02
	binary.BigEndian.PutUint16(f[12:], 0x86dd)
	ip := f[14:]
	ip[0], ip[6], ip[7] = 0x60, 17, 64
	binary.BigEndian.PutUint16(ip[4:], uint16(8+n))
	a := addr(src).As16()
	copy(ip[8:24], a[:])
	d := addr("2001:db8:ffff::1").As16()
	copy(ip[24:40], d[:])
	u := ip[40:]
	binary.BigEndian.PutUint16(u[0:], 12345)
	binary.BigEndian.PutUint16(u[2:], 9)
	binary.BigEndian.PutUint16(u[4:], uint16(8+n))
	return f
}

// TestTargeted runs short hand-made sequences that the captures and random
// mutations are unlikely to hit, through both sides.
func TestTargeted(t *testing.T) {
	testutil.RequireRoot(t)
	onePPS := maps.Policy{Default: maps.Limit{PPS: 1, Burst: 1}}
	cases := []struct {
		name   string
		s      setup
		frames [][]byte
	}{{
		// An IPv6 packet whose source is IPv4-mapped (::ffff:1.2.3.4) is an
		// IPv6 source: its bucket is its /64 (here ::/64), not 1.2.3.4's.
		name: "ipv4-mapped IPv6 source after its IPv4 twin",
		s:    setup{policy: onePPS},
		frames: [][]byte{
			udp4("1.2.3.4", 10),
			udp6("::ffff:1.2.3.4", 10),
		},
	}, {
		name: "ipv4-mapped IPv6 source after another source of ::/64",
		s:    setup{policy: onePPS},
		frames: [][]byte{
			udp6("::1", 10),
			udp6("::ffff:1.2.3.4", 10),
		},
	}, {
		// Throttle x10 on a class x1000 source (both within the config's
		// (0, 1000] bounds): 10000 pm x 1000000 pm does not fit 32 bits.
		// Byte limit 1 B/s, burst 1 B: a 3000-byte frame conforms at x10000
		// (costs 0.3 s of a 1 s depth) but not at a smaller multiplier.
		name: "throttle times class multiplier beyond 32 bits",
		s: setup{
			policy: maps.Policy{
				ThrottleMultiplier: 10,
				Default:            maps.Limit{BytesPerSec: 1, ByteBurst: 1},
				Classes: []maps.Class{{Name: "big", Multiplier: 1000,
					CIDRs: []netip.Prefix{pfx("10.9.0.0/16")}}},
			},
			verdicts: []verdictSpec{{addr("10.9.0.1"), maps.VerdictThrottle, ^uint64(0)}},
		},
		frames: [][]byte{udp4("10.9.0.1", 3000-42)},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.s.name = c.name
			h := newHarness(t, c.s)
			for i, f := range c.frames {
				if diff, _ := h.step(f, baseNS); diff != "" {
					(&divergences{t: t, limit: 1}).add(fmt.Sprintf("frame %d", i+1), diff, f)
				}
			}
			h.checkCounters()
		})
	}
}
