package natstest_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bulwark-filter/bulwark/test/natstest"
	tnetns "github.com/bulwark-filter/bulwark/test/netns"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// TestClusterReplicated starts a 3-node cluster of the pinned server, puts
// 3 messages into a stream of 3 replicas, kills one server, puts 2 more
// through the others, restarts it and reads all 5 back from it alone.
func TestClusterReplicated(t *testing.T) {
	c := natstest.Cluster(t, 3, natstest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nc, err := nats.Connect(strings.Join(c.URLs(), ","), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "natstest", Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	put := func(keys ...string) {
		t.Helper()
		for _, k := range keys {
			for {
				if _, err := kv.PutString(attempt(ctx), k, k); err == nil {
					break
				} else if ctx.Err() != nil {
					t.Fatalf("put %s: %v", k, err)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	put("a", "b", "c")
	c.Kill(2)
	put("d", "e")
	c.Restart(2)
	nc.Close()

	// Only server 2: it must have caught up on d and e.
	nc2, err := nats.Connect(c.URL(2))
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	js2, _ := jetstream.New(nc2)
	var got []string
	for {
		kv2, err := js2.KeyValue(attempt(ctx), "natstest")
		if err == nil {
			got = nil
			var lister jetstream.KeyLister
			if lister, err = kv2.ListKeys(attempt(ctx)); err == nil {
				for k := range lister.Keys() {
					got = append(got, k)
				}
			}
			if strings.Join(got, "") == "abcde" {
				return
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("server 2 after restart: keys %q, want abcde: %v", got, err)
		}
		t.Logf("keys %q: %v", got, err)
		time.Sleep(200 * time.Millisecond)
	}
}

// TestDebianServer starts Debian's packaged server alone and checks its
// version through a client connection.
func TestDebianServer(t *testing.T) {
	c := natstest.Cluster(t, 1, natstest.Options{Binary: natstest.Debian(t)})
	nc, err := nats.Connect(c.URL(0))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if v := nc.ConnectedServerVersion(); !strings.HasPrefix(v, "2.9.") {
		t.Fatalf("Debian's nats-server is %s, want 2.9.x", v)
	}
}

// attempt bounds one request: a request whose server died mid-way is not
// answered, and would otherwise wait for the whole test's deadline.
func attempt(ctx context.Context) context.Context {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_ = cancel // released when the deadline passes
	return ctx
}

// TestNetns starts a server inside a network namespace made for the test:
// a client inside the namespace reaches it, the host's loopback does not.
func TestNetns(t *testing.T) {
	testutil.RequireRoot(t)
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	ns := "natstest-" + hex.EncodeToString(b)
	for _, args := range [][]string{{"netns", "add", ns}, {"-n", ns, "link", "set", "lo", "up"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
		if args[0] == "netns" {
			t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		}
	}
	c := natstest.Cluster(t, 1, natstest.Options{Netns: []string{ns}, Hosts: []string{"127.0.0.1"}})
	if nc, err := nats.Connect(c.URL(0), nats.Timeout(time.Second)); err == nil {
		nc.Close()
		t.Fatal("the host's loopback reached the server in the namespace")
	}
	var version string
	err := tnetns.InNamed(ns, func() error {
		nc, err := nats.Connect(c.URL(0))
		if err != nil {
			return err
		}
		defer nc.Close()
		version = nc.ConnectedServerVersion()
		return nil
	})
	if err != nil || version == "" {
		t.Fatalf("client in %s: %v", ns, err)
	}
}
