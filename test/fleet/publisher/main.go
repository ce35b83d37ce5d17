// Command publisher fills a fleet's bucket for the fleet tests: it runs
// the real fleet client (agent/fleet), -issuers clients in parallel named
// NODE-1, NODE-2..., publishes -count block verdicts among them and exits
// once the bucket has them all. The
// tests run it inside a namespace of the testbed (ip netns exec), as a
// host of the fleet without XDP.
//
//	publisher -servers nats://198.19.0.1:4222,... -count 1000000 -issuers 8 -v6
//
// Targets: 198.18.128.0 onwards (IPv4, at most 32,768), or with -v6
// 2001:2:0:ff::<k>/128.
package main

import (
	"context"
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
	node := flag.String("node", "filler", "the issuers' name prefix: NODE-1, NODE-2...")
	count := flag.Int("count", 1000, "verdicts to publish, in all")
	issuers := flag.Int("issuers", 1, "clients publishing in parallel, each its share of the targets under its own name")
	batch := flag.Int("batch", 2000, "verdicts each client publishes before waiting until the bucket has them")
	replicas := flag.Int("replicas", 3, "the bucket's replicas, if this client creates it")
	ttl := flag.Duration("ttl", time.Hour, "the verdicts' life")
	v6 := flag.Bool("v6", false, "IPv6 /128 targets (up to 2^32) instead of IPv4 (up to 32,768)")
	limit := flag.Duration("timeout", 10*time.Minute, "give up after this long")
	flag.Parse()
	if *count < 1 || (!*v6 && *count > 32768) || *issuers < 1 || *issuers > *count || *batch < 1 {
		fmt.Fprintf(os.Stderr, "publisher: -count %d, -issuers %d, -batch %d: want 1 <= issuers <= count (at most 32,768 IPv4 targets; more with -v6), batch >= 1\n", *count, *issuers, *batch)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *limit)
	defer cancel()
	start := time.Now()
	errs := make(chan error, *issuers)
	for i := range *issuers {
		// Issuer i publishes targets k with k mod issuers == i.
		var ks []int
		for k := i; k < *count; k += *issuers {
			ks = append(ks, k)
		}
		name := fmt.Sprintf("%s-%d", *node, i+1)
		go func() {
			errs <- publish(ctx, strings.Split(*servers, ","), name, ks, *count, *batch, *replicas, *ttl, *v6)
		}()
	}
	var failed bool
	for range *issuers {
		if err := <-errs; err != nil {
			fmt.Fprintln(os.Stderr, "publisher:", err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
	fmt.Printf("published %d verdicts as %d issuers in %s\n", *count, *issuers, time.Since(start).Round(time.Millisecond))
}

// publish runs one client as node and publishes the targets ks, batch by
// batch: each batch once the bucket has the one before (the client's
// buffer is kept small). total is the count of every issuer's targets.
func publish(ctx context.Context, servers []string, node string, ks []int, total, batch, replicas int, ttl time.Duration, v6 bool) error {
	o := fleet.DefaultOptions()
	o.Servers, o.Node, o.Replicas = servers, node, replicas
	o.IssuerRate, o.IssuerBurst, o.MaxActive, o.Buffer = 1e6, len(ks), total, batch
	c, err := fleet.New(o, none{}, hclog.NewNullLogger(), nil)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for lo := 0; lo < len(ks); lo += batch {
		now := time.Now()
		hi := min(lo+batch, len(ks))
		for _, k := range ks[lo:hi] {
			v := fleet.Verdict{Target: Target(k, v6), Action: fleet.ActionBlock, Issuer: node, Origin: "cli",
				Reason: "fleet test filler", IssuedAt: now, Expires: now.Add(ttl)}
			if err := c.Publish(v); err != nil {
				return fmt.Errorf("%s: publish %d: %w", node, k, err)
			}
		}
		for {
			s := c.Status()
			if s.Connected && s.Buffered == 0 && s.Lag == 0 && s.Active >= hi {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s: gave up after %d of %d with %+v", node, lo, len(ks), s)
			case <-time.After(250 * time.Millisecond): // Status digests the whole set: not too often
			}
		}
	}
	return nil
}
