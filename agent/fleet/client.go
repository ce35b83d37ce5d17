package fleet

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Timing of the Client; requestTimeout bounds every request to the bus (a
// request whose server dies mid-way is never answered), and a batch of puts
// awaiting their acknowledgements. The bucket's last revision is read every
// pollEvery (and at every session start) to know the lag whatever the
// watcher delivers; a watcher behind it that delivers nothing for
// watchStall is recreated from the next revision to read (twice the
// ordered consumer's 5 s idle heartbeat, after which nats.go itself tries
// to recreate it, plus a margin).
const (
	requestTimeout = 5 * time.Second
	pollEvery      = 5 * time.Second
	watchStall     = 15 * time.Second
	publishWindow  = 256 // puts in flight at once
	tickEvery      = time.Second
	batchEntries   = 4096    // bucket entries merged per batch at most
	maxGrow        = 1 << 22 // entries the maps are sized for before a resync, at most
)

// ErrBufferFull is returned by Publish when the publish buffer is full.
var ErrBufferFull = errors.New("fleet: publish buffer full")

// Client publishes this node's verdicts to the bucket and applies the
// merged fleet set to the Applier. It is safe for concurrent use.
type Client struct {
	opts      Options
	lim       limits
	apply     Applier
	log       hclog.Logger
	onRefusal func(Refusal)
	m         *metrics

	// applyMu orders the Applier's batches (applyPending); it is taken
	// before mu, never while mu is held.
	applyMu sync.Mutex

	mu        sync.Mutex
	st        *state
	queue     []*bufItem // own verdicts to publish, in order
	queued    map[netip.Prefix]*bufItem
	conn      *nats.Conn
	kv        jetstream.KeyValue
	js        jetstream.JetStream
	perKeyTTL bool
	server    string
	lastApply time.Time
	// bucketLast is the bucket's last revision as last seen (its last
	// message's, polled, or a later one read).
	bucketLast uint64
	// next is the next revision the watch reads (0: from the start of
	// the stream); resync is whether a resync is in progress (it may span
	// several watchers and sessions; the state marks the entries it read).
	next   uint64
	resync bool
	// watchStall is watchStall (tests shorten it).
	watchStall time.Duration
	// digest is Digest of the active set when st.version was digestVersion
	// (active holds nothing expired after prune, so the set alone
	// decides it).
	digest        string
	digestVersion uint64

	applyKick   chan struct{}
	publishKick chan struct{}
	reconnected chan struct{}
}

// bufItem is one target's own verdict waiting to be published: e is the
// latest (coalesced), sending the one in flight.
type bufItem struct {
	e, sending *entry
}

// New makes a Client from validated options; apply gets the merged fleet
// set, onRefusal (may be nil) every refused verdict, for the audit log.
// Nothing connects before Run.
func New(opts Options, apply Applier, log hclog.Logger, onRefusal func(Refusal)) (*Client, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if apply == nil {
		return nil, errors.New("fleet: no applier")
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if onRefusal == nil {
		onRefusal = func(Refusal) {}
	}
	lim := limits{node: opts.Node, maxTTL: opts.MaxTTL, issuerRate: opts.IssuerRate,
		issuerBurst: opts.IssuerBurst, maxActive: opts.MaxActive}
	c := &Client{opts: opts, lim: lim, apply: apply, log: log, onRefusal: onRefusal, st: newState(lim),
		queued: map[netip.Prefix]*bufItem{}, watchStall: watchStall,
		applyKick: make(chan struct{}, 1), publishKick: make(chan struct{}, 1), reconnected: make(chan struct{}, 1)}
	c.m = newMetrics(c)
	return c, nil
}

func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Run connects (retrying forever, jittered), binds or creates the bucket,
// syncs and watches it, publishes the buffer and applies changes until ctx
// ends. Bus errors are logged and retried, never returned.
func (c *Client) Run(ctx context.Context) error {
	nc, err := nats.Connect(strings.Join(c.opts.Servers, ","), c.natsOptions()...)
	if err != nil {
		return fmt.Errorf("fleet: connect: %w", err) // only bad options get here
	}
	defer nc.Close()
	c.mu.Lock()
	c.conn = nc
	c.mu.Unlock()
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() { c.applyLoop(ctx) })
	wg.Go(func() { c.publishLoop(ctx) })
	wg.Go(func() { c.tickLoop(ctx) })
	for ctx.Err() == nil {
		if nc.IsConnected() {
			if err := c.session(ctx, nc); err != nil && ctx.Err() == nil {
				c.log.Warn("fleet session ended", "error", err)
			}
		}
		c.mu.Lock()
		c.kv, c.js = nil, nil
		c.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-c.reconnected:
		case <-time.After(time.Duration(200+rand.IntN(800)) * time.Millisecond):
		}
	}
	return nil
}

// natsOptions are the connection options: reconnect forever, jittered;
// TLS and credentials as configured.
func (c *Client) natsOptions() []nats.Option {
	o := []nats.Option{
		nats.Name("bulwark " + c.opts.Node),
		nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(500 * time.Millisecond), nats.ReconnectJitter(500*time.Millisecond, time.Second),
		nats.Timeout(requestTimeout), nats.Dialer(dialer()),
		nats.ConnectHandler(func(*nats.Conn) { kick(c.reconnected) }),
		nats.ReconnectHandler(func(*nats.Conn) { kick(c.reconnected) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				c.log.Warn("fleet bus disconnected", "error", err)
			}
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			c.log.Debug("fleet bus error", "error", err)
		}),
	}
	if c.opts.TLS.CAFile != "" {
		o = append(o, nats.RootCAs(c.opts.TLS.CAFile))
	}
	if c.opts.TLS.CertFile != "" {
		o = append(o, nats.ClientCert(c.opts.TLS.CertFile, c.opts.TLS.KeyFile))
	}
	if c.opts.CredsFile != "" {
		o = append(o, nats.UserCredentials(c.opts.CredsFile))
	}
	if c.opts.User != "" {
		o = append(o, nats.UserInfo(c.opts.User, c.opts.Password))
	}
	return o
}

// errWatchStalled ends a watch that is behind the bucket and delivered
// nothing for watchStall.
var errWatchStalled = errors.New("watcher stalled behind the bucket")

// session binds the bucket, catches up and watches until the connection
// drops or the watch ends; a stalled watcher is recreated from the next
// revision to read.
func (c *Client) session(ctx context.Context, nc *nats.Conn) error {
	// Unanswered puts (their stream leader died with them) must fail:
	// without a timeout their futures never complete.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(requestTimeout))
	if err != nil {
		return err
	}
	kv, stream, err := c.bind(ctx, js, nc.ConnectedServerVersion())
	if err != nil {
		return err
	}
	info := stream.CachedInfo()
	perKeyTTL := info.Config.SubjectDeleteMarkerTTL > 0
	readable, err := c.readableLast(ctx, stream)
	if err != nil {
		c.log.Debug("fleet bucket's last message", "error", err)
		readable = 0 // until the next poll
	}
	c.mu.Lock()
	last := c.st.lastRev
	c.kv, c.js, c.perKeyTTL, c.server = kv, js, perKeyTTL, nc.ConnectedUrlRedacted()
	c.bucketLast = readable
	// Resume after the last revision read, unless the stream no longer
	// holds what follows it: then read the whole current state again. A
	// resync cut short goes on where it stopped if the stream still
	// holds that.
	switch {
	case c.resync && c.next >= info.State.FirstSeq && c.next > 0 && c.next <= info.State.LastSeq+1:
	case last == 0 || info.State.FirstSeq > last+1 || info.State.LastSeq < last:
		c.resync, c.next = true, 0
		c.st.beginResync()
		c.st.grow(int(min(info.State.Msgs, maxGrow)))
	default:
		if c.resync {
			c.st.dropResync() // given up: no key is known to be gone
		}
		c.resync, c.next = false, last+1
	}
	c.mu.Unlock()
	kick(c.publishKick)
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	wg.Go(func() { c.pollBucket(wctx, stream) })
	// A connect or reconnect kick from before this session is not news:
	// acting on it would throw away the watch just made (every start did).
	since := nc.Stats().Reconnects
	moved := func() bool { return nc.Stats().Reconnects != since || !nc.IsConnected() }
	for {
		c.mu.Lock()
		from, resync := c.next, c.resync
		c.mu.Unlock()
		err := c.watchFrom(wctx, kv, from, resync, moved)
		if !errors.Is(err, errWatchStalled) {
			return err
		}
		c.m.watchRestarts.Inc()
		c.mu.Lock()
		c.log.Warn("fleet watcher stalled: recreating it", "after", c.watchStall, "read", c.next, "bucket", c.bucketLast)
		c.mu.Unlock()
	}
}

// watchFrom watches the bucket from revision from (0: from the start)
// until the watch ends.
func (c *Client) watchFrom(ctx context.Context, kv jetstream.KeyValue, from uint64, resync bool, moved func() bool) error {
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	// History 1: every message is its key's current value (or one being
	// replaced, read in order), so reading all of them is the whole
	// state, and faster than asking for the last per subject.
	opts := []jetstream.WatchOpt{jetstream.IncludeHistory()}
	if from > 0 {
		opts = append(opts, jetstream.ResumeFromRevision(from))
	}
	w, err := kv.WatchAll(wctx, opts...)
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	defer w.Stop()
	c.log.Debug("fleet watching", "resync", resync, "from", from, "server", c.server)
	return c.watch(ctx, w, moved)
}

// pollBucket reads the bucket's last revision (readableLast) every
// pollEvery until ctx ends, so that the lag does not depend on what the
// watcher delivers.
func (c *Client) pollBucket(ctx context.Context, stream jetstream.Stream) {
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		readable, err := c.readableLast(ctx, stream)
		if err != nil {
			c.log.Debug("fleet bucket's last message", "error", err)
			continue
		}
		c.mu.Lock()
		c.bucketLast = readable
		c.mu.Unlock()
	}
}

// readableLast is the revision of the last message the bucket's stream
// holds, 0 when it holds none: what a watcher can still deliver. The
// stream's last sequence is not: the message there may be gone (expired
// at the tail: a bucket's MaxAge, or a per-key TTL's delete marker), and
// a client that did not read it before would wait for it forever.
func (c *Client) readableLast(ctx context.Context, stream jetstream.Stream) (uint64, error) {
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	m, err := stream.GetLastMsgForSubject(rctx, "$KV."+c.opts.Bucket+".>")
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return m.Sequence, nil
}

// bind opens the bucket, creating it when missing: with per-key TTLs on a
// server of 2.11 or later, else with MaxAge = MaxTTL; it returns it with
// its stream, whose configuration says whether puts may use per-key TTLs
// (whoever created it) and whose state is where a session starts.
func (c *Client) bind(ctx context.Context, js jetstream.JetStream, version string) (jetstream.KeyValue, jetstream.Stream, error) {
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	kv, err := js.KeyValue(rctx, c.opts.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		cfg := jetstream.KeyValueConfig{Bucket: c.opts.Bucket, History: 1, Replicas: c.opts.Replicas,
			Storage: jetstream.FileStorage, Description: "Bulwark fleet verdicts"}
		if serverAtLeast(version, 2, 11) {
			cfg.LimitMarkerTTL = time.Hour
		} else {
			cfg.TTL = c.opts.MaxTTL
		}
		kv, err = js.CreateKeyValue(rctx, cfg)
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(rctx, c.opts.Bucket)
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("bucket %s: %w", c.opts.Bucket, err)
	}
	stream, err := js.Stream(rctx, "KV_"+c.opts.Bucket)
	if err != nil {
		return nil, nil, fmt.Errorf("bucket %s stream: %w", c.opts.Bucket, err)
	}
	return kv, stream, nil
}

// serverAtLeast reports whether a server version "X.Y.Z..." is at least
// major.minor.
func serverAtLeast(version string, major, minor int) bool {
	var x, y int
	if _, err := fmt.Sscanf(version, "%d.%d", &x, &y); err != nil {
		return false
	}
	return x > major || x == major && y >= minor
}

// watch reads the watcher into the state, merging in batches, until it
// ends, stalls, the connection was re-established (moved) or ctx ends. In a resync
// (c.resync set) the entries up to the initial-values marker complete the
// whole bucket: keys not read again are gone.
func (c *Client) watch(ctx context.Context, w jetstream.KeyWatcher, moved func() bool) error {
	updates := w.Updates()
	check := time.NewTicker(time.Second)
	defer check.Stop()
	delivered := time.Now()
	for {
		var first jetstream.KeyValueEntry
		var ok bool
		select {
		case <-ctx.Done():
			return nil
		case <-c.reconnected:
			if moved() {
				return errors.New("reconnected: resuming from the last revision read")
			}
			continue
		case now := <-check.C:
			c.mu.Lock()
			behind := c.bucketLast >= max(c.next, 1)
			c.mu.Unlock()
			if !behind {
				delivered = now
			} else if now.Sub(delivered) >= c.watchStall {
				return errWatchStalled
			}
			continue
		case first, ok = <-updates:
			if !ok {
				return errors.New("watch closed")
			}
		}
		delivered = time.Now()
		c.mu.Lock()
		e, n := first, 0
		for {
			if e == nil { // all initial values read
				if c.resync {
					c.st.endResync()
					c.resync = false
				}
			} else {
				c.read(e)
			}
			n++
			if n >= batchEntries || len(updates) == 0 {
				break
			}
			if e, ok = <-updates; !ok {
				break
			}
		}
		c.settle()
		c.mu.Unlock()
	}
}

// read takes one watched entry into the state (c.mu held).
func (c *Client) read(e jetstream.KeyValueEntry) {
	rev := e.Revision()
	c.next = rev + 1
	c.bucketLast = max(c.bucketLast, rev+e.Delta())
	if e.Operation() == jetstream.KeyValuePut {
		c.st.put(e.Key(), e.Value(), rev, e.Created())
	} else {
		c.st.del(e.Key(), rev)
	}
}

// lag is how many revisions of the bucket are not read yet (c.mu held).
func (c *Client) lag() uint64 {
	if c.bucketLast > c.st.lastRev {
		return c.bucketLast - c.st.lastRev
	}
	return 0
}

// settle merges what changed, hands the changes to the apply loop (the
// state's out, coalesced per target) and reports refusals (c.mu held).
func (c *Client) settle() {
	v := c.st.version
	c.st.process()
	if c.st.version != v {
		kick(c.applyKick)
	}
	for _, r := range c.st.takeRefusals() {
		c.m.refused.WithLabelValues(r.Reason).Inc()
		c.onRefusal(r)
	}
}

// applyLoop calls the Applier with the coalesced changes, one batch at a
// time, outside the Client's lock.
func (c *Client) applyLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.applyKick:
		}
		c.applyMu.Lock()
		c.applyPending()
		c.applyMu.Unlock()
	}
}

// applyPending hands the changes merged so far to the Applier and returns
// what it refused (c.applyMu held). Batches reach the Applier in the order
// they were merged, whoever calls (the apply loop, PublishAndApply):
// applyMu is held from taking a batch to the end of its Apply, else an
// older batch taken first could be written after a newer one and stay. A
// target the Applier refuses is counted and reported as RefusedInvalid if
// it says so, else as RefusedLocal.
func (c *Client) applyPending() map[netip.Prefix]string {
	c.mu.Lock()
	if len(c.st.out) == 0 {
		c.mu.Unlock()
		return nil
	}
	batch := c.st.takeChanges()
	c.mu.Unlock()
	refused := c.apply.Apply(batch)
	now := time.Now()
	for _, ch := range batch {
		// A batch may hold a remove and then a put of one target (what
		// was there went, and came again): a refusal is the put's.
		if reason, no := refused[ch.Target]; no && !ch.Remove {
			if reason != RefusedInvalid {
				reason = RefusedLocal
			}
			c.m.refused.WithLabelValues(reason).Inc()
			c.onRefusal(Refusal{Verdict: *ch.Winner, Reason: reason})
			continue
		}
		c.m.applied.Inc()
		if !ch.Remove && ch.Winner.Issuer != c.opts.Node {
			c.m.propagation.Observe(now.Sub(ch.Winner.IssuedAt).Seconds())
		}
	}
	c.mu.Lock()
	c.lastApply = now
	c.st.giveBack(batch)
	c.mu.Unlock()
	return refused
}

// tickLoop expires verdicts every second (at whole seconds, as the digest
// counts them).
func (c *Client) tickLoop(ctx context.Context) {
	t := time.NewTicker(tickEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c.mu.Lock()
			c.st.prune(now.Truncate(time.Second))
			c.settle()
			c.mu.Unlock()
		}
	}
}

// Publish hands one of this node's verdicts to the fleet: it is merged
// locally at once and published when the bus is up, coalesced per target
// (a newer verdict on a target replaces an unpublished one). Issuer
// defaults to the node, IssuedAt to now, a revoke's Expires to the latest
// expiry among what it cancels (or MaxTTL); every life is capped at
// MaxTTL. It never blocks; it fails on an invalid verdict and, with
// ErrBufferFull, when Options.Buffer targets wait already.
func (c *Client) Publish(v Verdict) error {
	if v.Issuer == "" {
		v.Issuer = c.opts.Node
	}
	if v.Issuer != c.opts.Node {
		return fmt.Errorf("fleet: publish as %q: this node is %q", v.Issuer, c.opts.Node)
	}
	if v.IssuedAt.IsZero() {
		v.IssuedAt = time.Now()
	}
	v.Target = v.Target.Masked()
	v.IssuedAt = v.IssuedAt.UTC().Round(0)
	c.mu.Lock()
	defer c.mu.Unlock()
	if v.Action == ActionRevoke && v.Expires.IsZero() {
		v.Expires = c.latestExpiry(v.Target)
	}
	if limit := v.IssuedAt.Add(c.opts.MaxTTL); v.Expires.After(limit) {
		v.Expires = limit
	}
	v.Expires = v.Expires.UTC().Round(0)
	if _, err := check(v, c.opts.MaxTTL); err != nil {
		return fmt.Errorf("fleet: publish: %w", err)
	}
	if _, err := encode(v); err != nil {
		return fmt.Errorf("fleet: publish: %w", err)
	}
	it := c.queued[v.Target]
	if it == nil && len(c.queued) >= c.opts.Buffer {
		c.m.refused.WithLabelValues(RefusedBuffer).Inc()
		c.onRefusal(Refusal{Verdict: v, Reason: RefusedBuffer})
		return ErrBufferFull
	}
	e := c.st.publish(v)
	if it == nil {
		it = &bufItem{}
		c.queued[v.Target] = it
		c.queue = append(c.queue, it)
	}
	it.e = e
	c.settle()
	kick(c.publishKick)
	return nil
}

// PublishAndApply is Publish, and then applies the merged set's pending
// changes before it returns, in order with the apply loop: what the
// Applier gets for v's target is the merged winner (v, or a stronger or
// longer verdict in force, which v then does not replace), never v
// itself. refused is the Applier's reason for v's target, if it refused
// the change this made there. It blocks for the Applier, as the apply
// loop does; it must not be called with a lock the Applier takes.
func (c *Client) PublishAndApply(v Verdict) (refused string, err error) {
	c.applyMu.Lock() // the batch with v's change is this one's
	defer c.applyMu.Unlock()
	if err := c.Publish(v); err != nil {
		return "", err
	}
	return c.applyPending()[v.Target.Masked()], nil
}

// latestExpiry is the latest expiry among the verdicts on target (c.mu
// held), or MaxTTL from now.
func (c *Client) latestExpiry(target netip.Prefix) time.Time {
	var latest time.Time
	if t := c.st.targets[target]; t != nil {
		for e := t.first; e != nil; e = e.next {
			if e.v.Expires.After(latest) {
				latest = e.v.Expires
			}
		}
	}
	if o := c.st.own[target]; o != nil && o.v.Expires.After(latest) {
		latest = o.v.Expires
	}
	if latest.IsZero() {
		return time.Now().Add(c.opts.MaxTTL)
	}
	return latest
}

// publishLoop sends the buffer in order while the bucket is bound, paced
// below the issuer rate cap (with a margin for the servers' clocks), up to
// publishWindow puts in flight.
func (c *Client) publishLoop(ctx context.Context) {
	rate, burst := 0.9*c.opts.IssuerRate, max(1, float64(c.opts.IssuerBurst)/2)
	tokens, last := burst, time.Now()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
			return
		case <-c.publishKick:
		case <-time.After(200 * time.Millisecond):
		}
		for ctx.Err() == nil {
			c.mu.Lock()
			js, perKeyTTL := c.js, c.perKeyTTL
			var batch []*bufItem
			for _, it := range c.queue {
				if len(batch) == publishWindow {
					break
				}
				if it.sending == nil {
					batch = append(batch, it)
				}
			}
			c.mu.Unlock()
			if js == nil || len(batch) == 0 {
				break
			}
			type put struct {
				it *bufItem
				e  *entry
				f  jetstream.PubAckFuture
			}
			var puts []put
			for _, it := range batch {
				now := time.Now()
				tokens, last = min(burst, tokens+now.Sub(last).Seconds()*rate), now
				if tokens < 1 {
					wait := time.Duration((1 - tokens) / rate * float64(time.Second))
					select {
					case <-ctx.Done():
						return
					case <-time.After(wait):
					}
					tokens, last = 1, time.Now()
				}
				tokens--
				c.mu.Lock()
				e := it.e
				it.sending = e
				c.mu.Unlock()
				f, err := c.send(js, e, perKeyTTL)
				if err != nil {
					c.mu.Lock()
					it.sending = nil
					c.mu.Unlock()
					break
				}
				puts = append(puts, put{it, e, f})
			}
			// One deadline for the whole batch: puts lost with their
			// stream leader are never answered, and waiting for each in
			// turn would hold the buffer for minutes.
			failed, expired := 0, make(chan struct{})
			deadline := time.AfterFunc(requestTimeout, func() { close(expired) })
			for _, p := range puts {
				var rev uint64
				select {
				case ack := <-p.f.Ok():
					rev = ack.Sequence
				case <-p.f.Err():
				case <-expired:
					select {
					case ack := <-p.f.Ok():
						rev = ack.Sequence
					default:
					}
				case <-ctx.Done():
					deadline.Stop()
					return
				}
				c.mu.Lock()
				p.it.sending = nil
				if rev == 0 {
					failed++
				} else {
					c.m.published.Inc()
					c.st.acked(p.e, rev)
					if p.it.e == p.e {
						c.dequeue(p.it)
					}
					c.settle()
				}
				c.mu.Unlock()
			}
			deadline.Stop()
			if failed > 0 {
				c.log.Warn("fleet puts not acknowledged: sending them again", "puts", failed)
			}
			if failed > 0 || len(puts) < len(batch) {
				break
			}
		}
	}
}

// send puts one own verdict into the bucket asynchronously, with a message
// ID that lets the server drop a resent duplicate, and a per-key TTL where
// the bucket has them.
func (c *Client) send(js jetstream.JetStream, e *entry, perKeyTTL bool) (jetstream.PubAckFuture, error) {
	data, err := encode(e.v)
	if err != nil {
		return nil, err
	}
	key := Key(e.v.Issuer, e.v.Target)
	msg := nats.NewMsg("$KV." + c.opts.Bucket + "." + key)
	msg.Data = data
	id := fmt.Sprintf("%s-%s-%d-%d", key, e.v.Action, e.v.IssuedAt.UnixNano(), e.v.Expires.UnixNano())
	opts := []jetstream.PublishOpt{jetstream.WithMsgID(id)}
	if perKeyTTL {
		ttl := max(time.Until(e.v.Expires)+ttlSlack, time.Second)
		opts = append(opts, jetstream.WithMsgTTL(ttl.Round(time.Second)))
	}
	return js.PublishMsgAsync(msg, opts...)
}

// dequeue removes a published item from the buffer (c.mu held).
func (c *Client) dequeue(it *bufItem) {
	delete(c.queued, it.e.v.Target)
	for i, x := range c.queue {
		if x == it {
			c.queue = append(c.queue[:i], c.queue[i+1:]...)
			break
		}
	}
}

// Status is the Client's view for `bulwark fleet status`; Digest covers the
// merged set at the current whole second.
func (c *Client) Status() Status {
	now := time.Now().Truncate(time.Second)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.st.prune(now)
	c.settle()
	s := Status{Node: c.opts.Node, Servers: c.opts.Servers, AppliedRevision: c.st.lastRev,
		BucketRevision: max(c.bucketLast, c.st.lastRev), Lag: c.lag(), Buffered: len(c.queued), Active: c.st.active,
		Digest: c.activeDigest(now), LastApplied: c.lastApply}
	if c.conn != nil && c.conn.IsConnected() && c.kv != nil {
		s.Connected, s.Server = true, c.server
	}
	return s
}

// activeDigest is the digest of the merged set, pruned at now (c.mu held):
// computed again only when the set changed.
func (c *Client) activeDigest(now time.Time) string {
	if c.digest == "" || c.digestVersion != c.st.version {
		c.digest, c.digestVersion = Digest(c.st.activeSet(), now), c.st.version
	}
	return c.digest
}

// Issuer is the issuer of the verdict in force on target, for `verdicts
// list`.
func (c *Client) Issuer(target netip.Prefix) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v := c.st.activeOn(target.Masked()); v != nil {
		return v.Issuer, true
	}
	return "", false
}

// BucketDigest reads the bucket's current state afresh and returns the
// digest of its merged set at the current whole second, to compare with
// Status().Digest.
func (c *Client) BucketDigest(ctx context.Context) (string, error) {
	c.mu.Lock()
	kv := c.kv
	c.mu.Unlock()
	if kv == nil {
		return "", errors.New("fleet: not connected to the bucket")
	}
	st := newState(c.lim)
	st.noOut = true
	if err := readAll(ctx, kv, st); err != nil {
		return "", err
	}
	now := time.Now().Truncate(time.Second)
	st.prune(now)
	st.process()
	return Digest(st.activeSet(), now), nil
}

// readAll reads every key's current value into st.
func readAll(ctx context.Context, kv jetstream.KeyValue, st *state) error {
	ctx, cancel := context.WithTimeout(ctx, 10*requestTimeout)
	defer cancel()
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("fleet: read bucket: %w", err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("fleet: read bucket: %w", ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("fleet: read bucket: watch closed")
			}
			if e == nil {
				return nil
			}
			if e.Operation() == jetstream.KeyValuePut {
				st.put(e.Key(), e.Value(), e.Revision(), e.Created())
			} else {
				st.del(e.Key(), e.Revision())
			}
		}
	}
}
