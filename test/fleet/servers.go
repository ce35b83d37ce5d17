package fleet

import (
	"net/netip"
	"testing"

	"github.com/bulwark-filter/bulwark/test/natstest"
)

// Servers are the bed's NATS server processes (test/natstest), one in
// each server namespace, listening on its fabric address.
type Servers = natstest.Servers

// startServers starts a JetStream server in each of namespaces, on the
// matching address; config is appended to every server's configuration.
func startServers(t testing.TB, namespaces []string, addrs []netip.Addr, debian bool, config string) *Servers {
	t.Helper()
	o := natstest.Options{Netns: namespaces, Config: config}
	for _, a := range addrs {
		o.Hosts = append(o.Hosts, a.String())
	}
	if debian {
		o.Binary = natstest.Debian(t)
	}
	return natstest.Cluster(t, len(namespaces), o)
}
