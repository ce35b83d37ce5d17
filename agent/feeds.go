package agent

import (
	"context"
	"net/http"
	"net/netip"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/desired"
	"github.com/bulwark-filter/bulwark/agent/feeds"
	"github.com/bulwark-filter/bulwark/agent/guard"
	"github.com/bulwark-filter/bulwark/agent/reputation"
	"github.com/bulwark-filter/bulwark/maps"
)

// feedRunner keeps one threat feed current: it refreshes on its schedule,
// keeps the last good list when an update fails or grows too much at once,
// screens it with the safety rails, and applies it to the block list
// (action block) or to the scorer's evidence (action score).
type feedRunner struct {
	cfg    config.Feed
	id     uint32 // list id of a block feed
	feed   *feeds.Feed
	cancel context.CancelFunc
	done   chan struct{}
	kick   chan struct{} // refresh now (the safety config changed)

	// guard is what the refresh in progress screens with; only the
	// runner's goroutine uses it (feed.Growth reads it).
	guard *guard.Guard
	// refused counts, by reason, the entries of the version in force that
	// the guard refused when they were last logged.
	refused map[string]int

	mu      sync.Mutex
	applied []netip.Prefix        // in the block list now (block feeds)
	score   *reputation.PrefixSet // membership (score feeds)
}

// blockWriter is a block list the feeds write their entries into: one per
// interface.
type blockWriter interface {
	Add(entries []maps.Entry) error
	// DeleteMany deletes prefixes, hosts in batches: a feed may drop
	// thousands at a time.
	DeleteMany(prefixes []netip.Prefix) error
}

// listReader reads a list's entries (the allow list, which no feed or
// verdict may overlap).
type listReader interface {
	Entries() ([]maps.Entry, error)
}

// feedDeps is what the feed runners use of the agent.
type feedDeps struct {
	log   hclog.Logger
	audit *Audit
	// writers serialises the writers of the block lists (the feeds, the
	// CLI, config reconciles); the feeds hold it while they screen and
	// write, so the allow list cannot change in between.
	writers sync.Locker
	block   []blockWriter // every interface's block list
	allow   listReader    // the first interface's allow list; nil for none
	mapErrs *prometheus.CounterVec
	// evidence is the scorer's evidence generation, bumped when a score
	// feed changes.
	evidence *atomic.Uint32
}

// feedSet runs every configured feed.
type feedSet struct {
	feedDeps
	client  *http.Client
	cfg     atomic.Pointer[config.Config] // the config the runners were last synced with
	mu      sync.Mutex
	runners map[string]*feedRunner
	safety  config.Safety // the runners were last synced with

	entries     *prometheus.GaugeVec
	lastSuccess *prometheus.GaugeVec
	errors      *prometheus.CounterVec
	refused     *prometheus.GaugeVec
}

func newFeedSet(d feedDeps) *feedSet {
	return &feedSet{
		feedDeps: d, client: &http.Client{Timeout: feeds.DefaultTimeout}, runners: map[string]*feedRunner{},
		entries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bulwark_feed_entries", Help: "Entries of the last good version of each feed.",
		}, []string{"feed"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bulwark_feed_last_success_timestamp_seconds", Help: "When each feed was last fetched and applied.",
		}, []string{"feed"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulwark_feed_errors_total", Help: "Failed feed updates by kind (fetch, http, parse, size, shrink, growth, host, apply); the last good version stays.",
		}, []string{"feed", "kind"}),
		refused: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bulwark_feed_entries_refused", Help: "Entries of each feed's version in force that the safety rails refused, by reason: too_broad (shorter than safety.min_prefix_ipv4/ipv6) or protected (overlaps a host address, a default gateway, the allow list or reputation.protect).",
		}, []string{"feed", "reason"}),
	}
}

func (fs *feedSet) collectors() []prometheus.Collector {
	return []prometheus.Collector{fs.entries, fs.lastSuccess, fs.errors, fs.refused}
}

// sync starts, restarts and stops runners to match the config. A feed whose
// settings did not change keeps running; one that changed is restarted and
// keeps what it had applied until its new source gives a good list; one
// that is gone is stopped and its entries removed.
func (fs *feedSet) sync(ctx context.Context, c *config.Config, ids map[string]uint32) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.cfg.Store(c)
	want := map[string]config.Feed{}
	for _, f := range c.Feeds {
		want[f.Name] = f
	}
	kick := fs.safety != c.Safety
	fs.safety = c.Safety
	for name, r := range fs.runners {
		f, ok := want[name]
		if ok && sameFeed(f, r.cfg) && ids[name] == r.id {
			if kick {
				// New limits: screen the version in force again now.
				select {
				case r.kick <- struct{}{}:
				default:
				}
			}
			continue
		}
		r.stop()
		delete(fs.runners, name)
		if !ok || f.Action != r.cfg.Action || ids[name] != r.id {
			fs.removeEntries(r)
			fs.entries.DeleteLabelValues(name)
			for _, reason := range []string{guard.ReasonBroad, guard.ReasonProtected} {
				fs.refused.DeleteLabelValues(name, reason)
			}
			continue
		}
		nr := fs.newRunner(f, ids[name])
		nr.applied = r.applied
		fs.runners[name] = nr
		nr.start(ctx, fs)
	}
	for name, f := range want {
		if _, ok := fs.runners[name]; ok {
			continue
		}
		r := fs.newRunner(f, ids[name])
		fs.runners[name] = r
		r.start(ctx, fs)
	}
}

func sameFeed(a, b config.Feed) bool {
	a.Range, b.Range = hcl.Range{}, hcl.Range{}
	return reflect.DeepEqual(a, b)
}

func (fs *feedSet) newRunner(f config.Feed, id uint32) *feedRunner {
	fetcher := feeds.NewFetcher(feeds.SourceFromConfig(f), fs.client)
	fetcher.Version = Version
	r := &feedRunner{cfg: f, id: id, feed: feeds.NewFeed(fetcher, f.AllowShrink), kick: make(chan struct{}, 1)}
	// Growth is judged on what the safety rails would let through.
	r.feed.Growth = func(prev, next []netip.Prefix) error { return r.guard.Growth(prev, next) }
	return r
}

func (r *feedRunner) start(ctx context.Context, fs *feedSet) {
	ctx, r.cancel = context.WithCancel(ctx)
	r.done = make(chan struct{})
	go func() {
		defer close(r.done)
		for {
			fs.refresh(ctx, r)
			select {
			case <-ctx.Done():
				return
			case <-r.kick:
			case <-time.After(feeds.NextRefresh(r.cfg.Refresh, feeds.DefaultJitter, nil)):
			}
		}
	}()
}

func (r *feedRunner) stop() {
	if r.cancel != nil {
		r.cancel()
		<-r.done
	}
}

// stopAll stops every runner; entries stay in the maps (fail-static).
func (fs *feedSet) stopAll() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for _, r := range fs.runners {
		r.stop()
	}
}

// refresh fetches a feed once, screens the version in force with the
// safety rails, and applies it: a block feed every time (so a new host
// address, gateway or allow entry is honoured by the next refresh, and a
// failed apply is retried), a score feed when it changed.
func (fs *feedSet) refresh(ctx context.Context, r *feedRunner) {
	log := fs.log.Named("feed").With("feed", r.cfg.Name)
	host, err := guard.Host(nil)
	if err != nil {
		fs.errors.WithLabelValues(r.cfg.Name, "host").Inc()
		log.Error("cannot read the host's addresses and gateways to protect them; the feed is not updated", "error", err)
		return
	}
	fs.writers.Lock()
	r.guard = feedGuard(fs.cfg.Load(), fs.allow, host)
	fs.writers.Unlock()
	changed, err := r.feed.Refresh(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		kind := feeds.ErrorKind(err)
		fs.errors.WithLabelValues(r.cfg.Name, kind).Inc()
		log.Warn("feed update failed; the last good version stays in force", "kind", kind, "error", err,
			"entries", r.feed.Entries())
		fs.audit.Record(fs.log, AuditRecord{Who: "feed", What: "feed.update", Target: []string{r.cfg.Name}, Result: "rejected", Detail: err.Error()})
		return
	}
	fs.lastSuccess.WithLabelValues(r.cfg.Name).Set(float64(time.Now().Unix()))
	fs.entries.WithLabelValues(r.cfg.Name).Set(float64(r.feed.Entries()))
	list := r.feed.Current()
	if r.cfg.Action == "score" {
		if !changed {
			return
		}
		kept, refused := r.guard.Screen(list.Prefixes)
		fs.countRefused(r, refused, changed, log)
		set := reputation.NewPrefixSet(kept)
		r.mu.Lock()
		r.score = set
		r.mu.Unlock()
		fs.evidence.Add(1)
		log.Info("feed updated (score)", "entries", set.Len())
		fs.audit.Record(fs.log, AuditRecord{Who: "feed", What: "feed.update", Target: []string{r.cfg.Name}, Result: "ok",
			Detail: "score feed"})
		return
	}
	if err := fs.applyBlock(r, list.Prefixes, host, changed, log); err != nil {
		fs.errors.WithLabelValues(r.cfg.Name, "apply").Inc()
		log.Error("feed could not be applied to the block list", "error", err)
		fs.audit.Record(fs.log, AuditRecord{Who: "feed", What: "feed.update", Target: []string{r.cfg.Name}, Result: "error", Detail: err.Error()})
	}
}

// feedLog is what the feed runners log through.
type feedLog interface {
	Warn(string, ...any)
	Info(string, ...any)
}

// countRefused sets the refused gauges of a feed and logs the first refused
// entries when the version changed or the counts did.
func (fs *feedSet) countRefused(r *feedRunner, refused []guard.Refusal, changed bool, log feedLog) {
	counts := map[string]int{guard.ReasonBroad: 0, guard.ReasonProtected: 0}
	for _, x := range refused {
		counts[x.Reason]++
	}
	for reason, n := range counts {
		fs.refused.WithLabelValues(r.cfg.Name, reason).Set(float64(n))
	}
	if !changed && counts[guard.ReasonBroad] == r.refused[guard.ReasonBroad] && counts[guard.ReasonProtected] == r.refused[guard.ReasonProtected] {
		return
	}
	r.refused = counts
	for i, x := range refused {
		if i == 10 {
			log.Warn("more feed entries refused", "too_broad", counts[guard.ReasonBroad], "protected", counts[guard.ReasonProtected])
			break
		}
		log.Warn("feed entry refused by the safety rails", "entry", x.Prefix, "reason", x.Reason, "detail", x.String())
	}
}

// applyBlock screens a block feed's list with the safety rails and writes
// what passes make-before-break: every new entry first, then what it no
// longer holds is deleted.
func (fs *feedSet) applyBlock(r *feedRunner, next []netip.Prefix, host []guard.Protected, changed bool, log feedLog) error {
	fs.writers.Lock()
	defer fs.writers.Unlock()
	keep, refused := feedGuard(fs.cfg.Load(), fs.allow, host).Screen(next)
	fs.countRefused(r, refused, changed, log)
	skipped := len(refused)
	r.mu.Lock()
	prev := r.applied
	r.mu.Unlock()
	added, removed := feeds.Diff(prev, keep)
	if !changed && len(added) == 0 && len(removed) == 0 {
		return nil
	}
	entries := make([]maps.Entry, len(added))
	for i, p := range added {
		entries[i] = maps.Entry{Prefix: p, ListID: r.id}
	}
	for _, b := range fs.block {
		if err := b.Add(entries); err != nil {
			fs.mapErrs.WithLabelValues("block").Inc()
			return err
		}
	}
	for _, b := range fs.block {
		if err := b.DeleteMany(removed); err != nil {
			fs.mapErrs.WithLabelValues("block").Inc()
			return err
		}
	}
	r.mu.Lock()
	r.applied = keep
	r.mu.Unlock()
	log.Info("feed applied to the block list", "entries", len(keep), "added", len(added), "removed", len(removed), "refused", skipped)
	fs.audit.Record(fs.log, AuditRecord{Who: "feed", What: "feed.update", Target: []string{r.cfg.Name}, Result: "ok",
		Detail: "block feed: " + strconv.Itoa(len(added)) + " added, " + strconv.Itoa(len(removed)) + " removed, " + strconv.Itoa(skipped) + " refused"})
	return nil
}

// removeEntries deletes a block feed's entries (its feed left the config).
func (fs *feedSet) removeEntries(r *feedRunner) {
	r.mu.Lock()
	applied := r.applied
	r.applied = nil
	r.mu.Unlock()
	if len(applied) == 0 {
		return
	}
	fs.writers.Lock()
	defer fs.writers.Unlock()
	for _, b := range fs.block {
		if err := b.DeleteMany(applied); err != nil {
			fs.log.Error("remove entries of a dropped feed", "feed", r.cfg.Name, "error", err)
		}
	}
}

// scoreHits is the scorer's evidence: the score feeds addr is in.
func (fs *feedSet) scoreHits(addr netip.Addr) []reputation.FeedHit {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	var hits []reputation.FeedHit
	for _, r := range fs.runners {
		r.mu.Lock()
		in := r.score.Contains(addr)
		r.mu.Unlock()
		if in {
			hits = append(hits, reputation.FeedHit{Feed: r.cfg.Name, Weight: r.cfg.Weight})
		}
	}
	return hits
}

// exemptPrefixes is the space no feed or scorer may block: the config's
// allow list and files, run-time allow entries, and reputation.protect.
func exemptPrefixes(c *config.Config, allow listReader) []netip.Prefix {
	var ps []netip.Prefix
	for _, p := range exemptSpace(c, allow) {
		ps = append(ps, p.Prefix)
	}
	return ps
}

// exemptSpace is exemptPrefixes with where each prefix comes from.
func exemptSpace(c *config.Config, allow listReader) []guard.Protected {
	return append(desired.Exempt(c), runtimeAllow(allow)...)
}

// runtimeAllow is the run-time allow entries (of allow; nil for none),
// protected space too.
func runtimeAllow(allow listReader) []guard.Protected {
	var ps []guard.Protected
	if allow != nil {
		if es, err := allow.Entries(); err == nil {
			for _, e := range es {
				ps = append(ps, guard.Protected{Prefix: e.Prefix, Why: "allow list"})
			}
		}
	}
	return ps
}

// feedGuard is the safety rails feed entries pass (desired.FeedGuard): the
// config's, the run-time allow entries of allow and host (the host's own
// addresses and default gateways).
func feedGuard(c *config.Config, allow listReader, host []guard.Protected) *guard.Guard {
	return desired.FeedGuard(c, append(runtimeAllow(allow), host...)...)
}
