// Command publisher fills a fleet's bucket for the fleet tests: it runs
// the real fleet client (agent/fleet), -issuers clients in parallel named
// NODE-1, NODE-2..., publishes -count block verdicts among them and exits
// once the bucket has them all. The
// tests run it inside a namespace of the testbed (ip netns exec), as a
// host of the fleet without XDP.
//
//	publisher -servers nats://198.19.0.1:4222,... -count 1000000 -issuers 8 -v6
//
// With -rate it publishes at that many verdicts per second instead, as one
// issuer, and prints a line per verdict as it goes, for the propagation
// benchmark to time each one from its Publish call:
//
//	sent K TARGET MONO_NS
//
// (K from 0, MONO_NS the CLOCK_MONOTONIC time in nanoseconds, taken just
// before the line is written and the verdict handed to Publish); then it
// waits, as in batches, until the bucket has them all, reads the bucket's
// stream back and prints when the stream stored each one (the server's
// timestamp, Unix ns):
//
//	stored K UNIX_NS
//
// With -raw it fills the bucket fast for the cold sync benchmark: one
// client creates the bucket (as an agent would) and stops, then the
// verdicts of -issuers issuers go straight into the bucket's stream, each
// the value fleet.EncodeValue makes under fleet.Key, as asynchronous puts
// (the client paces its own puts under the issuer rate cap; a fill of 1M
// through it takes many minutes).
//
// Targets: 198.18.128.0 onwards (IPv4, at most 32,768), or with -v6
// 2001:2:0:ff::<k>/128.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sys/unix"

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
	raw := flag.Bool("raw", false, "put the encoded values straight into the bucket (after a client created it), as fast as the servers take them")
	rate := flag.Int("rate", 0, "publish this many verdicts per second as one issuer, printing each one's Publish time (0: in batches, as fast as the bucket takes them)")
	flag.Parse()
	if *count < 1 || (!*v6 && *count > 32768) || *issuers < 1 || *issuers > *count || *batch < 1 || *rate < 0 || (*rate > 0 && *issuers != 1) {
		fmt.Fprintf(os.Stderr, "publisher: -count %d, -issuers %d, -batch %d, -rate %d: want 1 <= issuers <= count (at most 32,768 IPv4 targets; more with -v6), batch >= 1, rate >= 0 (with one issuer)\n", *count, *issuers, *batch, *rate)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *limit)
	defer cancel()
	start := time.Now()
	if *raw {
		if err := fill(ctx, strings.Split(*servers, ","), *node, *count, *issuers, *replicas, *ttl, *v6); err != nil {
			fmt.Fprintln(os.Stderr, "publisher:", err)
			os.Exit(1)
		}
		fmt.Printf("put %d verdicts of %d issuers straight into the bucket in %s\n", *count, *issuers, time.Since(start).Round(time.Millisecond))
		return
	}
	if *rate > 0 {
		name := *node + "-1"
		if err := paced(ctx, os.Stdout, strings.Split(*servers, ","), name, *count, *rate, *replicas, *ttl, *v6); err != nil {
			fmt.Fprintln(os.Stderr, "publisher:", err)
			os.Exit(1)
		}
		fmt.Printf("published %d verdicts as %s at %d/s in %s\n", *count, name, *rate, time.Since(start).Round(time.Millisecond))
		return
	}
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

// start runs one client as node, with room for buffer unpublished
// verdicts and total active ones; stop ends it.
func start(ctx context.Context, servers []string, node string, total, buffer, burst, replicas int) (c *fleet.Client, stop func(), err error) {
	o := fleet.DefaultOptions()
	o.Servers, o.Node, o.Replicas = servers, node, replicas
	o.IssuerRate, o.IssuerBurst, o.MaxActive, o.Buffer = 1e6, burst, total, buffer
	c, err = fleet.New(o, none{}, hclog.NewNullLogger(), nil)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	return c, func() { cancel(); <-done }, nil
}

// verdict is node's block verdict on target k, issued at now.
func verdict(node string, k int, v6 bool, now time.Time, ttl time.Duration) fleet.Verdict {
	return fleet.Verdict{Target: Target(k, v6), Action: fleet.ActionBlock, Issuer: node, Origin: "cli",
		Reason: "fleet test filler", IssuedAt: now, Expires: now.Add(ttl)}
}

// waitBucket waits until c is connected, has published all it buffered,
// has read the bucket to its end and has at least active verdicts.
func waitBucket(ctx context.Context, c *fleet.Client, node string, active int) error {
	for {
		s := c.Status()
		if s.Connected && s.Buffered == 0 && s.Lag == 0 && s.Active >= active {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: gave up waiting for %d active with %+v", node, active, s)
		case <-time.After(250 * time.Millisecond): // Status digests the whole set: not too often
		}
	}
}

// publish runs one client as node and publishes the targets ks, batch by
// batch: each batch once the bucket has the one before (the client's
// buffer is kept small). total is the count of every issuer's targets.
func publish(ctx context.Context, servers []string, node string, ks []int, total, batch, replicas int, ttl time.Duration, v6 bool) error {
	c, stop, err := start(ctx, servers, node, total, batch, len(ks), replicas)
	if err != nil {
		return err
	}
	defer stop()
	for lo := 0; lo < len(ks); lo += batch {
		now := time.Now()
		hi := min(lo+batch, len(ks))
		for _, k := range ks[lo:hi] {
			if err := c.Publish(verdict(node, k, v6, now, ttl)); err != nil {
				return fmt.Errorf("%s: publish %d: %w", node, k, err)
			}
		}
		if err := waitBucket(ctx, c, node, hi); err != nil {
			return fmt.Errorf("after %d of %d: %w", lo, len(ks), err)
		}
	}
	return nil
}

// fill creates the bucket with a client (node-1), stops it, then puts
// count verdicts (target k issued by node-(k mod issuers + 1)) straight
// into the bucket with asynchronous publishes, at most fillWindow
// unacknowledged, and waits for every acknowledgement.
func fill(ctx context.Context, servers []string, node string, count, issuers, replicas int, ttl time.Duration, v6 bool) error {
	c, stop, err := start(ctx, servers, node+"-1", count, 1, 1, replicas)
	if err != nil {
		return err
	}
	err = waitBucket(ctx, c, node+"-1", 0)
	stop()
	if err != nil {
		return err
	}
	nc, err := nats.Connect(strings.Join(servers, ","))
	if err != nil {
		return fmt.Errorf("fill: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(fillWindow))
	if err != nil {
		return fmt.Errorf("fill: %w", err)
	}
	prefix := "$KV." + fleet.DefaultOptions().Bucket + "."
	now := time.Now()
	futures := make([]jetstream.PubAckFuture, 0, fillWindow)
	wait := func() error {
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return fmt.Errorf("fill: put %s: %w", f.Msg().Subject, err)
			case <-ctx.Done():
				return fmt.Errorf("fill: gave up waiting for acknowledgements: %w", ctx.Err())
			}
		}
		futures = futures[:0]
		return nil
	}
	for k := range count {
		name := fmt.Sprintf("%s-%d", node, k%issuers+1)
		v := verdict(name, k, v6, now, ttl)
		data, err := fleet.EncodeValue(v)
		if err != nil {
			return fmt.Errorf("fill: %w", err)
		}
		f, err := js.PublishAsync(prefix+fleet.Key(name, v.Target), data)
		if err != nil {
			return fmt.Errorf("fill: put %d: %w", k, err)
		}
		if futures = append(futures, f); len(futures) == fillWindow {
			if err := wait(); err != nil {
				return err
			}
		}
	}
	return wait()
}

// fillWindow is how many of fill's puts may await their acknowledgement.
const fillWindow = 4096

// paced runs one client as node, waits until it is connected, then
// publishes targets 0..count-1 at rate per second (target k at k/rate
// seconds from the first), writing a "sent K TARGET MONO_NS" line to out
// for each before it publishes it; then it waits until the bucket has them
// all and writes a "stored K UNIX_NS" line for each (stored).
func paced(ctx context.Context, out io.Writer, servers []string, node string, count, rate, replicas int, ttl time.Duration, v6 bool) error {
	c, stop, err := start(ctx, servers, node, count, count, count, replicas)
	if err != nil {
		return err
	}
	defer stop()
	if err := waitBucket(ctx, c, node, 0); err != nil {
		return err
	}
	first := time.Now()
	for k := 0; k < count; {
		due := min(count, int(time.Since(first).Seconds()*float64(rate))+1)
		for ; k < due; k++ {
			v := verdict(node, k, v6, time.Now(), ttl)
			// The line goes out before the verdict: the reader learns of
			// it before it can arrive anywhere (the time is taken first,
			// so the write counts in the delay: a few microseconds).
			if _, err := fmt.Fprintf(out, "sent %d %s %d\n", k, v.Target.Addr(), monoNow()); err != nil {
				return fmt.Errorf("write the sent lines: %w", err)
			}
			if err := c.Publish(v); err != nil {
				return fmt.Errorf("%s: publish %d: %w", node, k, err)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: gave up after %d of %d", node, k, count)
		case <-time.After(time.Millisecond):
		}
	}
	if err := waitBucket(ctx, c, node, count); err != nil {
		return err
	}
	keys := make(map[string]int, count)
	for k := range count {
		keys[fleet.Key(node, Target(k, v6))] = k
	}
	return stored(ctx, out, servers, keys)
}

// stored reads the bucket's stream from its start and writes a "stored K
// UNIX_NS" line for each message under one of keys (key -> K): the time
// the stream stored it, as the server stamped it.
func stored(ctx context.Context, out io.Writer, servers []string, keys map[string]int) error {
	nc, err := nats.Connect(strings.Join(servers, ","))
	if err != nil {
		return fmt.Errorf("stored times: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("stored times: %w", err)
	}
	left := maps.Clone(keys)
	// A read that fails (a server of the cluster busy or electing a
	// leader: "no responders") starts again after a pause, from the
	// stream's first message, for up to storedRetry; a key is written
	// once.
	until := time.Now().Add(storedRetry)
	for {
		err := storedRead(ctx, out, js, left)
		if err == nil || errors.Is(err, errWrite) {
			return err
		}
		if time.Now().After(until) {
			return fmt.Errorf("stored times: %d verdicts not found in the stream (%v)", len(left), err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stored times: %d verdicts not found in the stream (%v)", len(left), err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// storedRetry bounds the time stored spends reading again after a failed
// read.
const storedRetry = 30 * time.Second

// errWrite marks a failed write of the stored lines: not retried.
var errWrite = errors.New("write the stored lines")

// storedRead reads the bucket's stream from its first message and writes
// a stored line for each message under a key of left, deleting the key.
func storedRead(ctx context.Context, out io.Writer, js jetstream.JetStream, left map[string]int) error {
	bucket := fleet.DefaultOptions().Bucket
	stream, err := js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		return err
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return err
	}
	prefix := "$KV." + bucket + "."
	for len(left) > 0 {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return err
		}
		got := 0
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				return err
			}
			key := strings.TrimPrefix(m.Subject(), prefix)
			if k, ok := left[key]; ok {
				if _, err := fmt.Fprintf(out, "stored %d %d\n", k, md.Timestamp.UnixNano()); err != nil {
					return fmt.Errorf("%w: %v", errWrite, err)
				}
				delete(left, key)
			}
		}
		if err := batch.Error(); err != nil {
			return err
		}
		if got == 0 {
			return fmt.Errorf("%d verdicts not found in the stream", len(left))
		}
	}
	return nil
}

// monoNow is CLOCK_MONOTONIC in nanoseconds: one clock for every process
// of the host, so the reader compares its own readings with these.
func monoNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	return ts.Nano()
}
