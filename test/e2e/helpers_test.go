// Package e2e runs the real datapath attached to a veth in a throw-away
// network namespace, with real frames sent from a peer namespace.
package e2e

import (
	"net/netip"
	"testing"

	"github.com/bulwark-filter/bulwark/loader"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/netns"
)

// udpPort is where the server's counting socket listens.
const udpPort = 9000

var modes = []loader.AttachMode{loader.AttachNative, loader.AttachGeneric}

// attach attaches d to the server veth from inside the server namespace and
// checks the mode in effect.
func attach(t *testing.T, tb *netns.Testbed, d *loader.Datapath, mode loader.AttachMode) {
	t.Helper()
	var got loader.AttachMode
	err := tb.InServer(func() error {
		var err error
		got, err = d.Attach(tb.ServerIf, mode)
		return err
	})
	if err != nil {
		t.Fatalf("attach %s: %v", mode, err)
	}
	if got != mode {
		t.Fatalf("attached in mode %s, want %s", got, mode)
	}
	id, err := tb.ServerXDPProgID()
	if err != nil {
		t.Fatal(err)
	}
	info, err := d.Program().Info()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := info.ID()
	if id == 0 || uint32(want) != id {
		t.Fatalf("server veth runs XDP program %d, want %d", id, want)
	}
}

func newReceiver(t *testing.T, tb *netns.Testbed, keepLog bool) *netns.Receiver {
	t.Helper()
	r, err := tb.NewReceiver(udpPort, keepLog)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func newSender(t *testing.T, tb *netns.Testbed) *netns.Sender {
	t.Helper()
	s, err := tb.NewSender()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// frame is a UDP datagram from src to the server's address of its family.
func frame(tb *netns.Testbed, src netip.Addr, seq uint64) []byte {
	p := netns.Payload(seq, 64)
	if src.Is4() {
		return netns.UDP4(tb.ServerMAC, tb.ClientMAC, src, netns.ServerAddr4, 40000, udpPort, p)
	}
	return netns.UDP6(tb.ServerMAC, tb.ClientMAC, src, netns.ServerAddr6, 40000, udpPort, p)
}

func stats(t *testing.T, d *loader.Datapath) *maps.Stats {
	t.Helper()
	st, err := d.Maps.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func source(t *testing.T, d *loader.Datapath, a netip.Addr) maps.Source {
	t.Helper()
	s, ok, err := d.Maps.LookupSource(a)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Fatalf("source %s not tracked", a)
	}
	return s
}

func host(a string) maps.Entry {
	ad := netip.MustParseAddr(a)
	return maps.Entry{Prefix: netip.PrefixFrom(ad, ad.BitLen()), ListID: 1}
}
