// Package netns builds throw-away network testbeds for Bulwark's privileged
// end-to-end tests: a client and a server namespace joined by a veth pair,
// addressed only from the benchmarking ranges 198.18.0.0/15 and 2001:2::/48,
// with no default route, so test traffic never leaves the two namespaces.
// It also sends crafted frames from the client (AF_PACKET, any source) and
// counts UDP datagrams delivered to the server's stack.
package netns

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Addresses of the testbed. The client owns ClientAddrs4/6 (the first is
// its primary); any other source can be spoofed with the Sender.
var (
	ServerAddr4 = netip.MustParseAddr("198.18.1.1")
	ServerAddr6 = netip.MustParseAddr("2001:2:0:1::1")
)

// Options shape a testbed.
type Options struct {
	// ClientHosts are the host numbers x the client gets as 198.18.1.x/24
	// and 2001:2:0:1::x/64. Empty: just 2.
	ClientHosts []int
}

// Testbed is a client and a server namespace with a veth pair between them.
type Testbed struct {
	Client, Server     string // namespace names (under /run/netns)
	ClientIf, ServerIf string // veth names, one in each namespace
	ClientMAC          net.HardwareAddr
	ServerMAC          net.HardwareAddr
	ServerIndex        int // ifindex of ServerIf in the server namespace
	ClientIndex        int
	ClientAddrs4       []netip.Addr
	ClientAddrs6       []netip.Addr

	clientNS, serverNS netns.NsHandle
}

func randSuffix() string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// New builds a testbed and deletes it (namespaces, and the veths with them)
// when the test ends, also when it fails.
func New(t testing.TB, opts Options) *Testbed {
	t.Helper()
	hosts := opts.ClientHosts
	if len(hosts) == 0 {
		hosts = []int{2}
	}
	sfx := randSuffix()
	tb := &Testbed{
		Client: "bwk-c-" + sfx, Server: "bwk-s-" + sfx,
		ClientIf: "bwkc" + sfx, ServerIf: "bwks" + sfx,
		clientNS: -1, serverNS: -1,
	}
	t.Cleanup(tb.destroy)
	must := func(err error) {
		if err != nil {
			t.Helper()
			t.Fatalf("testbed: %v", err)
		}
	}
	must(ip("netns", "add", tb.Client))
	must(ip("netns", "add", tb.Server))
	// The pair is created in the client namespace and its peer moved
	// straight to the server's: neither end ever exists in the root one.
	must(ip("-n", tb.Client, "link", "add", tb.ClientIf, "type", "veth", "peer", "name", tb.ServerIf, "netns", tb.Server))
	for _, ns := range []string{tb.Client, tb.Server} {
		must(ip("-n", ns, "link", "set", "lo", "up"))
		// Spoofed sources have no route back: do not let reverse path
		// filtering drop them in the server's stack.
		for _, k := range []string{"all", "default"} {
			must(sysctl(ns, "net.ipv4.conf."+k+".rp_filter", "0"))
		}
	}
	for _, h := range hosts {
		a4 := netip.AddrFrom4([4]byte{198, 18, 1, byte(h)})
		a6 := netip.MustParseAddr(fmt.Sprintf("2001:2:0:1::%x", h))
		must(ip("-n", tb.Client, "addr", "add", a4.String()+"/24", "dev", tb.ClientIf))
		must(ip("-n", tb.Client, "-6", "addr", "add", a6.String()+"/64", "dev", tb.ClientIf, "nodad"))
		tb.ClientAddrs4 = append(tb.ClientAddrs4, a4)
		tb.ClientAddrs6 = append(tb.ClientAddrs6, a6)
	}
	must(ip("-n", tb.Server, "addr", "add", ServerAddr4.String()+"/24", "dev", tb.ServerIf))
	must(ip("-n", tb.Server, "-6", "addr", "add", ServerAddr6.String()+"/64", "dev", tb.ServerIf, "nodad"))
	must(sysctl(tb.Server, "net.ipv4.conf."+tb.ServerIf+".rp_filter", "0"))
	must(ip("-n", tb.Client, "link", "set", tb.ClientIf, "up"))
	must(ip("-n", tb.Server, "link", "set", tb.ServerIf, "up"))

	var err error
	tb.clientNS, err = netns.GetFromName(tb.Client)
	must(err)
	tb.serverNS, err = netns.GetFromName(tb.Server)
	must(err)
	cl, err := tb.ClientLink()
	must(err)
	sl, err := tb.ServerLink()
	must(err)
	tb.ClientMAC, tb.ClientIndex = cl.Attrs().HardwareAddr, cl.Attrs().Index
	tb.ServerMAC, tb.ServerIndex = sl.Attrs().HardwareAddr, sl.Attrs().Index
	return tb
}

func sysctl(ns, key, val string) error {
	out, err := exec.Command("ip", "netns", "exec", ns, "sysctl", "-q", "-w", key+"="+val).CombinedOutput()
	if err != nil {
		return fmt.Errorf("sysctl %s=%s in %s: %v: %s", key, val, ns, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (tb *Testbed) destroy() {
	if tb.clientNS >= 0 {
		tb.clientNS.Close()
	}
	if tb.serverNS >= 0 {
		tb.serverNS.Close()
	}
	// Deleting a namespace deletes the veth end in it, and with it the pair.
	_ = ip("netns", "del", tb.Server)
	_ = ip("netns", "del", tb.Client)
}

// inNS runs fn on a locked OS thread switched into ns. Sockets created in fn
// belong to ns and may be used from any goroutine afterwards.
func inNS(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// A fresh goroutine: if switching back fails, the thread stays
		// locked and is discarded when the goroutine ends.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("current namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter namespace: %w", err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("return to namespace: %w (and %v)", err, ferr)
			return // thread stays locked: the runtime ends it
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// InNamed runs fn inside the namespace named name (under /run/netns), e.g.
// one that another harness made.
func InNamed(name string, fn func() error) error {
	h, err := netns.GetFromName(name)
	if err != nil {
		return fmt.Errorf("namespace %s: %w", name, err)
	}
	defer h.Close()
	return inNS(h, fn)
}

// InServer runs fn inside the server namespace (e.g. to attach XDP by
// interface name).
func (tb *Testbed) InServer(fn func() error) error { return inNS(tb.serverNS, fn) }

// InClient runs fn inside the client namespace.
func (tb *Testbed) InClient(fn func() error) error { return inNS(tb.clientNS, fn) }

// ServerLink reads the server veth (its XDP attributes and statistics).
func (tb *Testbed) ServerLink() (netlink.Link, error) { return linkIn(tb.serverNS, tb.ServerIf) }

// ClientLink reads the client veth.
func (tb *Testbed) ClientLink() (netlink.Link, error) { return linkIn(tb.clientNS, tb.ClientIf) }

func linkIn(ns netns.NsHandle, name string) (netlink.Link, error) {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netlink handle: %w", err)
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("link %s: %w", name, err)
	}
	return l, nil
}

// ServerXDPProgID is the id of the XDP program attached to the server veth,
// 0 if none.
func (tb *Testbed) ServerXDPProgID() (uint32, error) {
	l, err := tb.ServerLink()
	if err != nil {
		return 0, err
	}
	if x := l.Attrs().Xdp; x != nil && x.Attached {
		return x.ProgId, nil
	}
	return 0, nil
}
