package agent

import (
	"context"
	"net/http"
	"net/netip"
	"reflect"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/desired"
	"github.com/bulwark-filter/bulwark/agent/feeds"
	"github.com/bulwark-filter/bulwark/agent/reputation"
	"github.com/bulwark-filter/bulwark/maps"
)

// feedRunner keeps one threat feed current: it refreshes on its schedule,
// keeps the last good list when an update fails, and applies changes to the
// block list (action block) or to the scorer's evidence (action score).
type feedRunner struct {
	cfg    config.Feed
	id     uint32 // list id of a block feed
	feed   *feeds.Feed
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	applied []netip.Prefix        // in the block list now (block feeds)
	score   *reputation.PrefixSet // membership (score feeds)
}

// feedSet runs every configured feed.
type feedSet struct {
	a       *Agent
	client  *http.Client
	mu      sync.Mutex
	runners map[string]*feedRunner

	entries     *prometheus.GaugeVec
	lastSuccess *prometheus.GaugeVec
	errors      *prometheus.CounterVec
	skipped     *prometheus.CounterVec
}

func newFeedSet(a *Agent) *feedSet {
	return &feedSet{
		a: a, client: &http.Client{Timeout: feeds.DefaultTimeout}, runners: map[string]*feedRunner{},
		entries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bulwark_feed_entries", Help: "Entries of the last good version of each feed.",
		}, []string{"feed"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bulwark_feed_last_success_timestamp_seconds", Help: "When each feed was last fetched and applied.",
		}, []string{"feed"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulwark_feed_errors_total", Help: "Failed feed updates by kind (fetch, http, parse, size, shrink, apply); the last good version stays.",
		}, []string{"feed", "kind"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulwark_feed_entries_skipped_total", Help: "Feed entries not applied because they cover allow-listed or protected space.",
		}, []string{"feed"}),
	}
}

func (fs *feedSet) collectors() []prometheus.Collector {
	return []prometheus.Collector{fs.entries, fs.lastSuccess, fs.errors, fs.skipped}
}

// sync starts, restarts and stops runners to match the config. A feed whose
// settings did not change keeps running; one that changed is restarted and
// keeps what it had applied until its new source gives a good list; one
// that is gone is stopped and its entries removed.
func (fs *feedSet) sync(ctx context.Context, c *config.Config, ids map[string]uint32) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	want := map[string]config.Feed{}
	for _, f := range c.Feeds {
		want[f.Name] = f
	}
	for name, r := range fs.runners {
		f, ok := want[name]
		if ok && sameFeed(f, r.cfg) && ids[name] == r.id {
			continue
		}
		r.stop()
		delete(fs.runners, name)
		if !ok || f.Action != r.cfg.Action || ids[name] != r.id {
			fs.removeEntries(r)
			fs.entries.DeleteLabelValues(name)
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
	return &feedRunner{cfg: f, id: id, feed: feeds.NewFeed(fetcher, f.AllowShrink)}
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

// refresh fetches a feed once and applies a changed list.
func (fs *feedSet) refresh(ctx context.Context, r *feedRunner) {
	log := fs.a.log.Named("feed").With("feed", r.cfg.Name)
	changed, err := r.feed.Refresh(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		kind := feeds.ErrorKind(err)
		fs.errors.WithLabelValues(r.cfg.Name, kind).Inc()
		log.Warn("feed update failed; the last good version stays in force", "kind", kind, "error", err,
			"entries", r.feed.Entries())
		fs.a.auditf(AuditRecord{Who: "feed", What: "feed.update", Target: []string{r.cfg.Name}, Result: "rejected", Detail: err.Error()})
		return
	}
	fs.lastSuccess.WithLabelValues(r.cfg.Name).Set(float64(time.Now().Unix()))
	fs.entries.WithLabelValues(r.cfg.Name).Set(float64(r.feed.Entries()))
	if !changed {
		return
	}
	list := r.feed.Current()
	if r.cfg.Action == "score" {
		set := reputation.NewPrefixSet(list.Prefixes)
		r.mu.Lock()
		r.score = set
		r.mu.Unlock()
		if sc := fs.a.scoring; sc != nil {
			sc.generation.Add(1)
		}
		log.Info("feed updated (score)", "entries", set.Len())
		fs.a.auditf(AuditRecord{Who: "feed", What: "feed.update", Target: []string{r.cfg.Name}, Result: "ok",
			Detail: "score feed"})
		return
	}
	if err := fs.applyBlock(r, list.Prefixes, log); err != nil {
		fs.errors.WithLabelValues(r.cfg.Name, "apply").Inc()
		log.Error("feed could not be applied to the block list", "error", err)
		fs.a.auditf(AuditRecord{Who: "feed", What: "feed.update", Target: []string{r.cfg.Name}, Result: "error", Detail: err.Error()})
	}
}

// applyBlock writes a block feed's new list make-before-break: every entry
// of the new list first, then what it no longer holds is deleted.
func (fs *feedSet) applyBlock(r *feedRunner, next []netip.Prefix, log interface {
	Warn(string, ...any)
	Info(string, ...any)
}) error {
	a := fs.a
	a.mu.Lock()
	defer a.mu.Unlock()
	exemptList := exemptPrefixes(a.cfg, a.ifaces)
	exempt := reputation.NewPrefixSet(exemptList)
	keep := make([]netip.Prefix, 0, len(next))
	skipped := 0
	for _, p := range next {
		if desired.ExemptOverlap(p, exempt, exemptList) {
			skipped++
			if skipped <= 10 {
				log.Warn("feed entry skipped: it covers allow-listed or protected space", "entry", p)
			}
			continue
		}
		keep = append(keep, p)
	}
	if skipped > 0 {
		fs.skipped.WithLabelValues(r.cfg.Name).Add(float64(skipped))
	}
	r.mu.Lock()
	prev := r.applied
	r.mu.Unlock()
	added, removed := feeds.Diff(prev, keep)
	entries := make([]maps.Entry, len(added))
	for i, p := range added {
		entries[i] = maps.Entry{Prefix: p, ListID: r.id}
	}
	for _, it := range a.ifaces {
		if err := it.dp.Maps.Block.Add(entries); err != nil {
			a.mapErrs.WithLabelValues("block").Inc()
			return err
		}
	}
	for _, it := range a.ifaces {
		if err := it.dp.Maps.Block.Delete(removed); err != nil {
			a.mapErrs.WithLabelValues("block").Inc()
			return err
		}
	}
	r.mu.Lock()
	r.applied = keep
	r.mu.Unlock()
	log.Info("feed applied to the block list", "entries", len(keep), "added", len(added), "removed", len(removed), "skipped", skipped)
	a.auditf(AuditRecord{Who: "feed", What: "feed.update", Target: []string{r.cfg.Name}, Result: "ok",
		Detail: "block feed: " + strconv.Itoa(len(added)) + " added, " + strconv.Itoa(len(removed)) + " removed, " + strconv.Itoa(skipped) + " skipped"})
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
	fs.a.mu.Lock()
	defer fs.a.mu.Unlock()
	for _, it := range fs.a.ifaces {
		if err := it.dp.Maps.Block.Delete(applied); err != nil {
			fs.a.log.Error("remove entries of a dropped feed", "feed", r.cfg.Name, "error", err)
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
func exemptPrefixes(c *config.Config, ifaces []*iface) []netip.Prefix {
	ps := desired.Exempt(c)
	if len(ifaces) > 0 {
		if es, err := ifaces[0].dp.Maps.Allow.Entries(); err == nil {
			for _, e := range es {
				ps = append(ps, e.Prefix)
			}
		}
	}
	return ps
}
