package bpf_test

import (
	"fmt"
	"math/bits"
	"net/netip"
	"testing"

	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// TestScanSketches sends connection attempts and other packets through the
// real program on the replay clock and reads the source's scan sketches
// back: which packets count, the hashing, and the two generations of
// 2^33 ns (scan window 8.6 s) as the epoch turns, once and twice.
func TestScanSketches(t *testing.T) {
	const shift = 33
	d := testutil.Load(t, testutil.Setup{ReplayClock: true, Policy: maps.Policy{ScanWindow: 1 << shift}})
	epochNS := uint64(1) << shift
	base := (t0>>shift + 1) << shift // the start of an epoch
	epoch := func(at uint64) uint32 { return uint32(at >> shift) }
	src, src6 := netip.MustParseAddr(a4), netip.MustParseAddr(a6)
	send := func(frame []byte, at uint64) {
		t.Helper()
		if _, _, why, _ := runAt(t, d, frame, at); why != maps.ReasonPassed {
			t.Fatalf("frame at %d: %s, want passed", at, why)
		}
	}
	check := func(step string, addr netip.Addr, at uint64, want testutil.ScanSketch, lastPort uint16) {
		t.Helper()
		got, ok, err := d.Maps.LookupSource(addr)
		if err != nil || !ok {
			t.Fatalf("%s: source %s: %v (tracked %v)", step, addr, err, ok)
		}
		ports, addrs := got.ScanBits(epoch(at))
		if ports != want.Ports || addrs != want.Addrs {
			t.Errorf("%s: ports %x addresses %x; want %x %x", step, ports, addrs, want.Ports, want.Addrs)
		}
		if got.ScanPort != lastPort {
			t.Errorf("%s: last port %d, want %d", step, got.ScanPort, lastPort)
		}
	}
	withSport := func(f []byte, sport uint16) []byte { // IPv4, no options: L4 at 34
		return patched(f, func(b []byte) { put16(b, 34, sport) })
	}
	dst := netip.MustParseAddr(d4)

	// Epoch 1: attempts on 3 ports and to 41 addresses, and what is not one.
	var g1 testutil.ScanSketch
	at := base + 1000
	for _, p := range []uint16{22, 23, 3389} {
		send(testutil.TCP4(t, a4, d4, p, testutil.FlagSYN), at)
		g1.Port(p)
	}
	g1.Addr(dst)
	send(testutil.TCP4(t, a4, d4, 5900, testutil.FlagFIN|testutil.FlagPSH), at) // Xmas-like: no ACK
	g1.Port(5900)
	for i := 1; i <= 40; i++ { // a horizontal sweep of port 22
		a := netip.AddrFrom4([4]byte{198, 19, 1, byte(i)})
		send(testutil.TCP4(t, a4, a.String(), 22, testutil.FlagSYN), at)
		g1.Addr(a)
	}
	// Not attempts: established TCP, resets, a DNS answer to an ephemeral port.
	send(testutil.TCP4(t, a4, "198.19.9.9", 8001, testutil.FlagACK|testutil.FlagPSH), at)
	send(testutil.TCP4(t, a4, "198.19.9.9", 8002, testutil.FlagRST), at)
	send(testutil.TCP4(t, a4, "198.19.9.9", 8003, testutil.FlagSYN|testutil.FlagACK), at)
	send(withSport(testutil.UDP4(t, a4, "198.19.9.9", 40001, 20), 53), at)
	check("epoch 1", src, at, g1, 22)
	// UDP from a service port to a service port, and from a high port to a
	// high port, are attempts; so is an echo request (its address only).
	send(withSport(testutil.UDP4(t, a4, d4, 161, 20), 53), at)
	send(testutil.UDP4(t, a4, d4, 40002, 20), at)
	send(testutil.ICMP4(t, a4, "198.19.2.1"), at)
	g1.Port(161)
	g1.Port(40002)
	g1.Addr(netip.MustParseAddr("198.19.2.1"))
	check("epoch 1, UDP and ICMP", src, at, g1, 40002)

	// Epoch 2: a new generation; the reader sees both.
	at = base + epochNS + 5
	var g2 testutil.ScanSketch
	send(testutil.TCP4(t, a4, "198.19.3.3", 8443, testutil.FlagSYN), at)
	g2.Port(8443)
	g2.Addr(netip.MustParseAddr("198.19.3.3"))
	both := g1.Or(g2)
	check("epoch 2", src, at, both, 8443)
	// A reader one epoch on (no packet since) still sees epoch 2's.
	check("epoch 3, read only", src, at+epochNS, g2, 8443)

	// Epoch 3: epoch 1's generation is reused, cleared first.
	at = base + 2*epochNS
	var g3 testutil.ScanSketch
	send(testutil.TCP4(t, a4, d4, 25, testutil.FlagSYN), at)
	g3.Port(25)
	g3.Addr(dst)
	check("epoch 3", src, at, g2.Or(g3), 25)
	// A reader two epochs on sees nothing.
	check("epoch 5, read only", src, at+2*epochNS, testutil.ScanSketch{}, 25)

	// Epoch 6 after a gap: both generations were stale; only the new one.
	at = base + 5*epochNS
	var g6 testutil.ScanSketch
	send(testutil.UDP4(t, a4, d4, 514, 20), at)
	g6.Port(514)
	g6.Addr(dst)
	check("epoch 6 after a gap", src, at, g6, 514)

	// IPv6: the address words folded; echo requests count the address.
	var v6 testutil.ScanSketch
	for i := 1; i <= 5; i++ {
		a := netip.MustParseAddr(fmt.Sprintf("2001:2:0:ff::%d", i))
		send(testutil.TCP6(t, a6, a.String(), 443, testutil.FlagSYN), at)
		send(testutil.ICMP6(t, a6, fmt.Sprintf("2001:2:0:fe::%d", i)), at)
		v6.Addr(a)
		v6.Addr(netip.MustParseAddr(fmt.Sprintf("2001:2:0:fe::%d", i)))
	}
	v6.Port(443)
	check("IPv6", src6, at, v6, 443)
	if n := bits.OnesCount64(v6.Addrs); n < 8 {
		t.Errorf("10 IPv6 addresses set only %d of 64 bits: the hash spreads them badly", n)
	}
}

// TestScanRepeatAttempt: the datapath skips the sketches for an attempt
// that repeats the source's last one (port and address) in the same epoch;
// the sketches must read as if every attempt had been recorded. The traps:
// an echo request between two same attempts, an epoch turning between
// them, and an older address coming back after another one.
func TestScanRepeatAttempt(t *testing.T) {
	const shift = 33
	d := testutil.Load(t, testutil.Setup{ReplayClock: true, Policy: maps.Policy{ScanWindow: 1 << shift}})
	epochNS := uint64(1) << shift
	base := (t0>>shift + 1) << shift
	src := netip.MustParseAddr(a4)
	x, y, z := netip.MustParseAddr("198.19.4.1"), netip.MustParseAddr("198.19.4.2"), netip.MustParseAddr("198.19.4.3")
	send := func(frame []byte, at uint64) {
		t.Helper()
		if _, _, why, _ := runAt(t, d, frame, at); why != maps.ReasonPassed {
			t.Fatalf("frame at %d: %s, want passed", at, why)
		}
	}
	check := func(step string, readAt uint64, want testutil.ScanSketch) {
		t.Helper()
		got, ok, err := d.Maps.LookupSource(src)
		if err != nil || !ok {
			t.Fatalf("%s: source %s: %v (tracked %v)", step, src, err, ok)
		}
		ports, addrs := got.ScanBits(uint32(readAt >> shift))
		if ports != want.Ports || addrs != want.Addrs {
			t.Errorf("%s: ports %x addresses %x; want %x %x", step, ports, addrs, want.Ports, want.Addrs)
		}
	}
	udp := func(dst netip.Addr) []byte { return testutil.UDP4(t, a4, dst.String(), 9000, 20) }

	// Epoch 1: the same datagram 5 times, then to z and back to x.
	at := base + 1
	var g1 testutil.ScanSketch
	for range 5 {
		send(udp(x), at)
	}
	g1.Port(9000)
	g1.Addr(x)
	check("epoch 1, repeated", at, g1)
	send(udp(z), at)
	send(udp(x), at)
	g1.Addr(z)
	check("epoch 1, another address and back", at, g1)

	// Epoch 2 opens with an echo request to y, then the datagram to x
	// again: recorded in epoch 2's generation although it repeats the last
	// datagram (the echo request came between them).
	at = base + epochNS + 1
	var g2 testutil.ScanSketch
	send(testutil.ICMP4(t, a4, y.String()), at)
	send(udp(x), at)
	send(udp(x), at)
	g2.Addr(y)
	g2.Addr(x)
	g2.Port(9000)
	check("epoch 3 reads epoch 2 only", at+epochNS, g2)

	// Epoch 4 (after a gap): the same datagram as the last one of epoch 2.
	at = base + 3*epochNS + 1
	var g4 testutil.ScanSketch
	send(udp(x), at)
	g4.Addr(x)
	g4.Port(9000)
	check("epoch 5 reads epoch 4 only", at+epochNS, g4)
}
