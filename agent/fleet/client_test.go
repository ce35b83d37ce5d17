package fleet

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	dto "github.com/prometheus/client_model/go"

	"github.com/bulwark-filter/bulwark/test/natstest"
)

// waitBound bounds every wait for convergence; it is a bound against a
// hung test on a busy machine, not an assertion on speed.
const waitBound = 3 * time.Minute

// recorder is an Applier that keeps the set it was given; with a delay,
// every Apply takes that long, as a loaded host's kernel writes may.
type recorder struct {
	mu     sync.Mutex
	set    map[netip.Prefix]Verdict
	refuse map[netip.Prefix]bool
	delay  time.Duration
}

func (r *recorder) Apply(changes []Change) map[netip.Prefix]string {
	r.mu.Lock()
	delay := r.delay
	r.mu.Unlock()
	time.Sleep(delay)
	r.mu.Lock()
	defer r.mu.Unlock()
	refused := map[netip.Prefix]string{}
	for _, c := range changes {
		switch {
		case r.refuse[c.Target]:
			refused[c.Target] = RefusedLocal
		case c.Remove:
			delete(r.set, c.Target)
		default:
			r.set[c.Target] = *c.Winner
		}
	}
	return refused
}

func (r *recorder) get(t netip.Prefix) (Verdict, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.set[t]
	return v, ok
}

// digest is Digest of the set applied, at now.
func (r *recorder) digest(now time.Time) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	set := make(map[netip.Prefix]*Verdict, len(r.set))
	for t, v := range r.set {
		set[t] = &v
	}
	return Digest(maps.All(set), now)
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.set)
}

// node is one running Client with its recorder and refusals.
type node struct {
	c        *Client
	rec      *recorder
	mu       sync.Mutex
	refusals []Refusal
	stop     func()
}

func (n *node) refused(reason string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	k := 0
	for _, r := range n.refusals {
		if r.Reason == reason {
			k++
		}
	}
	return k
}

// testOptions are Options for tests: generous caps unless a test sets them.
func testOptions(name string, urls []string, replicas int) Options {
	o := DefaultOptions()
	o.Servers, o.Node, o.Replicas = urls, name, replicas
	o.IssuerRate, o.IssuerBurst, o.MaxActive = 1e6, 1e6, 1e6
	return o
}

// start runs a Client until the test ends (or stop).
func start(t *testing.T, o Options) *node {
	t.Helper()
	n := &node{rec: &recorder{set: map[netip.Prefix]Verdict{}, refuse: map[netip.Prefix]bool{}}}
	c, err := New(o, n.rec, nil, func(r Refusal) {
		n.mu.Lock()
		n.refusals = append(n.refusals, r)
		n.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	n.c = c
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := c.Run(ctx); err != nil {
			t.Errorf("%s: Run: %v", o.Node, err)
		}
	}()
	var once sync.Once
	n.stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(n.stop)
	return n
}

// waitFor polls cond until it holds, failing the test after waitBound.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitBound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", waitBound, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitProgress polls cond like waitFor, but fails only after waitBound
// without progress (a change of what progress returns): on a busy machine
// a node that is still reading is slow, not stuck.
func waitProgress(t *testing.T, what string, progress func() string, cond func() bool) {
	t.Helper()
	last, deadline := progress(), time.Now().Add(waitBound)
	for !cond() {
		if p := progress(); p != last {
			last, deadline = p, time.Now().Add(waitBound)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no progress within %s: %s; last: %s", waitBound, what, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// converged waits until every node has read the bucket's final state and
// applied it, all in one pass: no node has anything left to publish (else
// the bucket may still change: a node checked before another's publishes
// arrive was in sync with a state that is not the last), and each node's
// digest and that of what its applier holds equal the bucket's (read
// afresh, and again after, to be sure of the second), with want verdicts.
// The applier's set is compared, not only its size: the merged set is
// applied after it changes, and an applier that holds the right number of
// verdicts may still hold an older winner.
func converged(t *testing.T, want int, nodes ...*node) string {
	t.Helper()
	progress := func() string {
		var b strings.Builder
		for i, n := range nodes {
			st := n.c.Status()
			fmt.Fprintf(&b, "node %d: connected %v, revision %d of %d, lag %d, active %d, buffered %d, applied %d; ", i,
				st.Connected, st.AppliedRevision, st.BucketRevision, st.Lag, st.Active, st.Buffered, n.rec.len())
		}
		return b.String()
	}
	var digest string
	waitProgress(t, fmt.Sprintf("every node converges on %d verdicts", want), progress, func() bool {
		for _, n := range nodes {
			if n.c.Status().Buffered != 0 {
				return false
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		bd, err := nodes[0].c.BucketDigest(ctx)
		if err != nil {
			return false
		}
		for _, n := range nodes {
			st := n.c.Status()
			if st.Digest != bd || st.Active != want || n.rec.len() != want || n.rec.digest(time.Now().Truncate(time.Second)) != bd {
				return false
			}
		}
		if again, err := nodes[0].c.BucketDigest(ctx); err != nil || again != bd {
			return false
		}
		digest = bd
		return true
	})
	return digest
}

func nthTarget(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 32)
}

func block(tgt netip.Prefix, life time.Duration) Verdict {
	now := time.Now()
	return Verdict{Target: tgt, Action: ActionBlock, Origin: "cli", Reason: "test", IssuedAt: now, Expires: now.Add(life)}
}

func mustPublish(t *testing.T, n *node, v Verdict) {
	t.Helper()
	if err := n.c.Publish(v); err != nil {
		t.Fatal(err)
	}
}

// TestPublishApplyRevoke: on a 3-node cluster with 3 replicas, verdicts of
// two issuers reach every client merged by the rule (block beats throttle,
// later expiry wins), a revoke removes a verdict everywhere, an expiring
// verdict goes, and the digests agree. Every Applier takes 100 ms a batch,
// as on a loaded host: a and b hold two verdicts from their own publishes
// before the other's arrive, so the applier's count alone says nothing of
// which won (the check of the count only failed here under load).
func TestPublishApplyRevoke(t *testing.T) {
	c := natstest.Cluster(t, 3, natstest.Options{})
	a := start(t, testOptions("a", c.URLs(), 3))
	b := start(t, testOptions("b", c.URLs()[1:], 3))
	obs := start(t, testOptions("obs", c.URLs()[2:], 3))
	for _, n := range []*node{a, b, obs} {
		n.rec.mu.Lock()
		n.rec.delay = 100 * time.Millisecond
		n.rec.mu.Unlock()
	}
	x, y, z := nthTarget(1), nthTarget(2), nthTarget(3)
	mustPublish(t, a, Verdict{Target: x, Action: ActionThrottle, Expires: time.Now().Add(2 * time.Hour)})
	mustPublish(t, b, block(x, time.Hour))
	mustPublish(t, b, block(y, time.Hour))
	mustPublish(t, a, block(y, 2*time.Hour))
	d := converged(t, 2, a, b, obs)
	for i, n := range []*node{a, b, obs} {
		if v, _ := n.rec.get(x); v.Issuer != "b" || v.Action != ActionBlock {
			t.Errorf("node %d: %v has %s %s, want b's block (block beats throttle)", i, x, v.Issuer, v.Action)
		}
		if v, _ := n.rec.get(y); v.Issuer != "a" {
			t.Errorf("node %d: %v has %s's, want a's (later expiry)", i, y, v.Issuer)
		}
		if st := n.c.Status(); st.Digest != d {
			t.Errorf("node %d: digest %s, want %s", i, st.Digest, d)
		}
	}
	if iss, ok := obs.c.Issuer(x); !ok || iss != "b" {
		t.Errorf("Issuer(%v) = %s %v, want b", x, iss, ok)
	}
	// obs revokes x: b's block and a's throttle were issued before it.
	mustPublish(t, obs, Verdict{Target: x, Action: ActionRevoke})
	mustPublish(t, a, block(z, 3*time.Second))
	converged(t, 2, a, b, obs)
	waitFor(t, "z expires everywhere", func() bool {
		for _, n := range []*node{a, b, obs} {
			if _, ok := n.rec.get(z); ok {
				return false
			}
		}
		return true
	})
	converged(t, 1, a, b, obs)
	for i, n := range []*node{a, b, obs} {
		if _, ok := n.rec.get(x); ok {
			t.Errorf("node %d: %v still in force after the revoke", i, x)
		}
	}
}

// rawKV is a plain JetStream connection to the bucket, as a rogue or buggy
// host would write it.
func rawKV(t *testing.T, url string, opts ...nats.Option) jetstream.KeyValue {
	_, kv := rawJS(t, url, opts...)
	return kv
}

// rawConn is a plain JetStream connection to url, closed when the test
// ends.
func rawConn(t *testing.T, url string, opts ...nats.Option) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// rawJS is rawKV with its JetStream context.
func rawJS(t *testing.T, url string, opts ...nats.Option) (jetstream.JetStream, jetstream.KeyValue) {
	t.Helper()
	js := rawConn(t, url, opts...)
	var kv jetstream.KeyValue
	var err error
	waitFor(t, "the bucket exists", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		kv, err = js.KeyValue(ctx, DefaultOptions().Bucket)
		return err == nil
	})
	return js, kv
}

// putRaw writes issuer's blocks on targets from to to-1 straight into the
// bucket, as another host would.
func putRaw(t *testing.T, kv jetstream.KeyValue, issuer string, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		v := block(nthTarget(i), time.Hour)
		v.Issuer = issuer
		data, err := encode(v)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = kv.Put(ctx, Key(issuer, v.Target), data)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestIssuerRateCap: with a burst of 10 and a rate of 1 per 1000 s, a rogue
// issuer that writes 30 verdicts straight into the bucket gets exactly its
// first 10 (by revision) in force on every client, 20 refused on each;
// an honest issuer's 5 are unaffected.
func TestIssuerRateCap(t *testing.T) {
	c := natstest.Cluster(t, 3, natstest.Options{})
	var nodes []*node
	for i, name := range []string{"honest", "n1", "n2"} {
		o := testOptions(name, c.URLs()[i:], 3)
		o.IssuerRate, o.IssuerBurst = 0.001, 10
		nodes = append(nodes, start(t, o))
	}
	for i := range 5 {
		mustPublish(t, nodes[0], block(nthTarget(100+i), time.Hour))
	}
	converged(t, 5, nodes...)
	putRaw(t, rawKV(t, c.URL(0)), "rogue", 0, 30)
	d := converged(t, 15, nodes...)
	for i, n := range nodes {
		for j := range 30 {
			_, ok := n.rec.get(nthTarget(j))
			if ok != (j < 10) {
				t.Errorf("node %d: rogue's verdict %d in force %v, want %v", i, j, ok, j < 10)
			}
		}
		if got := n.refused(RefusedRate); got != 20 {
			t.Errorf("node %d: %d refused for the issuer rate, want 20", i, got)
		}
		if st := n.c.Status(); st.Digest != d {
			t.Errorf("node %d: digest differs", i)
		}
	}
}

// TestInvalidValueRefused: a value that does not decode, or names another
// issuer than its key, is refused and counted on every client, never
// applied, and nothing panics; a target one host's Applier refuses is
// refused there only.
func TestInvalidValueRefused(t *testing.T) {
	c := natstest.Cluster(t, 1, natstest.Options{})
	a := start(t, testOptions("a", c.URLs(), 1))
	b := start(t, testOptions("b", c.URLs(), 1))
	mustPublish(t, a, block(nthTarget(1), time.Hour))
	converged(t, 1, a, b)
	kv := rawKV(t, c.URL(0))
	forged := block(nthTarget(2), time.Hour)
	forged.Issuer = "a"
	data, _ := encode(forged)
	for key, value := range map[string][]byte{
		Key("rogue", nthTarget(3)): []byte("{garbage"),
		Key("rogue", nthTarget(2)): data, // the value claims to be a's
		Key("rogue", nthTarget(4)): []byte(strings.Repeat(" ", MaxValueSize+1)),
	} {
		if _, err := kv.Put(context.Background(), key, value); err != nil {
			t.Fatal(err)
		}
	}
	for i, n := range []*node{a, b} {
		waitFor(t, "3 invalid values refused", func() bool { return n.refused(RefusedInvalid) == 3 })
		if n.rec.len() != 1 {
			t.Errorf("node %d: %d applied, want 1", i, n.rec.len())
		}
	}
	// b's applier refuses target 7 (allowed there): counted and reported
	// on b only, applied on a.
	b.rec.mu.Lock()
	b.rec.refuse[nthTarget(7)] = true
	b.rec.mu.Unlock()
	mustPublish(t, a, block(nthTarget(7), time.Hour))
	waitFor(t, "b refuses target 7 as locally allowed", func() bool { return b.refused(RefusedLocal) == 1 })
	waitFor(t, "a applies target 7", func() bool { _, ok := a.rec.get(nthTarget(7)); return ok })
	if _, ok := b.rec.get(nthTarget(7)); ok || a.refused(RefusedLocal) != 0 {
		t.Errorf("b applied the refused target, or a refused it")
	}
}

// streamLeader is the index of the server that leads the bucket's stream
// (servers are named n0, n1, ...), asked through server via.
func streamLeader(t *testing.T, c *natstest.Servers, via int) int {
	t.Helper()
	js, _ := rawJS(t, c.URL(via))
	leader := -1
	waitFor(t, "the bucket's stream has a leader", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, "KV_"+DefaultOptions().Bucket)
		if err != nil || s.CachedInfo().Cluster == nil {
			return false
		}
		_, err = fmt.Sscanf(s.CachedInfo().Cluster.Leader, "n%d", &leader)
		return err == nil
	})
	return leader
}

// TestKillServerDuring5000: one issuer publishes 5,000 verdicts and the
// server leading the bucket's stream is killed early in the burst, while
// the publisher, connected to another server, has puts in flight that the
// dead leader will never acknowledge: none is lost, none stays buffered;
// every client's digest equals the bucket's and holds 5,000.
func TestKillServerDuring5000(t *testing.T) {
	const total = 5000
	c := natstest.Cluster(t, 3, natstest.Options{})
	others := []*node{start(t, testOptions("o1", c.URLs(), 3)), start(t, testOptions("o2", c.URLs()[1:], 3))}
	waitFor(t, "the bucket exists", func() bool { return others[0].c.Status().Connected })
	leader := streamLeader(t, c, 0)
	follower := (leader + 1) % 3
	pub := start(t, testOptions("pub", []string{c.URL(follower)}, 3))
	waitFor(t, "the publisher is connected", func() bool { return pub.c.Status().Connected })
	for i := range total {
		mustPublish(t, pub, block(nthTarget(i), time.Hour))
	}
	waitFor(t, "the burst has begun", func() bool { return pub.c.Status().AppliedRevision >= total/50 })
	c.Kill(leader)
	t.Logf("killed the stream leader n%d at revision %d; publisher on n%d", leader, pub.c.Status().AppliedRevision, follower)
	d := converged(t, total, append(others, pub)...)
	for i, n := range others {
		if st := n.c.Status(); st.Digest != d {
			t.Errorf("node %d: digest %s, want %s", i, st.Digest, d)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	keys, err := rawKV(t, c.URL(follower)).Keys(ctx)
	if err != nil || len(keys) != total {
		t.Fatalf("bucket holds %d keys (%v), want %d", len(keys), err, total)
	}
}

// TestStalledWatcherRecreated: a watcher whose consumer stops delivering
// while its idle heartbeats go on (paused on the server: nats.go sees
// nothing wrong) is found out from the bucket's last revision: the lag
// shows the 50 revisions not read, the watcher is recreated from the next
// revision, counted, and the client converges.
func TestStalledWatcherRecreated(t *testing.T) {
	c := natstest.Cluster(t, 1, natstest.Options{})
	obs := start(t, testOptions("obs", c.URLs(), 1))
	waitFor(t, "the observer is connected", func() bool { return obs.c.Status().Connected })
	js, kv := rawJS(t, c.URL(0))
	putRaw(t, kv, "pub", 0, 10)
	waitFor(t, "the observer applies 10", func() bool { return obs.rec.len() == 10 })
	// The observer's watcher is the stream's only consumer.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream := "KV_" + DefaultOptions().Bucket
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	names := st.ConsumerNames(ctx)
	paused := 0
	for name := range names.Name() {
		if _, err := js.PauseConsumer(ctx, stream, name, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		paused++
	}
	if names.Err() != nil || paused != 1 {
		t.Fatalf("paused %d consumers (%v), want the watcher's 1", paused, names.Err())
	}
	putRaw(t, kv, "pub", 10, 60)
	waitFor(t, "the observer's lag shows the 50 not read", func() bool {
		st := obs.c.Status()
		return st.Lag == 50 && st.BucketRevision == 60
	})
	converged(t, 60, obs)
	var m dto.Metric
	if err := obs.c.m.watchRestarts.Write(&m); err != nil || m.GetCounter().GetValue() < 1 {
		t.Errorf("watch restarts counted: %v (%v), want at least 1", m.GetCounter().GetValue(), err)
	}
}

// TestExpiredTailNoLag: a bucket whose messages all expired (MaxAge 2 s,
// as on servers without per-key TTLs) keeps its stream's last sequence at
// 10 with no message left; a client that never read them has nothing to
// read: lag 0, not 10, and no watcher waiting for them; it then applies
// what comes next.
func TestExpiredTailNoLag(t *testing.T) {
	c := natstest.Cluster(t, 1, natstest.Options{})
	js := rawConn(t, c.URL(0))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: DefaultOptions().Bucket, History: 1,
		TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	putRaw(t, kv, "pub", 0, 10)
	waitFor(t, "the 10 expire from the stream", func() bool {
		s, err := js.Stream(ctx, "KV_"+DefaultOptions().Bucket)
		return err == nil && s.CachedInfo().State.Msgs == 0 && s.CachedInfo().State.LastSeq == 10
	})
	obs := start(t, testOptions("obs", c.URLs(), 1))
	waitFor(t, "the observer is connected with lag 0", func() bool {
		st := obs.c.Status()
		return st.Connected && st.Lag == 0
	})
	// Long enough now for the observer to read what comes next.
	if _, err := js.UpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: DefaultOptions().Bucket, History: 1,
		TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	putRaw(t, kv, "pub", 10, 15)
	waitFor(t, "the observer applies the 5 new", func() bool { return obs.rec.len() == 5 })
	if st := obs.c.Status(); st.AppliedRevision != 15 {
		t.Fatalf("applied revision %d, want 15", st.AppliedRevision)
	}
}

// TestDisconnectedClientConverges: a client whose only server is stopped
// keeps what it applied while others add, revoke and let verdicts expire;
// once its server is back it converges to the bucket's state.
func TestDisconnectedClientConverges(t *testing.T) {
	c := natstest.Cluster(t, 3, natstest.Options{NoAdvertise: true}) // lone must not learn of n0, n1
	pub := start(t, testOptions("pub", c.URLs()[:2], 3))
	lone := start(t, testOptions("lone", c.URLs()[2:], 3))
	for i := range 100 {
		mustPublish(t, pub, block(nthTarget(i), time.Hour))
	}
	converged(t, 100, pub, lone)
	c.Stop(2)
	waitFor(t, "lone sees the bus down", func() bool { return !lone.c.Status().Connected })
	for i := range 50 { // revoke 0..49
		mustPublish(t, pub, Verdict{Target: nthTarget(i), Action: ActionRevoke})
	}
	for i := 100; i < 300; i++ { // 200 adds
		mustPublish(t, pub, block(nthTarget(i), time.Hour))
	}
	for i := 300; i < 320; i++ { // 20 that expire while lone is away
		mustPublish(t, pub, block(nthTarget(i), 2*time.Second))
	}
	waitFor(t, "the publisher's buffer drains", func() bool { return pub.c.Status().Buffered == 0 })
	if got := lone.rec.len(); got != 100 {
		t.Fatalf("lone flushed what it enforced: %d, want 100", got)
	}
	time.Sleep(3 * time.Second) // let the 20 expire
	c.Restart(2)
	converged(t, 250, pub, lone) // 100 - 50 + 200
	for i := 300; i < 320; i++ {
		if _, ok := lone.rec.get(nthTarget(i)); ok {
			t.Fatalf("lone applied the expired %v", nthTarget(i))
		}
	}
}

// TestAllServersDown: with every server down a client keeps its verdicts,
// merges its new ones at once, buffers them and publishes each once when
// the servers are back.
func TestAllServersDown(t *testing.T) {
	c := natstest.Cluster(t, 3, natstest.Options{})
	a := start(t, testOptions("a", c.URLs(), 3))
	b := start(t, testOptions("b", c.URLs(), 3))
	for i := range 10 {
		mustPublish(t, a, block(nthTarget(i), time.Hour))
	}
	converged(t, 10, a, b)
	for i := range 3 {
		c.Kill(i)
	}
	waitFor(t, "a sees the bus down", func() bool { return !a.c.Status().Connected })
	for i := 10; i < 60; i++ {
		mustPublish(t, a, block(nthTarget(i), time.Hour))
		mustPublish(t, a, block(nthTarget(i), 2*time.Hour)) // coalesced with the first
	}
	waitFor(t, "a applies its 60 with the bus down", func() bool { return a.rec.len() == 60 })
	if st := a.c.Status(); st.Buffered != 50 || st.Active != 60 {
		t.Fatalf("bus down: buffered %d, active %d; want 50, 60", st.Buffered, st.Active)
	}
	if got := b.rec.len(); got != 10 {
		t.Fatalf("b flushed its verdicts with the bus down: %d, want 10", got)
	}
	for i := range 3 {
		c.Restart(i)
	}
	converged(t, 60, a, b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kv := rawKV(t, c.URL(0))
	for i := 10; i < 60; i++ {
		e, err := kv.Get(ctx, Key("a", nthTarget(i)))
		if err != nil {
			t.Fatal(err)
		}
		v, _, err := decode(e.Key(), e.Value(), DefaultOptions().MaxTTL)
		if err != nil || v.Expires.Sub(v.IssuedAt) < 2*time.Hour-time.Second {
			t.Fatalf("%v: %+v %v, want the 2 h verdict", nthTarget(i), v, err)
		}
	}
	// 10 puts before, one per target after: the bucket's stream has had
	// 60 messages in all (a resent put is dropped by its message ID).
	js, _ := rawJS(t, c.URL(0))
	stream, err := js.Stream(ctx, "KV_"+DefaultOptions().Bucket)
	if err != nil {
		t.Fatal(err)
	}
	if last := stream.CachedInfo().State.LastSeq; last != 60 {
		t.Fatalf("the bucket's stream had %d messages, want 60", last)
	}
}
