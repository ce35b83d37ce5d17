package bpf_test

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/bulwark-filter/bulwark/bpf/model"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// TestUDPSameness: the datapath counts a source's UDP datagrams and those
// that repeat the one before in port, length and the payload word (offset
// 32, or 0 in a short datagram). The expected counts are worked out by hand
// from that definition; model.UDPShape must agree with each step.
func TestUDPSameness(t *testing.T) {
	testutil.RequireRoot(t)
	// udp is a UDP frame to dport with n payload bytes: w0 at payload
	// offset 0 and, when there is room, w32 at offset 32.
	udp := func(dport uint16, n int, w0, w32 uint32) []byte {
		f := testutil.UDP4(t, "198.18.9.9", d4, dport, n)
		pl := f[len(f)-n:]
		binary.LittleEndian.PutUint32(pl, w0)
		if n >= 36 {
			binary.LittleEndian.PutUint32(pl[32:], w32)
		}
		return f
	}
	tcp := testutil.TCP4(t, "198.18.9.9", d4, 443, testutil.FlagACK)
	steps := []struct {
		frame []byte
		same  bool // repeats the datagram before
	}{
		{udp(9000, 64, 0, 1), false}, // the first
		{udp(9000, 64, 0, 1), true},
		{udp(9000, 64, 7, 1), true},  // another word at 0: not read in a 64-byte payload
		{udp(9000, 64, 7, 2), false}, // another word at 32
		{tcp, false},                 // not UDP: not counted, and the last UDP shape stays
		{udp(9000, 64, 7, 2), true},
		{udp(9001, 64, 7, 2), false}, // another port
		{udp(9001, 65, 7, 2), false}, // another length
		{udp(9001, 20, 5, 0), false}, // short: the word at 0
		{udp(9001, 20, 5, 0), true},
		{udp(9001, 20, 6, 0), false},
	}
	d := testutil.Load(t, testutil.Setup{ReplayClock: true})
	var wantUDP, wantSame uint64
	var last uint32
	for i, s := range steps {
		if _, _, why, _ := runAt(t, d, s.frame, t0+uint64(i)*1e6); why != maps.ReasonPassed {
			t.Fatalf("step %d: %s, want passed", i, why)
		}
		p, _ := model.Parse(s.frame)
		shape, ok := model.UDPShape(&p, s.frame)
		if !ok {
			continue
		}
		wantUDP++
		if s.same {
			wantSame++
		}
		if (shape == last) != s.same && wantUDP > 1 {
			t.Errorf("step %d: model.UDPShape says same %v, want %v", i, shape == last, s.same)
		}
		last = shape
	}
	src, ok, err := d.Maps.LookupSource(netip.MustParseAddr("198.18.9.9"))
	if err != nil || !ok {
		t.Fatalf("source: %v %v", ok, err)
	}
	if src.UDP != wantUDP || src.UDPSame != wantSame {
		t.Errorf("udp %d, udp_same %d; want %d, %d", src.UDP, src.UDPSame, wantUDP, wantSame)
	}
	if src.UDPShape != last {
		t.Errorf("last shape %#x, want the model's %#x", src.UDPShape, last)
	}
}
