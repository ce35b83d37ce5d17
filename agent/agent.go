// Package agent is Bulwark's user-space agent: it loads or adopts the
// datapath on each configured interface, reconciles the maps with the
// config, serves the control API and metrics, reloads on SIGHUP, and writes
// the audit log.
package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sys/unix"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/desired"
	"github.com/bulwark-filter/bulwark/agent/geoip"
	"github.com/bulwark-filter/bulwark/loader"
	"github.com/bulwark-filter/bulwark/maps"
)

// Version is set at build time (-ldflags -X).
var Version = "dev"

// iface is one interface's datapath.
type iface struct {
	name string
	mode loader.AttachMode
	dp   *loader.Datapath
	lock *os.File
	pins loader.PinPersistence // whether the pins outlive the agent, found at start
	// allow and block are the images of the config entries written into the lists (syncList).
	allow, block listImage
}

// Agent runs Bulwark on the configured interfaces.
type Agent struct {
	// RequirePersistentPins makes Run refuse to start on an interface whose
	// pins would not outlive the agent (see loader.CheckPinPersistence);
	// without it the agent starts and says so loudly.
	RequirePersistentPins bool

	log     hclog.Logger
	cfgPath string
	started time.Time

	mu        sync.Mutex // serialises every change of policy
	cfg       *config.Config
	loadedSum [32]byte // the config's files as last read to load them (configSum), for the config watcher
	want      *desired.State
	ifaces    []*iface
	audit     *Audit
	reloads   *prometheus.CounterVec
	reloadOK  prometheus.Gauge // 1 when the last reload (or the start) applied its config
	reloadAt  prometheus.Gauge // when the last reload was tried (or the agent started), Unix seconds
	mapErrs   *prometheus.CounterVec
	ifMissing *prometheus.GaugeVec // by interface block: 1 while it names no interface on the host
	reg       *prometheus.Registry
	scoring   *scoring
	sigdet    *sigDetection // live signature detection; set at start
	feeds     *feedSet
	geo       *geoip.Source
	runCtx    context.Context
	fleet     *fleetLink                    // nil without a fleet block; set at start
	crowdsec  *crowdSecLink                 // nil without a crowdsec block; set at start
	recorders *flightRecorders              // replaced by a reload under a.mu when their settings change
	names     atomic.Pointer[desired.State] // for readers that must not wait on a.mu

	state atomic.Pointer[readState] // what readers see; published under a.mu
	sigs  *sigTable                 // the signature table of every interface
}

// New makes an agent for the config at path; Run starts it.
func New(cfgPath string, log hclog.Logger) *Agent {
	a := &Agent{log: log, cfgPath: cfgPath, started: time.Now(), sigs: &sigTable{}}
	a.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bulwark_config_reloads_total", Help: "Config reloads by result (ok, rejected, error).",
	}, []string{"result"})
	a.reloadOK = prometheus.NewGauge(prometheus.GaugeOpts{Name: "bulwark_config_last_reload_successful",
		Help: "1 when the last config reload (or the start) applied its config, 0 when it was rejected or failed."})
	a.reloadAt = prometheus.NewGauge(prometheus.GaugeOpts{Name: "bulwark_config_last_reload_timestamp_seconds",
		Help: "When the last config reload was tried, or the agent started, in Unix seconds."})
	a.mapErrs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bulwark_map_update_errors_total", Help: "Failed writes to datapath maps, by map.",
	}, []string{"map"})
	a.ifMissing = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "bulwark_interface_missing",
		Help: "1 while the config's interface block (its name, \"auto\" or a pattern) names no interface on this host: the agent waits for it, unattached."},
		[]string{"interface"})
	return a
}

// loadConfig loads the config; it records the digest of its files first (a change after it is a change the
// watcher sees). Callers hold a.mu or run before anything else does.
func (a *Agent) loadConfig() (*config.Config, error) {
	a.loadedSum, _ = configSum(a.cfgPath) // unreadable: the load says why
	// An interface that is not there is no error: the agent waits for it (awaitInterfaces).
	cfg, diags := config.LoadWithOptions(a.cfgPath, config.Options{SkipInterfaceCheck: true})
	if diags.HasErrors() {
		return nil, &config.Error{Text: config.FormatDiagnostics(diags)}
	}
	for _, d := range diags {
		a.log.Warn("config", "warning", strings.TrimSpace(config.FormatDiagnostics(hcl.Diagnostics{d})))
	}
	return cfg, nil
}

// compile compiles cfg into the datapath's desired state, refusing what
// `bulwark config check` refuses, with the same diagnostics.
func compile(cfg *config.Config) (*desired.State, error) {
	want, diags := desired.Compile(cfg)
	if diags.HasErrors() {
		return nil, &config.Error{Text: config.FormatDiagnostics(diags)}
	}
	return want, nil
}

// Run starts the agent and serves until ctx is done or a fatal error. On
// return the program stays attached and the maps stay pinned (fail-static)
// unless the config sets detach_on_exit.
func (a *Agent) Run(ctx context.Context, hup <-chan os.Signal) error {
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	want, err := compile(cfg)
	if err != nil {
		return err
	}
	if err := Preflight(); err != nil {
		return err
	}
	a.audit, err = OpenAudit(cfg.Log.AuditFile)
	if err != nil {
		return err
	}
	defer a.audit.Close()

	cfg, want, ics, err := a.awaitInterfaces(ctx, hup, cfg, want)
	if err != nil || ics == nil {
		return err // nil: stopped while waiting
	}
	a.cfg, a.want = cfg, want
	defer a.closeInterfaces()
	for _, ic := range ics {
		if err := a.startInterface(ic, cfg, want); err != nil {
			return err
		}
	}
	a.syncSignatures("config", want)
	a.auditf(AuditRecord{Who: "config", What: "start", Result: "ok", Detail: a.cfgPath})
	releaseBuffers(len(want.Allow) + len(want.Block))

	a.reg = prometheus.NewRegistry()
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		a.reloads, a.reloadOK, a.reloadAt, a.mapErrs, a.ifMissing, newCollector(a.metricsView), buildInfo(),
		sigCollector{t: a.sigs, state: a.state.Load})
	a.reloadOK.Set(1)
	a.reloadAt.SetToCurrentTime()

	a.geo = &geoip.Source{}
	if err := a.geo.Update(cfg.GeoIP.CountryDatabase, cfg.GeoIP.ASNDatabase, cfg.GeoIP.CountryWeights, cfg.GeoIP.ASNWeights); err != nil {
		return fmt.Errorf("geoip: %w", err)
	}
	defer a.geo.Close()
	// The feeds, the scorer and the recorders get what they use of the
	// interfaces; the interfaces do not change while the agent runs.
	var (
		blocks []blockWriter
		scored []scoredIface
		rings  []eventRing
		allow  listReader
	)
	for _, it := range a.ifaces {
		blocks = append(blocks, it.dp.Maps.Block)
		scored = append(scored, scoredIface{name: it.name, maps: it.dp.Maps})
		rings = append(rings, eventRing{name: it.name, events: it.dp.Maps})
	}
	if len(a.ifaces) > 0 {
		allow = a.ifaces[0].dp.Maps.Allow
	}
	evidence := new(atomic.Uint32)
	a.feeds = newFeedSet(feedDeps{log: a.log, audit: a.audit, writers: &a.mu, block: blocks, allow: allow,
		mapErrs: a.mapErrs, evidence: evidence})
	a.reg.MustRegister(a.feeds.collectors()...)
	fl, err := a.newFleet(want.Fleet, cfg, allow)
	if err != nil {
		return err
	}
	cs, err := a.newCrowdSec(want.CrowdSec, cfg, allow)
	if err != nil {
		return err
	}
	det, err := newFleetDetection(want.Fleet, a.log.Named("fleet-detect"))
	if err != nil {
		return err
	}
	sc := newScoring(scoreDeps{log: a.log, audit: a.audit, ifaces: scored, allow: allow,
		feeds: a.feeds.scoreHits, geo: a.geo, generation: evidence, publish: bothPublishers(fl.scorerPublisher(), cs.scorerPublisher()), observe: det.observer()})
	if err := sc.start(cfg); err != nil {
		return fmt.Errorf("reputation engine: %w", err)
	}
	a.reg.MustRegister(sc.collectors()...)
	a.names.Store(want)
	recs := newFlightRecorders(recorderDeps{log: a.log, ifaces: rings, mapErrs: a.mapErrs, ruleName: ruleNamer(&a.names)})
	recs.start(cfg.Events)
	defer recs.stop()
	a.reg.MustRegister(recorderCollector{recs})
	sigdet := newSigDetection(sigDetectionDeps{log: a.log.Named("sigdetect"), sigs: a.sigs, writers: &a.mu,
		ifaces: a.ifaces, audit: a.auditf, mapErrs: a.mapErrs})
	if err := sigdet.configure(cfg); err != nil {
		return fmt.Errorf("signature detection: %w", err)
	}
	a.reg.MustRegister(sigdet.collectors()...)
	a.mu.Lock()
	a.scoring = sc
	a.sigdet = sigdet
	a.recorders = recs
	a.fleet = fl
	a.crowdsec = cs
	a.runCtx = ctx
	a.publish()
	a.mu.Unlock()
	// The fleet client applies verdicts through the published state: it
	// starts once there is one.
	if fl != nil {
		a.reg.MustRegister(fl.client.Collectors()...)
		fleetCtx, stopFleet := context.WithCancel(ctx)
		fleetDone := make(chan struct{})
		go func() {
			defer close(fleetDone)
			if err := fl.client.Run(fleetCtx); err != nil && fleetCtx.Err() == nil {
				a.log.Error("fleet client stopped", "error", err)
			}
		}()
		defer func() { stopFleet(); <-fleetDone }()
	}
	// The CrowdSec bouncer writes through the published state too.
	if cs != nil {
		a.reg.MustRegister(cs.collectors()...)
		csCtx, stopCS := context.WithCancel(ctx)
		csDone := make(chan struct{})
		go func() { defer close(csDone); cs.run(csCtx) }()
		defer func() { stopCS(); <-csDone }()
	}
	if det != nil {
		a.reg.MustRegister(det.collectors()...)
		detCtx, stopDet := context.WithCancel(ctx)
		detDone := make(chan struct{})
		go func() { defer close(detDone); det.run(detCtx) }()
		defer func() { stopDet(); <-detDone }()
	}
	a.feeds.sync(ctx, cfg, want.FeedIDs)
	defer a.feeds.stopAll()
	sigCtx, stopSig := context.WithCancel(ctx)
	sigDone := make(chan struct{})
	go func() { defer close(sigDone); sigdet.run(sigCtx) }()
	defer func() { stopSig(); <-sigDone }()
	scoreCtx, stopScoring := context.WithCancel(ctx)
	scoreDone := make(chan struct{})
	go func() { defer close(scoreDone); sc.run(scoreCtx) }()
	defer func() { stopScoring(); <-scoreDone }()

	srv, err := a.control().serve(cfg.Control.Socket)
	if err != nil {
		return err
	}
	defer srv.Close()
	if cfg.Metrics.Listen != "" {
		msrv, err := a.serveMetrics(cfg.Metrics.Listen, a.reg)
		if err != nil {
			return err
		}
		defer msrv.Close()
	}
	// Everything that needed privileges is done: keep only CAP_BPF.
	dropped := prometheus.NewGauge(prometheus.GaugeOpts{Name: "bulwark_privileges_dropped",
		Help: "1 when the agent runs with only the capabilities it still needs (CAP_BPF)."})
	a.reg.MustRegister(dropped)
	if err := dropPrivileges(); err != nil {
		a.log.Warn("running with all start-up capabilities", "error", err)
	} else {
		dropped.Set(1)
		a.log.Info("capabilities dropped to CAP_BPF")
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan struct{})
	go func() { defer close(watchDone); a.watchConfig(watchCtx) }()
	defer func() { stopWatch(); <-watchDone }()
	notifyReady(a.log)
	a.log.Info("bulwark running", "interfaces", len(a.ifaces), "mode", cfg.Mode, "version", Version)

	sweep := time.NewTicker(10 * time.Second)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			a.log.Info("stopping; the datapath stays attached (fail-static)", "detach_on_exit", a.cfg.DetachOnExit)
			return nil
		case <-hup:
			if err := a.Reload("signal"); err != nil {
				a.log.Error("reload rejected; the running policy is unchanged", "error", err)
			}
		case <-sweep.C:
			a.sweepExpired()
		}
	}
}

func (a *Agent) startInterface(ic config.Interface, cfg *config.Config, want *desired.State) error {
	if err := loader.EnsureBPFFS(cfg.PinDir); err != nil {
		return err
	}
	dir := loader.PinDir(cfg.PinDir, ic.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pin directory %s: %w", dir, err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return err
	}
	pins := loader.CheckPinPersistence(dir)
	if !pins.Persistent {
		if a.RequirePersistentPins {
			lock.Close()
			return fmt.Errorf("interface %s: the pins would not outlive the agent (--require-persistent-pins): %s", ic.Name, pins.Detail)
		}
		a.log.Error("FAIL-STATIC IS OFF: the pins will not outlive the agent; if it dies, the interface is left unfiltered",
			"interface", ic.Name, "pins", dir, "why", pins.Detail)
	}
	// The sizes the config leaves unset follow the host's memory; maps pinned already keep theirs.
	sizes := desired.SizesOver(cfg, desired.HostSizes().FromPins(dir))
	if sizes != want.Sizes {
		a.log.Info("adopting the pinned maps' sizes for the sizes the config leaves unset", "interface", ic.Name,
			"sources", sizes.Sources, "rule_buckets", sizes.RuleBuckets, "block_hosts", sizes.BlockHosts)
	}
	dp, err := loader.Load(loader.Options{Sizes: sizes, PinDir: dir, Logger: a.log.Named("loader")})
	if err != nil {
		lock.Close()
		return fmt.Errorf("interface %s: %w", ic.Name, err)
	}
	it := &iface{name: ic.Name, dp: dp, lock: lock, pins: pins}
	a.ifaces = append(a.ifaces, it)
	if _, err := a.applyTo(it, want); err != nil {
		return fmt.Errorf("interface %s: %w", ic.Name, err)
	}
	// Every slot, the empty ones too: maps adopted from an earlier run hold its signatures.
	if err := a.sigs.rewrite([]*iface{it}); err != nil {
		a.mapErrs.WithLabelValues("signatures").Inc()
		return fmt.Errorf("interface %s: %w", ic.Name, err)
	}
	it.mode, err = dp.Attach(ic.Name, loader.AttachMode(ic.Attach))
	if err != nil {
		return fmt.Errorf("interface %s: %w", ic.Name, err)
	}
	a.log.Info("attached", "interface", ic.Name, "mode", it.mode, "pins", dir, "pins_persistent", pins.Persistent)
	return nil
}

// lockDir takes an exclusive lock on the pin directory, so a second agent
// on the same interface refuses to start.
func lockDir(dir string) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("open pin directory: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("another bulwark agent holds %s: one agent per interface", dir)
		}
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return f, nil
}

// applyTo reconciles one interface's maps with the desired state and
// returns how many list entries it wrote and removed.
func (a *Agent) applyTo(it *iface, want *desired.State) (listChanges int, err error) {
	if err := it.dp.Maps.ApplyPolicy(&want.Policy); err != nil {
		a.mapErrs.WithLabelValues("policy").Inc()
		return 0, fmt.Errorf("apply policy: %w", err)
	}
	addA, delA, err := syncList(it.dp.Maps.Allow, &it.allow, want.Allow)
	if err != nil {
		a.mapErrs.WithLabelValues("allow").Inc()
		return 0, fmt.Errorf("allow list: %w", err)
	}
	addB, delB, err := syncList(it.dp.Maps.Block, &it.block, want.Block)
	if err != nil {
		a.mapErrs.WithLabelValues("block").Inc()
		return addA + delA, fmt.Errorf("block list: %w", err)
	}
	a.log.Debug("reconciled", "interface", it.name, "allow_written", addA, "allow_removed", delA,
		"block_written", addB, "block_removed", delB)
	return addA + delA + addB + delB, nil
}

func (a *Agent) closeInterfaces() {
	for _, it := range a.ifaces {
		if a.cfg != nil && a.cfg.DetachOnExit {
			dir := it.dp.PinDir()
			it.dp.Close()
			if err := loader.Detach(dir); err != nil {
				a.log.Error("detach on exit", "interface", it.name, "error", err)
			} else {
				a.log.Info("detached", "interface", it.name)
			}
		} else {
			it.dp.Close()
		}
		it.lock.Close()
	}
	a.ifaces = nil
}

// control makes the control API server with what it uses of the agent.
func (a *Agent) control() *controlServer {
	return newControlServer(controlDeps{log: a.log, audit: a.audit, started: a.started, state: a.state.Load,
		writers: &a.mu, reload: a.Reload, mapErrs: a.mapErrs, capture: a.recorders.handleCapture, sigs: a.sigs})
}

// Reload reopens the audit log (a rotation moved it away), then re-reads
// the config and reconciles. An invalid config changes nothing; its
// diagnostics are in the error.
func (a *Agent) Reload(who string) error {
	if err := a.audit.Reopen(); err != nil {
		a.log.Error("audit log not reopened; records still go to the file it had open", "error", err)
	}
	cfg, want, err := a.reload(who)
	if err != nil {
		return err
	}
	// The feed runners take the writers' lock (a.mu) to apply their lists:
	// they are synced with the new config after it is released.
	a.mu.Lock()
	ctx := a.runCtx
	a.mu.Unlock()
	if a.feeds != nil && ctx != nil {
		a.feeds.sync(ctx, cfg, want.FeedIDs)
	}
	return nil
}

func (a *Agent) reload(who string) (*config.Config, *desired.State, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	lastSum := a.loadedSum
	cfg, err := a.loadConfig()
	if err == nil {
		err = restartNeeded(a.cfg, cfg)
	}
	var want *desired.State
	if err == nil {
		want, err = compile(cfg)
	}
	// The config's files as they were and its lists as they were (a list
	// file is no config file): a reload that verifies the lists. A reload
	// that changes a list writes only the change.
	verify := err == nil && a.loadedSum == lastSum && sameLists(a.want, want)
	// The flight recorder's new directory is made before anything changes:
	// one that cannot be made rejects the reload.
	var recs *recorderSet
	if err == nil && recorderSettingsChanged(a.cfg.Events, cfg.Events) && a.recorders != nil {
		recs, err = a.recorders.prepare(cfg.Events)
	}
	if err != nil {
		a.countReload("rejected")
		a.auditf(AuditRecord{Who: who, What: "reload", Result: "rejected", Detail: err.Error()})
		return nil, nil, err
	}
	// The location databases first: a file that fails to open rejects the
	// reload before any map changes.
	if a.geo != nil {
		if err := a.geo.Update(cfg.GeoIP.CountryDatabase, cfg.GeoIP.ASNDatabase, cfg.GeoIP.CountryWeights, cfg.GeoIP.ASNWeights); err != nil {
			a.countReload("rejected")
			a.auditf(AuditRecord{Who: who, What: "reload", Result: "rejected", Detail: err.Error()})
			return nil, nil, fmt.Errorf("geoip: %w", err)
		}
	}
	for _, it := range a.ifaces {
		_, err := a.applyTo(it, want)
		if err == nil && verify {
			// The agent's own writers' changes are repaired: what a
			// reconcile against the kernel's entries changes now, another
			// process wrote.
			it.allow, it.block = listImage{}, listImage{}
			var n int
			if n, err = a.applyTo(it, want); n > 0 {
				a.log.Warn("the lists differed from what the agent wrote (another process wrote the maps): repaired",
					"interface", it.name, "entries_written_or_removed", n)
			}
		}
		if err != nil {
			// applyTo may have written part of want (the policy before the
			// lists): put the running config back everywhere.
			for _, it := range a.ifaces {
				if _, rerr := a.applyTo(it, a.want); rerr != nil {
					a.log.Error("restore the running config after a failed reload", "interface", it.name, "error", rerr)
				}
			}
			a.countReload("error")
			a.auditf(AuditRecord{Who: who, What: "reload", Result: "error", Detail: err.Error()})
			return nil, nil, err
		}
	}
	entries := len(a.want.Allow) + len(a.want.Block) + len(want.Allow) + len(want.Block)
	a.cfg, a.want = cfg, want
	a.syncSignatures(who, want)
	a.names.Store(want)
	a.publish()
	if a.scoring != nil {
		a.scoring.reconfigure(cfg)
	}
	if a.sigdet != nil {
		if err := a.sigdet.configure(cfg); err != nil {
			a.log.Error("signature detection", "error", err)
		}
	}
	if a.fleet != nil && len(a.ifaces) > 0 {
		a.fleet.applier.rebuildGuard(cfg, a.ifaces[0].dp.Maps.Allow)
	}
	if a.crowdsec != nil && len(a.ifaces) > 0 {
		a.crowdsec.rebuildGuard(cfg, a.ifaces[0].dp.Maps.Allow)
	}
	a.log.SetLevel(hclog.LevelFromString(cfg.Log.Level))
	if recs != nil {
		a.recorders.swap(recs, cfg.Events)
	}
	a.countReload("ok")
	a.auditf(AuditRecord{Who: who, What: "reload", Result: "ok", Detail: a.cfgPath})
	a.log.Info("config reloaded")
	// Nothing holds the previous config now (publish replaced the readers' state).
	releaseBuffers(entries)
	return cfg, want, nil
}

// syncSignatures writes the config's signatures into the table and audits
// what changed. A failed write is logged and counted: the rest of the
// config stands. a.mu must be held.
func (a *Agent) syncSignatures(who string, want *desired.State) {
	added, removed, err := a.sigs.syncConfig(a.ifaces, want.Signatures)
	for _, n := range added {
		a.auditf(AuditRecord{Who: who, What: "signature.add", Target: []string{n}, Result: "ok", Detail: "config"})
	}
	for _, n := range removed {
		a.auditf(AuditRecord{Who: who, What: "signature.del", Target: []string{n}, Result: "ok", Detail: "config"})
	}
	if err != nil {
		a.mapErrs.WithLabelValues("signatures").Inc()
		a.log.Error("config signatures", "error", err)
		a.auditf(AuditRecord{Who: who, What: "signature.add", Result: "error", Detail: err.Error()})
	}
}

// countReload counts a reload by result (ok, rejected, error) and sets the
// last reload's gauges.
func (a *Agent) countReload(result string) {
	a.reloads.WithLabelValues(result).Inc()
	a.reloadOK.Set(boolGauge(result == "ok"))
	a.reloadAt.SetToCurrentTime()
}

func (a *Agent) auditf(r AuditRecord) { a.audit.Record(a.log, r) }

// monotonicNow is CLOCK_MONOTONIC in ns, the datapath's clock.
func monotonicNow() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

// sweepExpired deletes runtime list entries whose TTL passed. The datapath
// already ignores them; this frees their slots. Only the deletes take a.mu.
func (a *Agent) sweepExpired() {
	st := a.state.Load()
	if st == nil {
		return
	}
	now := monotonicNow()
	for _, it := range st.ifaces {
		for _, l := range []*maps.List{it.dp.Maps.Allow, it.dp.Maps.Block} {
			gone := l.Expired(now)
			if len(gone) == 0 {
				continue
			}
			a.mu.Lock()
			err := l.DeleteExpired(gone, now)
			a.mu.Unlock()
			if err != nil {
				a.log.Warn("sweep: delete expired", "error", err)
			}
		}
	}
	a.mu.Lock()
	gone, err := a.sigs.expired(st.ifaces, time.Now())
	a.mu.Unlock()
	for _, e := range gone {
		a.auditf(AuditRecord{Who: e.origin, What: "signature.expire", Target: []string{e.name}, Result: "ok"})
	}
	if err != nil {
		a.log.Warn("sweep: delete expired signatures", "error", err)
	}
}

func (a *Agent) serveMetrics(addr string, reg prometheus.Gatherer) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if st := a.state.Load(); st == nil || len(st.ifaces) == 0 {
			http.Error(w, "not attached", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("metrics server", "error", err)
		}
	}()
	return srv, nil
}

// notifyReady tells systemd (Type=notify) the datapath is attached.
func notifyReady(log hclog.Logger) {
	sock := os.Getenv("NOTIFY_SOCKET")
	if sock == "" {
		return
	}
	addr := &net.UnixAddr{Name: sock, Net: "unixgram"}
	if sock[0] == '@' {
		addr.Name = "\x00" + sock[1:]
	}
	c, err := net.DialUnix("unixgram", nil, addr)
	if err != nil {
		log.Warn("sd_notify", "error", err)
		return
	}
	defer c.Close()
	if _, err := c.Write([]byte("READY=1")); err != nil {
		log.Warn("sd_notify", "error", err)
	}
}

// Preflight checks what the agent needs and says plainly what is missing.
func Preflight() error {
	if os.Geteuid() != 0 {
		var hdr unix.CapUserHeader
		hdr.Version = unix.LINUX_CAPABILITY_VERSION_3
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			return fmt.Errorf("not root and capabilities unreadable: %w", err)
		}
		need := []struct {
			bit  uint
			name string
		}{{unix.CAP_BPF, "CAP_BPF"}, {unix.CAP_NET_ADMIN, "CAP_NET_ADMIN"}, {unix.CAP_PERFMON, "CAP_PERFMON"}}
		for _, c := range need {
			if data[c.bit/32].Effective&(1<<(c.bit%32)) == 0 {
				return fmt.Errorf("not root and missing %s: run as root or grant CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON", c.name)
			}
		}
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return fmt.Errorf("no kernel BTF (/sys/kernel/btf/vmlinux): this kernel lacks CONFIG_DEBUG_INFO_BTF: %w", err)
	}
	if err := probeBPF(); err != nil {
		return err
	}
	return nil
}

// ensureDir makes the parent directory of path with mode.
func ensureDir(path string, mode os.FileMode) error {
	return os.MkdirAll(filepath.Dir(path), mode)
}
