// Command publisher fills a fleet's bucket for the fleet tests: it runs
// the real fleet client (agent/fleet) as node -node, publishes -count
// block verdicts and exits once the client has published them all. The
// tests run it inside a namespace of the testbed (ip netns exec), as a
// host of the fleet without XDP.
//
//	publisher -servers nats://198.19.0.1:4222,... -node filler -count 1000000 -v6
//
// Targets: 198.18.128.0 onwards (IPv4, at most 32,768), or with -v6
// 2001:2:0:ff::<k>/128.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/bulwark-filter/bulwark/agent/fleet"
)

// none applies nothing: the publisher is no filter.
type none struct{}

func (none) Apply([]fleet.Change) map[netip.Prefix]string { return nil }

// Target is the k-th target of the publisher.
func Target(k int, v6 bool) netip.Prefix {
	if v6 {
		a := netip.MustParseAddr("2001:2:0:ff::").As16()
		a[12], a[13], a[14], a[15] = byte(k>>24), byte(k>>16), byte(k>>8), byte(k)
		return netip.PrefixFrom(netip.AddrFrom16(a), 128)
	}
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(128 + k/256), byte(k % 256)}), 32)
}

func main() {
	servers := flag.String("servers", "", "NATS URLs, comma-separated")
	node := flag.String("node", "filler", "the issuer name")
	count := flag.Int("count", 1000, "verdicts to publish")
	replicas := flag.Int("replicas", 3, "the bucket's replicas, if this client creates it")
	ttl := flag.Duration("ttl", time.Hour, "the verdicts' life")
	v6 := flag.Bool("v6", false, "IPv6 /128 targets (up to 2^32) instead of IPv4 (up to 32,768)")
	limit := flag.Duration("timeout", 10*time.Minute, "give up after this long")
	flag.Parse()
	if err := run(strings.Split(*servers, ","), *node, *count, *replicas, *ttl, *v6, *limit); err != nil {
		fmt.Fprintln(os.Stderr, "publisher:", err)
		os.Exit(1)
	}
}

func run(servers []string, node string, count, replicas int, ttl time.Duration, v6 bool, limit time.Duration) error {
	if count < 1 || (!v6 && count > 32768) {
		return fmt.Errorf("-count %d: 1 to 32,768 IPv4 targets (more with -v6)", count)
	}
	o := fleet.DefaultOptions()
	o.Servers, o.Node, o.Replicas = servers, node, replicas
	o.IssuerRate, o.IssuerBurst, o.MaxActive, o.Buffer = 1e6, count, count, count
	c, err := fleet.New(o, none{}, hclog.NewNullLogger(), nil)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	now := time.Now()
	for k := range count {
		v := fleet.Verdict{Target: Target(k, v6), Action: fleet.ActionBlock, Issuer: node, Origin: "cli",
			Reason: "fleet test filler", IssuedAt: now, Expires: now.Add(ttl)}
		if err := c.Publish(v); err != nil {
			return fmt.Errorf("publish %d: %w", k, err)
		}
	}
	// Published when nothing is buffered and the bucket holds them all.
	for {
		s := c.Status()
		if s.Connected && s.Buffered == 0 && s.Lag == 0 && s.Active == count {
			fmt.Printf("published %d verdicts as %s in %s, bucket revision %d\n", count, node, time.Since(now).Round(time.Millisecond), s.BucketRevision)
			cancel()
			<-done
			return nil
		}
		select {
		case err := <-done:
			if err == nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				err = fmt.Errorf("gave up after %s with %+v", limit, s)
			}
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}
