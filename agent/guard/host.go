package guard

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Why values of the host's own protected space.
const (
	// WhyHostAddress is an address of one of the host's interfaces.
	WhyHostAddress = "host address"
	// WhyGateway is a next hop of a default route.
	WhyGateway = "default gateway"
)

// dumpRetries bounds the retries of a netlink dump the kernel interrupted
// (an address or route changed while it was read).
const dumpRetries = 3

// Host returns the host's own space, read through h (nil: the network
// namespace of the calling thread): every address of every interface and
// every next hop of a default route in any routing table, each as a single
// address.
func Host(h *netlink.Handle) ([]Protected, error) {
	if h == nil {
		h = &netlink.Handle{}
	}
	var out []Protected
	add := func(ip net.IP, why string) {
		if a, ok := netip.AddrFromSlice(ip); ok {
			a = a.Unmap()
			out = append(out, Protected{Prefix: netip.PrefixFrom(a, a.BitLen()), Why: why})
		}
	}
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return h.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("list the host's addresses: %w", err)
	}
	for _, a := range addrs {
		if a.IPNet != nil {
			add(a.IP, WhyHostAddress)
		}
	}
	routes, err := retryDump(func() ([]netlink.Route, error) {
		return h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, fmt.Errorf("list the host's routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				continue
			}
		}
		add(r.Gw, WhyGateway)
		if v, ok := r.Via.(*netlink.Via); ok {
			add(v.Addr, WhyGateway)
		}
		for _, nh := range r.MultiPath {
			add(nh.Gw, WhyGateway)
			if v, ok := nh.Via.(*netlink.Via); ok {
				add(v.Addr, WhyGateway)
			}
		}
	}
	return out, nil
}

// retryDump runs a netlink dump again when the kernel interrupted it.
func retryDump[T any](dump func() ([]T, error)) ([]T, error) {
	var err error
	for range dumpRetries {
		var out []T
		if out, err = dump(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return out, err
		}
	}
	return nil, err
}
