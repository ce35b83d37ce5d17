package agent

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulwark-filter/bulwark/agent/api"
	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/desired"
	"github.com/bulwark-filter/bulwark/agent/fleet"
	"github.com/bulwark-filter/bulwark/agent/guard"
	"github.com/bulwark-filter/bulwark/maps"
)

// expirySlack is how much later a fleet verdict must expire than a local
// one of the same action to replace it: the wall-to-monotonic conversion
// of the same verdict (the agent's own, published and applied back) may
// differ by a little.
const expirySlack = time.Second

// fleetApplier writes the fleet's merged verdicts into every interface's
// maps; it is the fleet client's fleet.Applier. A verdict on one source
// goes to the verdict map (origin fleet), a block on a wider prefix to the
// block list under desired.ListFleetBlock, both with the verdict's expiry
// on the kernel's clock. What this host allows or protects is refused,
// and a stronger or longer local verdict on the same source is kept.
type fleetApplier struct {
	log     hclog.Logger
	audit   *Audit
	writers sync.Locker       // serialises every change of policy
	state   func() *readState // the published snapshot; nil while the agent starts
	mapErrs *prometheus.CounterVec
	// guard is the space a fleet verdict may not touch: the allow list
	// (config and run-time), reputation.protect, the host's own addresses
	// and gateways, and prefixes broader than the safety limits.
	guard atomic.Pointer[guard.Guard]
	// findings are the fleet aggregator's verdicts in force, for explain.
	findings fleetFindings
	// pend is what one Apply has still to write (writers held).
	pend fleetPending
}

// fleetPending is what an Apply decided and has still to write: the
// verdicts on single sources, per interface, written in batches, and the
// audit records of the verdicts applied, written together. A cold sync of
// 1M verdicts is then a few hundred writes to the kernel and to the audit
// log, not 2M writes, and a lookup per verdict only on the sources the map
// may hold an entry on (maps.Set.MayHoldVerdicts).
type fleetPending struct {
	// verdicts[i] are interface i's writes; owner[i][j] is the index in
	// applied of verdicts[i][j]'s verdict.
	verdicts [][]maps.VerdictEntry
	owner    [][]int
	applied  []appliedVerdict
	buf      []byte // audit lines
	// due and dueOwner are writeVerdicts' room: the verdicts to write
	// and their index in applied.
	due      []maps.VerdictEntry
	dueOwner []int
	// may is writeVerdicts' answers of maps.Set.MayHoldVerdicts.
	may []bool
}

// appliedVerdict is a fleet verdict put, for its audit record: change,
// its index in the Apply's changes (its Winner), written on at least one
// interface, or err, the first write that failed.
type appliedVerdict struct {
	change  int
	left    time.Duration // its life left when applied
	written bool
	err     error
}

// Sizes of the applier's batches: pendingKeep bounds the room a
// fleetPending keeps between Applies (a cold sync's large batches do not
// hold their memory afterwards); auditFlushAt is the bytes of audit lines
// collected per write.
const (
	pendingKeep  = 1 << 16
	auditFlushAt = 1 << 20
)

// rebuildGuard recomputes the space fleet verdicts may not touch, after a
// change of the allow list or of the config.
func (f *fleetApplier) rebuildGuard(cfg *config.Config, allow listReader) {
	host, err := guard.Host(nil)
	if err != nil {
		f.log.Warn("fleet: cannot read the host's addresses; they are not protected from fleet verdicts until the next try", "error", err)
	}
	f.guard.Store(feedGuard(cfg, allow, host))
}

// Apply writes changes into the kernel and returns the targets it refused,
// with the reason (fleet.Applier). Removes are written at once, after the
// puts before them; puts on single sources in batches, in order.
func (f *fleetApplier) Apply(changes []fleet.Change) map[netip.Prefix]string {
	refused := map[netip.Prefix]string{}
	f.writers.Lock()
	defer f.writers.Unlock()
	st := f.state()
	if st == nil {
		for _, c := range changes {
			if !c.Remove {
				refused[c.Target] = fleet.RefusedInvalid
			}
		}
		return refused
	}
	f.pend.reset(len(st.ifaces))
	wall, mono := time.Now(), monotonicNow()
	for i, c := range changes {
		if c.Remove {
			f.flush(st, changes, wall, mono)
			f.remove(st, c.Target)
			f.findings.note(c, false)
			continue
		}
		why := f.put(st, i, changes[i].Winner, wall, mono)
		if why != "" {
			refused[c.Target] = why
		}
		f.findings.note(c, why == "")
	}
	f.flush(st, changes, wall, mono)
	f.pend.trim()
	return refused
}

// reset empties p for an Apply on ifaces interfaces.
func (p *fleetPending) reset(ifaces int) {
	for len(p.verdicts) < ifaces {
		p.verdicts, p.owner = append(p.verdicts, nil), append(p.owner, nil)
	}
	for i := range p.verdicts {
		p.verdicts[i], p.owner[i] = p.verdicts[i][:0], p.owner[i][:0]
	}
	p.applied, p.buf = p.applied[:0], p.buf[:0]
}

// trim lets go of room over pendingKeep entries, and of the verdicts the
// applied records held.
func (p *fleetPending) trim() {
	for i := range p.verdicts {
		if cap(p.verdicts[i]) > pendingKeep {
			p.verdicts[i], p.owner[i] = nil, nil
		}
	}
	clear(p.applied[:cap(p.applied)])
	if cap(p.applied) > pendingKeep {
		p.applied = nil
	}
	if cap(p.due) > pendingKeep {
		p.due, p.dueOwner, p.may = nil, nil, nil
	}
	if cap(p.buf) > 2*auditFlushAt {
		p.buf = nil
	}
}

// oneSource reports whether target is one source of the datapath: an IPv4
// host, or an IPv6 prefix at or longer than the tracking length v6prefix.
func oneSource(target netip.Prefix, v6prefix int) bool {
	if target.Addr().Is4() {
		return target.Bits() == 32
	}
	return target.Bits() >= v6prefix
}

// verdictAction is the datapath's action of a fleet action (block or
// throttle).
func verdictAction(a fleet.Action) (maps.VerdictAction, bool) {
	switch a {
	case fleet.ActionBlock:
		return maps.VerdictBlock, true
	case fleet.ActionThrottle:
		return maps.VerdictThrottle, true
	}
	return 0, false
}

// strength orders the datapath's actions: block over throttle.
func strength(a maps.VerdictAction) int {
	if a == maps.VerdictBlock {
		return 2
	}
	return 1
}

// put takes one fleet verdict, v, the Winner of changes[change]: a verdict on one source is queued for
// every interface (flush writes it where it is not in force and no local
// verdict wins), a block on a prefix is written at once. It returns a
// fleet.Refused* reason, or "" when the verdict is (or will be, at flush)
// in force, or a local one that wins is kept.
func (f *fleetApplier) put(st *readState, change int, v *fleet.Verdict, wall time.Time, mono uint64) string {
	act, ok := verdictAction(v.Action)
	if !ok || !v.Target.IsValid() || len(st.ifaces) == 0 {
		return fleet.RefusedInvalid
	}
	left := v.Expires.Sub(wall)
	if left <= 0 {
		return fleet.RefusedTTL
	}
	if r, ok := f.guard.Load().Check(v.Target); !ok {
		f.log.Debug("fleet verdict refused: allowed or protected here", "target", v.Target, "issuer", v.Issuer, "why", r.String())
		return fleet.RefusedLocal
	}
	expires := mono + uint64(left)
	single := oneSource(v.Target, st.ifaces[0].dp.Maps.IPv6Prefix())
	if !single && act != maps.VerdictBlock {
		return fleet.RefusedInvalid // the datapath throttles sources, not prefixes
	}
	p := &f.pend
	at := len(p.applied)
	p.applied = append(p.applied, appliedVerdict{change: change, left: left})
	for i, it := range st.ifaces {
		if single {
			p.verdicts[i] = append(p.verdicts[i], maps.VerdictEntry{Source: v.Target, Action: act, ExpiresNS: expires,
				Origin: maps.OriginFleet, Score: v.Score})
			p.owner[i] = append(p.owner[i], at)
			continue
		}
		w, err := putFleetBlock(it.dp.Maps.Block, v.Target, expires, mono)
		p.applied[at].written = p.applied[at].written || w
		if err != nil {
			f.writeFailed(it.name, v.Target, false, err)
			p.applied[at].err = err
			return ""
		}
	}
	return ""
}

// writeFailed counts and logs a fleet verdict not written on an interface.
func (f *fleetApplier) writeFailed(ifname string, target netip.Prefix, single bool, err error) {
	f.mapErrs.WithLabelValues(fleetMap(single)).Inc()
	f.log.Error("fleet verdict not written", "interface", ifname, "target", target, "error", err)
}

// flush writes the queued verdicts of each interface (writeVerdicts),
// then the audit records of what was written or failed, in writes of up
// to auditFlushAt bytes; and empties the queue.
func (f *fleetApplier) flush(st *readState, changes []fleet.Change, wall time.Time, mono uint64) {
	p := &f.pend
	for i, it := range st.ifaces {
		f.writeVerdicts(it, p.verdicts[i], p.owner[i], mono)
		p.verdicts[i], p.owner[i] = p.verdicts[i][:0], p.owner[i][:0]
	}
	if f.audit.enabled() {
		now := wall.UTC()
		for _, a := range p.applied {
			if !a.written && a.err == nil {
				continue
			}
			p.buf = appendFleetAudit(p.buf, now, changes[a.change].Winner, a)
			if len(p.buf) >= auditFlushAt {
				f.audit.recordLines(f.log, p.buf)
				p.buf = p.buf[:0]
			}
		}
		f.audit.recordLines(f.log, p.buf)
		p.buf = p.buf[:0]
	}
	clear(p.applied)
	p.applied = p.applied[:0]
}

// writeVerdicts writes an interface's queued verdicts vs (owner: their
// index in f.pend.applied) and marks each written or failed: each whose
// source the map may hold an entry on (maps.Set.MayHoldVerdicts; the
// others have no verdict to keep nor one in force already) is looked up
// (fleetVerdictDue), and those due are written in one batch write
// (maps.Set.PutVerdicts). A batch that fails is written again one by one
// (the writes are idempotent), which finds each one that fails.
func (f *fleetApplier) writeVerdicts(it *iface, vs []maps.VerdictEntry, owner []int, mono uint64) {
	applied, p := f.pend.applied, &f.pend
	due, dueOwner := p.due[:0], p.dueOwner[:0]
	may, err := it.dp.Maps.MayHoldVerdicts(vs, p.may[:0])
	if err != nil {
		f.log.Warn("fleet: every verdict looked up", "interface", it.name, "error", err)
	}
	for j, e := range vs {
		ok, err := true, error(nil)
		if may[j] {
			ok, err = fleetVerdictDue(it.dp.Maps, e.Source.Addr(), e.Action, e.ExpiresNS, mono)
		}
		if err != nil {
			f.failed(it.name, &applied[owner[j]], e.Source, err)
			continue
		}
		if ok {
			due, dueOwner = append(due, e), append(dueOwner, owner[j])
		}
	}
	if err := it.dp.Maps.PutVerdicts(due); err == nil {
		for _, o := range dueOwner {
			applied[o].written = true
		}
	} else {
		for j, e := range due {
			a := &applied[dueOwner[j]]
			if err := it.dp.Maps.PutVerdict(e.Source.Addr(), e.Action, e.ExpiresNS, e.Origin, e.Score); err != nil {
				f.failed(it.name, a, e.Source, err)
				continue
			}
			a.written = true
		}
	}
	p.due, p.dueOwner, p.may = due[:0], dueOwner[:0], may[:0]
}

// failed notes a verdict on one source not written on an interface.
func (f *fleetApplier) failed(ifname string, a *appliedVerdict, target netip.Prefix, err error) {
	if a.err == nil {
		f.writeFailed(ifname, target, true, err)
		a.err = err
	}
}

// fleetVerdictDue reports whether a fleet verdict on addr's source is to
// be written: unless it is in force already, or a local verdict there
// wins (a stronger one, or one as strong that lasts as long).
func fleetVerdictDue(m *maps.Set, addr netip.Addr, act maps.VerdictAction, expires, mono uint64) (bool, error) {
	cur, ok, err := m.Verdict(addr)
	if err != nil {
		return false, err
	}
	switch {
	case !ok || cur.ExpiresNS <= mono:
	case cur.Origin == maps.OriginFleet && cur.Action == act && near(cur.ExpiresNS, expires):
		return false, nil // in force already
	case cur.Origin != maps.OriginFleet:
		if s, fs := strength(cur.Action), strength(act); s > fs || (s == fs && cur.ExpiresNS+uint64(expirySlack) >= expires) {
			return false, nil
		}
	}
	return true, nil
}

// putFleetBlock writes a fleet block on a prefix unless the block list
// already holds the prefix from another list (the config, the CLI, a
// feed): that entry stays as it is. written says whether it did.
func putFleetBlock(l *maps.List, target netip.Prefix, expires, mono uint64) (written bool, err error) {
	cur, ok, err := l.Lookup(target)
	if err != nil {
		return false, err
	}
	switch {
	case !ok || (cur.ExpiresNS != 0 && cur.ExpiresNS <= mono):
	case cur.ListID != desired.ListFleetBlock:
		return false, nil
	case near(cur.ExpiresNS, expires):
		return false, nil // in force already
	}
	return true, l.Add([]maps.Entry{{Prefix: target, ListID: desired.ListFleetBlock, ExpiresNS: expires}})
}

// remove deletes what the fleet put on target; local verdicts and list
// entries stay.
func (f *fleetApplier) remove(st *readState, target netip.Prefix) {
	if len(st.ifaces) == 0 {
		return
	}
	single := oneSource(target, st.ifaces[0].dp.Maps.IPv6Prefix())
	for _, it := range st.ifaces {
		var err error
		if single {
			err = removeVerdictOf(it.dp.Maps, target.Addr(), maps.OriginFleet)
		} else {
			err = removeListEntryOf(it.dp.Maps.Block, target, desired.ListFleetBlock)
		}
		if err != nil {
			f.mapErrs.WithLabelValues(fleetMap(single)).Inc()
			f.log.Error("fleet verdict not removed", "interface", it.name, "target", target, "error", err)
		}
	}
}

// near reports whether two expiries (monotonic ns) are the same one, as
// far as converting it from the wall clock twice can tell.
func near(a, b uint64) bool {
	return max(a, b)-min(a, b) < uint64(expirySlack)
}

// fleetMap names the map a fleet target lives in, for the map error
// metric.
func fleetMap(single bool) string {
	if single {
		return "verdicts"
	}
	return "block"
}

// fleetClient is what the agent uses of the fleet client: *fleet.Client,
// or a fake in the tests of the control API.
type fleetClient interface {
	Run(ctx context.Context) error
	PublishAndApply(v fleet.Verdict) (refused string, err error)
	Status() fleet.Status
	BucketDigest(ctx context.Context) (string, error)
	Collectors() []prometheus.Collector
	Issuer(target netip.Prefix) (string, bool)
}

// fleetLink is the agent's part in a fleet: the client, what it publishes
// and the applier it writes through. A nil *fleetLink is no fleet block.
type fleetLink struct {
	client   fleetClient
	settings *desired.Fleet
	applier  *fleetApplier
	log      hclog.Logger
	audit    *Audit
}

// newFleetLink makes the fleet client of settings (the password read from
// its file), writing through applier.
func newFleetLink(settings *desired.Fleet, applier *fleetApplier, log hclog.Logger, audit *Audit) (*fleetLink, error) {
	opts, err := fleetOptions(settings)
	if err != nil {
		return nil, err
	}
	l := &fleetLink{settings: settings, applier: applier, log: log, audit: audit}
	c, err := newFleetClient(opts, applier, log, l.refused)
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	l.client = c
	return l, nil
}

// newFleet makes the agent's link to the fleet of settings (nil without
// a fleet block); its client runs once the agent's state is published.
func (a *Agent) newFleet(settings *desired.Fleet, cfg *config.Config, allow listReader) (*fleetLink, error) {
	if settings == nil {
		return nil, nil
	}
	applier := &fleetApplier{log: a.log.Named("fleet"), audit: a.audit, writers: &a.mu, state: a.state.Load, mapErrs: a.mapErrs}
	applier.rebuildGuard(cfg, allow)
	return newFleetLink(settings, applier, a.log.Named("fleet"), a.audit)
}

// scorerPublisher is the scorer's hook that publishes its enforced
// verdicts, or nil when the fleet block does not publish them (or there
// is none).
func (l *fleetLink) scorerPublisher() func(api.VerdictRecord) {
	if l == nil || !l.settings.PublishScorer {
		return nil
	}
	return func(v api.VerdictRecord) {
		_, err := l.publish(v.Source, fleet.Action(v.Action), "scorer", componentsText(v.Components),
			uint16(math.Round(v.Score)), v.At, v.For)
		if err != nil {
			l.log.Warn("scorer verdict not published to the fleet; it is enforced here", "source", v.Source, "error", err)
		}
	}
}

// newFleetClient makes the fleet client (fleet.New).
func newFleetClient(opts fleet.Options, apply fleet.Applier, log hclog.Logger, onRefusal func(fleet.Refusal)) (fleetClient, error) {
	return fleet.New(opts, apply, log, onRefusal)
}

// fleetOptions are the fleet client's options of settings, with the
// password read from its file.
func fleetOptions(settings *desired.Fleet) (fleet.Options, error) {
	opts := settings.Options
	if settings.PasswordFile != "" {
		pw, err := readFirstLine(settings.PasswordFile, "fleet password_file")
		if err != nil {
			return opts, err
		}
		opts.Password = pw
	}
	return opts, nil
}

// refused audits a fleet verdict the client would not apply or publish.
func (l *fleetLink) refused(r fleet.Refusal) {
	v := r.Verdict
	l.log.Debug("fleet verdict refused", "target", v.Target, "issuer", v.Issuer, "action", v.Action, "reason", r.Reason)
	l.audit.Record(l.log, AuditRecord{Who: "fleet:" + v.Issuer, What: "fleet." + string(v.Action),
		Target: []string{v.Target.String()}, Why: v.Reason, Result: "refused", Detail: r.Reason})
}

// publish publishes one local verdict, capped at max_ttl, under this
// node's name, and has the client apply the merged set here before it
// returns, so that an operator finds it in force when the command returns:
// what is written is the merged winner on the target (a stronger or longer
// fleet verdict in force stays), in order with the client's own applies
// (a revoke removes what the fleet put on the target here). It returns the
// reason the applier refused it here, if it did.
func (l *fleetLink) publish(target netip.Prefix, act fleet.Action, origin, reason string, score uint16, at time.Time, ttl time.Duration) (string, error) {
	ttl = min(ttl, l.settings.Options.MaxTTL)
	v := fleet.Verdict{Target: target, Action: act, Issuer: l.settings.Options.Node, Origin: origin,
		Reason: reason, Score: score, IssuedAt: at, Expires: at.Add(ttl)}
	if act == fleet.ActionRevoke {
		v.Expires = time.Time{} // the client's: the latest expiry among what it cancels
	}
	return l.client.PublishAndApply(v)
}

// status is the fleet client's state for GET /v1/fleet, with the bucket's
// digest read fresh.
func (l *fleetLink) status(ctx context.Context) api.FleetStatus {
	st := l.client.Status()
	out := api.FleetStatus{Node: st.Node, Connected: st.Connected, Server: st.Server, Servers: st.Servers,
		Publish: []string{}, AppliedRevision: st.AppliedRevision, BucketRevision: st.BucketRevision, Lag: st.Lag,
		Buffered: st.Buffered, Active: st.Active, LastApplied: st.LastApplied, Digest: st.Digest}
	if l.settings.PublishScorer {
		out.Publish = append(out.Publish, "scorer")
	}
	if l.settings.PublishCLI {
		out.Publish = append(out.Publish, "cli")
	}
	digest, err := l.client.BucketDigest(ctx)
	if err != nil {
		out.BucketError = err.Error()
		return out
	}
	out.BucketDigest = digest
	out.InSync = digest == st.Digest
	return out
}

// origin is how `verdicts list` shows the origin of a verdict on source:
// "fleet:<issuer>" for the fleet's.
func (l *fleetLink) origin(o maps.Origin, source netip.Prefix) string {
	if o != maps.OriginFleet || l == nil {
		return o.String()
	}
	if issuer, ok := l.client.Issuer(source); ok {
		return "fleet:" + issuer
	}
	return o.String()
}

// fleetFor returns the fleet link of the published state for an operator
// action with --fleet; false, with a 409 answer written, without a fleet
// block or when it does not publish operator actions.
func (s *controlServer) fleetFor(w http.ResponseWriter) (*fleetLink, bool) {
	st := s.state()
	switch {
	case st == nil:
		fail(w, http.StatusServiceUnavailable, "the agent is starting")
	case st.fleet == nil:
		fail(w, http.StatusConflict, "--fleet: no fleet block in the config")
	case !st.fleet.settings.PublishCLI:
		fail(w, http.StatusConflict, `--fleet: the fleet block does not publish operator actions (fleet publish lacks "cli")`)
	default:
		return st.fleet, true
	}
	return nil, false
}

// fleetBlock publishes a block of pfxs to the fleet (block add --fleet),
// applied here at once: the TTL defaults to, and may not exceed, max_ttl.
func (s *controlServer) fleetBlock(w http.ResponseWriter, name string, req api.ListRequest, pfxs []netip.Prefix) {
	if name != "block" {
		fail(w, http.StatusBadRequest, "--fleet is for the block list only: every host keeps its own allow list")
		return
	}
	fl, ok := s.fleetFor(w)
	if !ok {
		return
	}
	maxTTL := fl.settings.Options.MaxTTL
	ttl := maxTTL
	if req.TTL != "" {
		var err error
		if ttl, err = api.ParseTTL(req.TTL, config.ParseDuration); err != nil {
			fail(w, http.StatusBadRequest, "%v", err)
			return
		}
		if ttl > maxTTL {
			fail(w, http.StatusBadRequest, "ttl %q is over the fleet's max_ttl (%s)", req.TTL, maxTTL)
			return
		}
	}
	now := time.Now()
	var here []string
	for i, p := range pfxs {
		why, err := fl.publish(p, fleet.ActionBlock, "cli", req.Reason, 0, now, ttl)
		if err != nil {
			s.auditf(AuditRecord{Who: "cli", What: "fleet.block.add", Target: req.CIDRs[i:], Why: req.Reason, TTL: ttl.String(),
				Result: "error", Detail: err.Error()})
			fail(w, http.StatusServiceUnavailable, "publish %s to the fleet (%d of %d published): %v", p, i, len(pfxs), err)
			return
		}
		if why != "" {
			here = append(here, p.String()+" ("+why+")")
		}
	}
	r := AuditRecord{Who: "cli", What: "fleet.block.add", Target: req.CIDRs, Why: req.Reason, TTL: ttl.String(), Result: "ok"}
	if len(here) > 0 {
		r.Detail = "refused here: " + strings.Join(here, ", ")
	}
	s.auditf(r)
	writeJSON(w, http.StatusOK, api.Added{Added: len(pfxs)})
}

// fleetRevoke publishes a revoke of targets to the fleet (verdicts del
// --fleet); false when it has answered with an error.
func (s *controlServer) fleetRevoke(w http.ResponseWriter, targets []netip.Prefix) bool {
	fl, ok := s.fleetFor(w)
	if !ok {
		return false
	}
	now := time.Now()
	strs := make([]string, len(targets))
	for i, p := range targets {
		strs[i] = p.String()
		if _, err := fl.publish(p, fleet.ActionRevoke, "cli", "", 0, now, fl.settings.Options.MaxTTL); err != nil {
			s.auditf(AuditRecord{Who: "cli", What: "fleet.verdict.del", Target: strs[i : i+1], Result: "error", Detail: err.Error()})
			fail(w, http.StatusServiceUnavailable, "publish the revoke of %s to the fleet (%d of %d published): %v", p, i, len(targets), err)
			return false
		}
	}
	s.auditf(AuditRecord{Who: "cli", What: "fleet.verdict.del", Target: strs, Result: "ok"})
	return true
}

// handleFleet answers GET /v1/fleet: the fleet client's state and whether
// this agent's set matches the bucket's.
func (s *controlServer) handleFleet(w http.ResponseWriter, r *http.Request) {
	st := s.state()
	switch {
	case st == nil:
		fail(w, http.StatusServiceUnavailable, "the agent is starting")
		return
	case st.fleet == nil:
		fail(w, http.StatusConflict, "no fleet block in the config")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), fleetStatusTimeout)
	defer cancel()
	writeJSON(w, http.StatusOK, st.fleet.status(ctx))
}

// fleetStatusTimeout bounds the read of the bucket's digest for GET
// /v1/fleet.
const fleetStatusTimeout = 10 * time.Second
