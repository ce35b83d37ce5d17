package agent

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulwark-filter/bulwark/agent/api"
	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/crowdsec"
	"github.com/bulwark-filter/bulwark/agent/desired"
	"github.com/bulwark-filter/bulwark/agent/guard"
	"github.com/bulwark-filter/bulwark/maps"
)

// crowdSecTimeout bounds one request to the LAPI (a startup pull has
// crowdsec.StartupTimeout).
const crowdSecTimeout = 30 * time.Second

// crowdSecLink is the agent's CrowdSec bouncer (and source): it pulls the
// LAPI's decision stream, merges it into a book and writes what changed
// into every interface's maps: a decision on one source into the verdict
// map (origin crowdsec), a block on a wider range into the block list
// under desired.ListCrowdSecBlock, with the decision's expiry. What this
// host allows or protects is refused; a stronger or longer verdict of
// another origin on the same source is kept. When the LAPI cannot be
// read, what was applied stays in force; the next pull that works is a
// startup pull, diffed against what is in force.
type crowdSecLink struct {
	settings *desired.CrowdSec
	client   *crowdsec.Client
	source   *crowdsec.Source // nil without machine credentials
	log      hclog.Logger
	audit    *Audit
	writers  sync.Locker       // serialises every change of policy
	state    func() *readState // the published snapshot; nil while the agent starts
	mapErrs  *prometheus.CounterVec
	guard    atomic.Pointer[guard.Guard]

	decisions *prometheus.CounterVec // by result: applied, deleted, refused
	pulls     *prometheus.CounterVec // by result: ok, error
	lastPull  prometheus.Gauge
	active    prometheus.GaugeFunc
	alerts    *prometheus.CounterVec // by result: pushed, dropped

	mu     sync.Mutex // guards book, labels and status
	book   *crowdsec.Book
	labels map[netip.Prefix]string // source or range in force -> crowdsec:<origin>/<scenario>
	status api.CrowdSecStatus
}

// newCrowdSec makes the agent's CrowdSec link of settings (nil without a
// crowdsec block); it runs once the agent's state is published.
func (a *Agent) newCrowdSec(settings *desired.CrowdSec, cfg *config.Config, allow listReader) (*crowdSecLink, error) {
	if settings == nil {
		return nil, nil
	}
	key := ""
	if settings.APIKeyFile != "" {
		k, err := readFirstLine(settings.APIKeyFile, "crowdsec api_key_file")
		if err != nil {
			return nil, err
		}
		key = k
	}
	client, err := crowdsec.NewClient(settings.URL, key, settings.TLS, settings.Filter.Scopes, settings.Filter.Origins,
		settings.MaxBytes, crowdSecTimeout)
	if err != nil {
		return nil, err
	}
	l := &crowdSecLink{settings: settings, client: client, log: a.log.Named("crowdsec"), audit: a.audit, writers: &a.mu,
		state: a.state.Load, mapErrs: a.mapErrs, book: crowdsec.NewBook(settings.Filter), labels: map[netip.Prefix]string{}}
	if settings.Machine != "" {
		pw, err := readFirstLine(settings.PasswordFile, "crowdsec password_file")
		if err != nil {
			return nil, err
		}
		l.source, err = crowdsec.NewSource(settings.URL, settings.Machine, pw, settings.TLS, settings.PushQueue,
			settings.Interval, crowdSecTimeout)
		if err != nil {
			return nil, err
		}
	}
	l.status = api.CrowdSecStatus{LAPI: settings.URL.String(), Source: l.source != nil}
	l.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bulwark_crowdsec_decisions_total",
		Help: "CrowdSec decisions by result: applied (in force), deleted, refused (allowed or protected here, unknown type, bad value, over the cap)."},
		[]string{"result"})
	l.pulls = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bulwark_crowdsec_pulls_total",
		Help: "Pulls of the CrowdSec decision stream by result (ok, error); after an error what was applied stays in force."},
		[]string{"result"})
	l.lastPull = prometheus.NewGauge(prometheus.GaugeOpts{Name: "bulwark_crowdsec_last_pull_timestamp_seconds",
		Help: "When the CrowdSec decision stream was last read successfully, in Unix seconds."})
	l.active = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "bulwark_crowdsec_decisions_active",
		Help: "CrowdSec decisions the bouncer holds."}, func() float64 {
		l.mu.Lock()
		defer l.mu.Unlock()
		return float64(l.book.Len())
	})
	l.alerts = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bulwark_crowdsec_alerts_total",
		Help: "Bulwark verdicts sent to the CrowdSec LAPI as alerts, by result (queued, dropped: the queue was full)."},
		[]string{"result"})
	l.rebuildGuard(cfg, allow)
	return l, nil
}

// collectors are the link's metrics.
func (l *crowdSecLink) collectors() []prometheus.Collector {
	return []prometheus.Collector{l.decisions, l.pulls, l.lastPull, l.active, l.alerts}
}

// rebuildGuard recomputes the space CrowdSec decisions may not touch.
func (l *crowdSecLink) rebuildGuard(cfg *config.Config, allow listReader) {
	host, err := guard.Host(nil)
	if err != nil {
		l.log.Warn("crowdsec: cannot read the host's addresses; they are not protected from decisions until the next try", "error", err)
	}
	l.guard.Store(feedGuard(cfg, allow, host))
}

// run pulls the decision stream every interval until ctx ends, and pushes
// alerts when the link is a source. Every resync, after a pull that
// failed, and once a burst of decisions has settled, the pull is a
// startup pull: the LAPI's deltas are by time and can miss a decision
// committed while a pull ran (cs-firewall-bouncer #506), the full list
// cannot.
func (l *crowdSecLink) run(ctx context.Context) {
	if l.source != nil {
		go l.source.Run(ctx)
	}
	startup, last, dirty, full := true, time.Time{}, false, time.Duration(0)
	for {
		if startup {
			last = time.Now()
		}
		read, ok := l.pull(ctx, startup)
		if startup && ok {
			full = time.Since(last)
		}
		startup, dirty = nextPull(startup, ok, read, dirty, time.Since(last), full, l.settings.Interval, l.settings.Resync)
		select {
		case <-ctx.Done():
			return
		case <-time.After(l.settings.Interval):
		}
	}
}

// settleAfter is, in pull intervals, the least time between a startup
// pull and the one that follows a burst of decisions.
const settleAfter = 5

// fullShare spaces startup pulls by this many times the last one's
// duration: a LAPI that takes long to list every decision (crowdsec 1.4.6
// took minutes for 100,000 on a loaded machine) spends at most half of
// its time on this bouncer's full lists. More would delay the pull that
// catches what the deltas missed by as much.
const fullShare = 1

// nextPull says whether the pull after this one is a startup pull, and
// whether deltas have brought decisions since the last startup pull
// (dirty). ok and read are this pull's outcome and how many decisions it
// read; since is the time since the last startup pull began, full how
// long the last one that worked took. A failed pull or the resync period
// makes it a startup pull; so does the first quiet delta after a burst
// (a delta that read decisions), at most once every settleAfter
// intervals: a bulk import is converged a few intervals after it ends, not
// a resync later. Both wait fullShare times full after a startup pull.
func nextPull(startup, ok bool, read int, dirty bool, since, full, interval, resync time.Duration) (bool, bool) {
	resync, settle := max(resync, fullShare*full), max(settleAfter*interval, fullShare*full)
	switch {
	case !ok:
		return true, dirty
	case startup:
		return since >= resync, false
	case read > 0:
		return since >= resync, true
	}
	return since >= resync || (dirty && since >= settle), dirty
}

// pull reads the stream once and applies it; it returns how many
// decisions it read (new and deleted), and false when it failed (what is
// in force stays, and the next pull is a startup pull).
func (l *crowdSecLink) pull(ctx context.Context, startup bool) (int, bool) {
	s, err := l.client.Pull(ctx, startup)
	if err != nil {
		if ctx.Err() != nil {
			return 0, false
		}
		l.pulls.WithLabelValues("error").Inc()
		l.mu.Lock()
		first := l.status.LastError == ""
		l.status.Errors++
		l.status.LastError = err.Error()
		l.status.LastErrorAt = time.Now()
		l.status.Reachable = false
		l.mu.Unlock()
		if first {
			l.log.Warn("CrowdSec LAPI not read; the decisions applied stay in force", "error", err)
		} else {
			l.log.Debug("CrowdSec LAPI not read", "error", err)
		}
		return 0, false
	}
	began := time.Now()
	applied, deleted, refused, ok := l.apply(s, startup)
	if !ok {
		return 0, false // no interface yet: the next pull is a startup pull
	}
	took := time.Since(began)
	l.log.Debug("CrowdSec decisions pulled", "startup", startup, "new", len(s.New), "deleted", len(s.Deleted),
		"written", applied, "removed", deleted, "refused", refused, "took", took)
	l.pulls.WithLabelValues("ok").Inc()
	l.lastPull.SetToCurrentTime()
	l.decisions.WithLabelValues("applied").Add(float64(applied))
	l.decisions.WithLabelValues("deleted").Add(float64(deleted))
	l.decisions.WithLabelValues("refused").Add(float64(refused))
	l.mu.Lock()
	if l.status.LastError != "" && !l.status.Reachable {
		l.log.Info("CrowdSec LAPI read again; converged with a startup pull", "applied", applied, "deleted", deleted)
	}
	l.status.Reachable = true
	l.status.LastError = ""
	l.status.LastPull = time.Now()
	l.status.Pulls++
	if startup {
		l.status.Startups++
		l.status.LastStartupApplySeconds = took.Seconds()
		l.status.LastStartupAnswerSeconds = l.client.Answered().Seconds()
	}
	l.mu.Unlock()
	return len(s.New) + len(s.Deleted), true
}

// apply merges one stream answer into the book and writes the changes;
// it returns how many targets it wrote, deleted and refused, and false
// when there is no interface to write to (the answer is not taken).
func (l *crowdSecLink) apply(s crowdsec.Stream, startup bool) (applied, deleted, refused int, ok bool) {
	l.writers.Lock()
	defer l.writers.Unlock()
	st := l.state()
	if st == nil || len(st.ifaces) == 0 {
		return 0, 0, 0, false
	}
	now := time.Now()
	l.mu.Lock()
	var (
		changes []crowdsec.Change
		counts  crowdsec.Counts
	)
	if startup {
		changes, counts = l.book.Replace(s, now)
	} else {
		changes, counts = l.book.Merge(s, now)
	}
	var full []crowdsec.Entry
	if startup {
		full = l.book.Winners()
	}
	l.mu.Unlock()
	if counts.Refused > 0 {
		l.log.Debug("CrowdSec decisions not taken", "count", counts.Refused, "first", counts.FirstRefusal)
	}
	w := l.write(st, changes, full, now)
	l.mu.Lock()
	for _, p := range w.removed {
		delete(l.labels, p)
	}
	if len(l.labels) == 0 {
		l.labels = w.labels // a first startup pull: no copy of 100,000 labels
	} else {
		for p, lab := range w.labels {
			l.labels[p] = lab
		}
	}
	l.status.Active = len(l.labels)
	l.mu.Unlock()
	if len(w.put)+len(w.removed)+len(w.refused) > 0 || counts.Refused > 0 {
		r := AuditRecord{Who: "crowdsec", What: "crowdsec.pull", Result: "ok",
			Detail: fmt.Sprintf("startup %t: %d written, %d deleted, %d refused here, %d decisions not taken", startup,
				len(w.put), len(w.removed), len(w.refused), counts.Refused)}
		r.Target = auditTargets(w.put)
		if w.err != nil {
			r.Result, r.Detail = "error", r.Detail+": "+w.err.Error()
		}
		l.audit.Record(l.log, r)
	}
	return len(w.put), len(w.removed), len(w.refused) + counts.Refused, true
}

// maxAuditTargets bounds the targets one audit record lists.
const maxAuditTargets = 20

// auditTargets are the first targets of ps, and how many more.
func auditTargets(ps []netip.Prefix) []string {
	out := make([]string, 0, min(len(ps), maxAuditTargets+1))
	for i, p := range ps {
		if i == maxAuditTargets {
			out = append(out, fmt.Sprintf("and %d more", len(ps)-i))
			break
		}
		out = append(out, p.String())
	}
	return out
}

// written is what one write did.
type written struct {
	put, removed, refused []netip.Prefix
	labels                map[netip.Prefix]string // what was put, keyed as listings show it
	err                   error
}

// write applies changes to every interface's maps. With full (a startup
// pull: every decision in force), what CrowdSec put in the maps and full
// does not hold is deleted too, so that the maps converge to the LAPI's
// state whatever was missed.
func (l *crowdSecLink) write(st *readState, changes []crowdsec.Change, full []crowdsec.Entry, now time.Time) written {
	mono := monotonicNow()
	g := l.guard.Load()
	v6 := st.ifaces[0].dp.Maps.IPv6Prefix()
	var puts []crowdsec.Entry
	var removes []netip.Prefix
	var first []maps.VerdictEntry // the first interface's verdicts, when read here
	if full != nil {
		var have map[netip.Prefix]bool
		removes, have, first = l.owned(st, full, v6)
		if len(have) == 0 {
			puts = full // nothing of CrowdSec's in the maps (a first start): every winner is written
		} else {
			// What is missing from the maps (a verdict of another origin
			// took its place, or the agent restarted), and what changed.
			puts = make([]crowdsec.Entry, 0, len(changes))
			for _, e := range full {
				if !have[crowdSecKey(e.Target, v6)] {
					puts = append(puts, e)
				}
			}
			for _, c := range changes {
				if !c.Remove && have[crowdSecKey(c.Target, v6)] {
					puts = append(puts, c.Winner)
				}
			}
		}
	} else {
		for _, c := range changes {
			if c.Remove {
				removes = append(removes, c.Target)
			} else {
				puts = append(puts, c.Winner)
			}
		}
	}
	w := written{labels: make(map[netip.Prefix]string, len(puts)), put: make([]netip.Prefix, 0, len(puts))}
	verdicts := make([]maps.VerdictEntry, 0, len(puts))
	var blocks []maps.Entry
	// Most decisions share a few origins and scenarios: one label string
	// each, not one per decision.
	labels := map[[2]string]string{}
	for _, e := range puts {
		left := e.Expires.Sub(now)
		if left <= 0 {
			continue
		}
		if _, ok := g.Check(e.Target); !ok {
			w.refused = append(w.refused, e.Target)
			continue
		}
		act := maps.VerdictBlock
		if e.Action == crowdsec.ActionThrottle {
			act = maps.VerdictThrottle
		}
		expires := mono + uint64(left)
		key := crowdSecKey(e.Target, v6)
		if oneSource(e.Target, v6) {
			verdicts = append(verdicts, maps.VerdictEntry{Source: key, Action: act, ExpiresNS: expires, Origin: maps.OriginCrowdSec})
		} else if act == maps.VerdictBlock {
			blocks = append(blocks, maps.Entry{Prefix: e.Target, ListID: desired.ListCrowdSecBlock, ExpiresNS: expires})
		} else {
			w.refused = append(w.refused, e.Target) // the datapath throttles sources, not ranges
			continue
		}
		w.put = append(w.put, e.Target)
		lab, ok := labels[[2]string{e.Origin, e.Scenario}]
		if !ok {
			lab = e.Label()
			labels[[2]string{e.Origin, e.Scenario}] = lab
		}
		w.labels[key] = lab
	}
	for i, it := range st.ifaces {
		cur := first
		if i > 0 {
			cur = nil
		}
		vs, err := l.keepLocal(it.dp.Maps, verdicts, cur)
		if err == nil {
			err = it.dp.Maps.PutVerdicts(vs)
		}
		if err != nil {
			l.mapErrs.WithLabelValues("verdicts").Inc()
			w.err = fmt.Errorf("interface %s: %w", it.name, err)
		}
		if err := l.putBlocks(it.dp.Maps.Block, blocks); err != nil {
			l.mapErrs.WithLabelValues("block").Inc()
			w.err = fmt.Errorf("interface %s: %w", it.name, err)
		}
		for _, p := range removes {
			var err error
			if oneSource(p, v6) {
				err = removeVerdictOf(it.dp.Maps, p.Addr(), maps.OriginCrowdSec)
			} else {
				err = removeListEntryOf(it.dp.Maps.Block, p, desired.ListCrowdSecBlock)
			}
			if err != nil {
				l.mapErrs.WithLabelValues(fleetMap(oneSource(p, v6))).Inc()
				w.err = fmt.Errorf("interface %s: %w", it.name, err)
			}
		}
	}
	if w.err != nil {
		l.log.Error("CrowdSec decisions not all written", "error", w.err)
	}
	for _, p := range removes {
		w.removed = append(w.removed, crowdSecKey(p, v6))
	}
	return w
}

// crowdSecKey is how the maps key a target: its source (an IPv6 address
// belongs to its tracking prefix) or the range itself.
func crowdSecKey(p netip.Prefix, v6prefix int) netip.Prefix {
	if p.Addr().Is6() && p.Bits() >= v6prefix {
		return netip.PrefixFrom(p.Addr(), v6prefix).Masked()
	}
	return p
}

// owned reads what CrowdSec put in the first interface's maps (verdicts
// of origin crowdsec, block entries of its list): stale is what full (the
// decisions in force) does not hold, have all the rest; vs are all the
// verdicts read (nil when they could not be read).
func (l *crowdSecLink) owned(st *readState, full []crowdsec.Entry, v6 int) (stale []netip.Prefix, have map[netip.Prefix]bool, vs []maps.VerdictEntry) {
	m := st.ifaces[0].dp.Maps
	mono := monotonicNow()
	vs, err := m.Verdicts()
	if err != nil {
		l.log.Error("CrowdSec resync: verdicts not read; stale ones expire on their own", "error", err)
	}
	es, err := m.Block.Entries()
	if err != nil {
		l.log.Error("CrowdSec resync: block list not read; stale ranges expire on their own", "error", err)
	}
	var keep map[netip.Prefix]bool // the keys of full, made when the maps hold something of CrowdSec's
	kept := func(p netip.Prefix) bool {
		if keep == nil {
			keep = make(map[netip.Prefix]bool, len(full))
			for _, e := range full {
				keep[crowdSecKey(e.Target, v6)] = true
			}
			have = make(map[netip.Prefix]bool, len(full))
		}
		return keep[p]
	}
	for _, v := range vs {
		switch {
		case v.Origin != maps.OriginCrowdSec:
		case !kept(v.Source):
			stale = append(stale, v.Source)
		case v.ExpiresNS > mono:
			have[v.Source] = true
		}
	}
	for _, e := range es {
		switch {
		case e.ListID != desired.ListCrowdSecBlock:
		case !kept(e.Prefix):
			stale = append(stale, e.Prefix)
		case e.ExpiresNS > mono:
			have[e.Prefix] = true
		}
	}
	return stale, have, vs
}

// keepLocal drops from vs the verdicts where one of another origin wins:
// a stronger one, or one as strong that lasts as long. A few are looked up
// one by one, many by one walk of the map, or in cur, the map's verdicts
// when the caller has just read them.
func (l *crowdSecLink) keepLocal(m *maps.Set, vs, cur []maps.VerdictEntry) ([]maps.VerdictEntry, error) {
	if len(vs) == 0 {
		return nil, nil
	}
	mono := monotonicNow()
	local := map[netip.Prefix]maps.VerdictEntry{}
	if cur == nil && len(vs) < walkAbove {
		for _, v := range vs {
			c, ok, err := m.Verdict(v.Source.Addr())
			if err != nil {
				return nil, err
			}
			if ok && c.Origin != maps.OriginCrowdSec && c.ExpiresNS > mono {
				local[v.Source] = c
			}
		}
	} else {
		if cur == nil {
			var err error
			if cur, err = m.Verdicts(); err != nil {
				return nil, err
			}
		}
		for _, c := range cur {
			if c.Origin != maps.OriginCrowdSec && c.ExpiresNS > mono {
				local[c.Source] = c
			}
		}
	}
	if len(local) == 0 {
		return vs, nil
	}
	out := make([]maps.VerdictEntry, 0, len(vs))
	for _, v := range vs {
		if c, ok := local[v.Source]; ok {
			if s, cs := strength(c.Action), strength(v.Action); s > cs || (s == cs && c.ExpiresNS >= v.ExpiresNS) {
				continue
			}
		}
		out = append(out, v)
	}
	return out, nil
}

// walkAbove is how many verdicts to check make one walk of the verdict
// map cheaper than a lookup each.
const walkAbove = 20000

// putBlocks writes range blocks, leaving a prefix the block list holds
// from another list (the config, the CLI, a feed, the fleet) as it is.
func (l *crowdSecLink) putBlocks(bl *maps.List, es []maps.Entry) error {
	if len(es) == 0 {
		return nil
	}
	var put []maps.Entry
	for _, e := range es {
		cur, ok, err := bl.Lookup(e.Prefix)
		if err != nil {
			return err
		}
		if ok && cur.ListID != desired.ListCrowdSecBlock && (cur.ExpiresNS == 0 || cur.ExpiresNS > monotonicNow()) {
			continue
		}
		put = append(put, e)
	}
	return bl.Add(put)
}

// label is how listings show the origin of what CrowdSec put on key (a
// source or a range): crowdsec:<origin>/<scenario>.
func (l *crowdSecLink) label(key netip.Prefix) string {
	if l == nil {
		return maps.OriginCrowdSec.String()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if s, ok := l.labels[key]; ok {
		return s
	}
	return maps.OriginCrowdSec.String()
}

// scorerPublisher is the scorer's hook that pushes its enforced verdicts
// to the LAPI as alerts (scenario bulwark/scorer, the score's components
// in the message), or nil when the link is no source.
func (l *crowdSecLink) scorerPublisher() func(api.VerdictRecord) {
	if l == nil || l.source == nil {
		return nil
	}
	return func(v api.VerdictRecord) {
		typ := "ban"
		if v.Action == maps.VerdictThrottle.String() {
			typ = "throttle"
		}
		a := crowdsec.Alert{Target: v.Source, Type: typ, Duration: v.For, Scenario: "bulwark/scorer", At: v.At,
			Message: fmt.Sprintf("Bulwark scorer: %s %s, score %.0f (%s)", v.Action, v.Source, v.Score, componentsText(v.Components))}
		if l.source.Push(a) {
			l.alerts.WithLabelValues("queued").Inc()
		} else {
			l.alerts.WithLabelValues("dropped").Inc()
		}
	}
}

// bothPublishers calls each of the scorer's hooks that is set.
func bothPublishers(a, b func(api.VerdictRecord)) func(api.VerdictRecord) {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	return func(v api.VerdictRecord) { a(v); b(v) }
}

// statusNow is the link's state for GET /v1/crowdsec.
func (l *crowdSecLink) statusNow() api.CrowdSecStatus {
	l.mu.Lock()
	st := l.status
	st.Decisions = l.book.Len()
	l.mu.Unlock()
	if l.source != nil {
		s := l.source.Stats()
		st.AlertsPushed, st.AlertsDropped, st.AlertsQueued, st.PushErrors = s.Pushed, s.Dropped, s.Queued, s.Errors
		st.LastPushError = s.LastError
	}
	return st
}

// handleCrowdSec answers GET /v1/crowdsec: the bouncer's state.
func (s *controlServer) handleCrowdSec(w http.ResponseWriter, r *http.Request) {
	st := s.state()
	switch {
	case st == nil:
		fail(w, http.StatusServiceUnavailable, "the agent is starting")
	case st.crowdsec == nil:
		fail(w, http.StatusConflict, "no crowdsec block in the config")
	default:
		writeJSON(w, http.StatusOK, st.crowdsec.statusNow())
	}
}
