package fleet

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bulwark-filter/bulwark/test/natstest"
)

// exampleAuthorization is the authorization block of the example server
// configuration, configs/fleet/nats-server.conf.
func exampleAuthorization(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../configs/fleet/nats-server.conf")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i, j := strings.Index(s, "# BEGIN authorization"), strings.Index(s, "# END authorization")
	if i < 0 || j < i {
		t.Fatal("configs/fleet/nats-server.conf: no BEGIN/END authorization markers")
	}
	return s[i:j]
}

// TestTLSAndPermissions runs a server with mutual TLS and the example
// configuration's users and permissions: two agents with valid credentials
// share verdicts; an agent with a bad password never connects and
// publishes nothing; a host connected as edge-2 cannot write a verdict as
// edge-1; a client without a certificate is refused.
func TestTLSAndPermissions(t *testing.T) {
	dir := t.TempDir()
	tp := natstest.NewPKI(t, dir, []net.IP{net.IPv4(127, 0, 0, 1)})
	ca, sc, sk, cc, ck := tp.CA, tp.ServerCert, tp.ServerKey, tp.ClientCert, tp.ClientKey
	conf := "tls {\n  cert_file: " + sc + "\n  key_file: " + sk + "\n  ca_file: " + ca + "\n  verify: true\n}\n" +
		exampleAuthorization(t)
	srv := natstest.Cluster(t, 1, natstest.Options{Config: conf})
	url := strings.Replace(srv.URL(0), "nats://", "tls://", 1)
	opts := func(node, user, password string) Options {
		o := testOptions(node, []string{url}, 1)
		o.TLS = TLS{CAFile: ca, CertFile: cc, KeyFile: ck}
		o.User, o.Password = user, password
		return o
	}
	e1 := start(t, opts("edge-1", "edge-1", "change-me-edge-1"))
	e2 := start(t, opts("edge-2", "edge-2", "change-me-edge-2"))
	bad := start(t, opts("edge-3", "edge-2", "wrong"))
	mustPublish(t, bad, block(nthTarget(9), time.Hour))
	mustPublish(t, e1, block(nthTarget(1), time.Hour))
	mustPublish(t, e2, block(nthTarget(2), time.Hour))
	converged(t, 2, e1, e2)
	if st := bad.c.Status(); st.Connected || st.Buffered != 1 {
		t.Errorf("bad credentials: connected %v, buffered %d; want false, 1", st.Connected, st.Buffered)
	}
	if _, ok := e2.rec.get(nthTarget(9)); ok {
		t.Error("the verdict of the client with bad credentials reached edge-2")
	}
	tlsOpts := []nats.Option{nats.RootCAs(ca), nats.ClientCert(cc, ck)}
	if nc, err := nats.Connect(url, append(tlsOpts, nats.UserInfo("edge-2", "wrong"))...); err == nil {
		nc.Close()
		t.Error("a bad password connected")
	}
	if nc, err := nats.Connect(url, nats.RootCAs(ca), nats.UserInfo("edge-2", "change-me-edge-2")); err == nil {
		nc.Close()
		t.Error("a client without a certificate connected")
	}
	// edge-2 writing under edge-1's name: the server refuses the publish.
	kv := rawKV(t, url, append(tlsOpts, nats.UserInfo("edge-2", "change-me-edge-2"))...)
	forged := block(nthTarget(5), time.Hour)
	forged.Issuer = "edge-1"
	data, _ := encode(forged)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := kv.Put(ctx, Key("edge-1", nthTarget(5)), data); err == nil {
		t.Error("edge-2 wrote a verdict as edge-1")
	}
	converged(t, 2, e1, e2)
}
