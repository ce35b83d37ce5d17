package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/bulwark-filter/bulwark/agent/api"
	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/desired"
	"github.com/bulwark-filter/bulwark/maps"
)

func probeBPF() error {
	if err := features.HaveProgramType(ebpf.XDP); err != nil {
		if errors.Is(err, ebpf.ErrNotSupported) {
			return errors.New("this kernel does not support XDP programs (BPF disabled or too old)")
		}
		return fmt.Errorf("probe BPF: %w", err)
	}
	return nil
}

type peerKey struct{}

// controlDeps is what the control API server uses of the agent.
type controlDeps struct {
	log     hclog.Logger
	audit   *Audit
	started time.Time              // when the agent started, for the uptime
	state   func() *readState      // the published snapshot; nil while the agent starts
	writers sync.Locker            // serialises every change of policy; changes under it are published before it is released
	reload  func(who string) error // re-reads the config and reconciles
	mapErrs *prometheus.CounterVec // failed map writes, by map
	capture http.HandlerFunc       // GET /v1/capture, served by the flight recorders
	sigs    *sigTable              // the signature table
}

// controlServer serves the HTTP+JSON control API.
type controlServer struct {
	controlDeps
}

// newControlServer makes the control API server; serve starts it.
func newControlServer(d controlDeps) *controlServer {
	return &controlServer{controlDeps: d}
}

func (s *controlServer) auditf(r AuditRecord) { s.audit.Record(s.log, r) }

// lockWriters takes the writers' lock and returns the snapshot published
// under it, which is then the writers' current state; false, with the lock
// released and an answer written, while the agent is starting.
func (s *controlServer) lockWriters(w http.ResponseWriter) (*readState, bool) {
	s.writers.Lock()
	st := s.state()
	if st == nil {
		s.writers.Unlock()
		fail(w, http.StatusServiceUnavailable, "the agent is starting")
		return nil, false
	}
	return st, true
}

// serve serves the HTTP+JSON control API on a unix socket that only
// root may use (mode 0600, and the peer's uid is checked).
func (s *controlServer) serve(path string) (*http.Server, error) {
	return s.serveHandler(path, s.handler())
}

// serveHandler serves h on the control socket at path, for root only.
func (s *controlServer) serveHandler(path string, h http.Handler) (*http.Server, error) {
	if err := ensureDir(path, 0o700); err != nil {
		return nil, fmt.Errorf("control socket directory: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("control socket path %s exists and is not a socket", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("control socket %s is in use: is another agent running?", path)
		}
		os.Remove(path)
	}
	old := unix.Umask(0o177)
	ln, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket mode: %w", err)
	}
	srv := &http.Server{
		Handler:           rootOnly(h),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			uid := -1
			if uc, ok := c.(*net.UnixConn); ok {
				if raw, err := uc.SyscallConn(); err == nil {
					raw.Control(func(fd uintptr) {
						if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
							uid = int(cred.Uid)
						}
					})
				}
			}
			return context.WithValue(ctx, peerKey{}, uid)
		},
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("control server", "error", err)
		}
	}()
	return srv, nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func fail(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, api.Error{Error: fmt.Sprintf(format, args...)})
}

// decodeBody reads a JSON body of at most api.MaxBodyBytes, strictly.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	return decodeBodyMax(w, r, v, api.MaxBodyBytes)
}

// decodeBodyMax reads a JSON body of at most max bytes, strictly. A body
// that says it is longer is refused without being decoded: it is read up
// to the limit as raw bytes (so the client, still sending it, gets the
// answer instead of a broken pipe), which is cheap where decoding 64 MiB of
// JSON took longer than the server's read timeout on a busy machine.
func decodeBodyMax(w http.ResponseWriter, r *http.Request, v any, max int64) bool {
	r.Body = http.MaxBytesReader(w, r.Body, max)
	if r.ContentLength > max {
		_, _ = io.Copy(io.Discard, r.Body)
		fail(w, http.StatusRequestEntityTooLarge, "request body over %d bytes", max)
		return false
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			fail(w, http.StatusRequestEntityTooLarge, "request body over %d bytes", max)
			return false
		}
		fail(w, http.StatusBadRequest, "bad JSON body: %v", err)
		return false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		fail(w, http.StatusBadRequest, "bad JSON body: trailing data")
		return false
	}
	return true
}

func (s *controlServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", s.handleStatus)
	mux.HandleFunc("GET /v1/lists/{list}", s.handleListGet)
	mux.HandleFunc("POST /v1/lists/{list}", s.handleListAdd)
	mux.HandleFunc("DELETE /v1/lists/{list}", s.handleListDel)
	mux.HandleFunc("POST /v1/lists/{list}/import", s.handleListImport)
	mux.HandleFunc("POST /v1/reload", s.handleReload)
	mux.HandleFunc("GET /v1/explain/{ip}", s.handleExplain)
	mux.HandleFunc("GET /v1/why/{ip}", s.handleWhy)
	mux.HandleFunc("GET /v1/verdicts", s.handleVerdictsGet)
	mux.HandleFunc("DELETE /v1/verdicts", s.handleVerdictsDel)
	mux.HandleFunc("GET /v1/capture", s.capture)
	mux.HandleFunc("GET /v1/sources", s.handleSources)
	mux.HandleFunc("GET /v1/fleet", s.handleFleet)
	mux.HandleFunc("GET /v1/signatures", s.handleSignaturesGet)
	mux.HandleFunc("POST /v1/signatures", s.handleSignatureAdd)
	mux.HandleFunc("DELETE /v1/signatures/{name}", s.handleSignatureDel)
	mux.HandleFunc("GET /v1/crowdsec", s.handleCrowdSec)
	// Every other request gets a JSON error too, not the mux's plain text.
	notAllowed := func(w http.ResponseWriter, r *http.Request) {
		fail(w, http.StatusMethodNotAllowed, "%s is not allowed on %s", r.Method, r.URL.Path)
	}
	for _, p := range []string{"/v1/status", "/v1/lists/{list}", "/v1/lists/{list}/import", "/v1/reload", "/v1/explain/{ip}", "/v1/why/{ip}", "/v1/verdicts", "/v1/capture", "/v1/sources", "/v1/fleet", "/v1/signatures", "/v1/signatures/{name}", "/v1/crowdsec"} {
		mux.HandleFunc(p, notAllowed)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fail(w, http.StatusNotFound, "no endpoint %s", r.URL.Path)
	})
	return mux
}

// rootOnly refuses every request whose peer is not root.
func rootOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if uid, _ := r.Context().Value(peerKey{}).(int); uid != 0 {
			fail(w, http.StatusForbidden, "the control API is for root only")
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (s *controlServer) listFor(w http.ResponseWriter, r *http.Request) (name string, id uint32, ok bool) {
	switch name = r.PathValue("list"); name {
	case "allow":
		return name, desired.ListRuntimeAllow, true
	case "block":
		return name, desired.ListRuntimeBlock, true
	}
	fail(w, http.StatusNotFound, "no list %q: want allow or block", name)
	return "", 0, false
}

func pick(it *iface, name string) *maps.List {
	if name == "allow" {
		return it.dp.Maps.Allow
	}
	return it.dp.Maps.Block
}

func (s *controlServer) handleListGet(w http.ResponseWriter, r *http.Request) {
	name, _, ok := s.listFor(w, r)
	if !ok {
		return
	}
	st := s.state()
	if st == nil || len(st.ifaces) == 0 {
		fail(w, http.StatusServiceUnavailable, "no interface attached")
		return
	}
	es, err := pick(st.ifaces[0], name).Entries()
	if err != nil {
		fail(w, http.StatusInternalServerError, "read %s list: %v", name, err)
		return
	}
	maps.SortEntries(es)
	now := monotonicNow()
	out := make([]api.ListEntry, 0, len(es))
	for _, e := range es {
		if e.ExpiresNS != 0 && e.ExpiresNS <= now {
			continue
		}
		le := api.ListEntry{CIDR: e.Prefix.String(), List: st.want.ListNames[e.ListID], Origin: originOf(e.ListID)}
		if e.ListID == desired.ListCrowdSecBlock {
			le.Origin = st.crowdsec.label(e.Prefix)
		}
		if e.ExpiresNS != 0 {
			le.ExpiresIn = float64(e.ExpiresNS-now) / 1e9
		}
		out = append(out, le)
	}
	writeJSON(w, http.StatusOK, out)
}

func parseCIDRs(in []string) ([]netip.Prefix, error) { return parseCIDRsMax(in, api.MaxCIDRsPerReq) }

// parseCIDRsMax parses 1 to max addresses or CIDRs.
func parseCIDRsMax(in []string, max int) ([]netip.Prefix, error) {
	if len(in) == 0 {
		return nil, errors.New("no cidrs given")
	}
	if len(in) > max {
		return nil, fmt.Errorf("%d cidrs: at most %d per request", len(in), max)
	}
	out := make([]netip.Prefix, 0, len(in))
	for _, s := range in {
		p, err := api.ParseCIDR(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// listRequest reads a list request: the list (name and run-time id), the
// body and its CIDRs; false when it has answered with an error.
func (s *controlServer) listRequest(w http.ResponseWriter, r *http.Request) (name string, id uint32, req api.ListRequest, pfxs []netip.Prefix, ok bool) {
	if name, id, ok = s.listFor(w, r); !ok {
		return
	}
	if !decodeBody(w, r, &req) {
		return name, id, req, nil, false
	}
	pfxs, err := parseCIDRs(req.CIDRs)
	if err != nil {
		fail(w, http.StatusBadRequest, "%v", err)
		return name, id, req, nil, false
	}
	return name, id, req, pfxs, true
}

// configOwned returns the first of pfxs that the config (want) puts on list
// name: the CLI may not change those.
func configOwned(want *desired.State, name string, pfxs []netip.Prefix) (netip.Prefix, bool) {
	owned := want.Block
	if name == "allow" {
		owned = want.Allow
	}
	for _, p := range pfxs {
		if _, ok := owned.Lookup(p); ok {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

func (s *controlServer) handleListAdd(w http.ResponseWriter, r *http.Request) {
	name, id, req, pfxs, ok := s.listRequest(w, r)
	if !ok {
		return
	}
	if req.Fleet {
		if len(req.Reason) > api.MaxReasonLen {
			fail(w, http.StatusBadRequest, "reason over %d characters", api.MaxReasonLen)
			return
		}
		s.fleetBlock(w, name, req, pfxs)
		return
	}
	st, expires, ok := s.lockForAdd(w, req.Reason, req.TTL)
	if !ok {
		return
	}
	defer s.writers.Unlock()
	entries := make([]maps.Entry, len(pfxs))
	for i, p := range pfxs {
		entries[i] = maps.Entry{Prefix: p, ListID: id, ExpiresNS: expires}
	}
	// A prefix the config owns stays the config's.
	if p, ok := configOwned(st.want, name, pfxs); ok {
		fail(w, http.StatusConflict, "%s is in the config's %s list; change the config instead", p, name)
		return
	}
	for _, it := range st.ifaces {
		if err := pick(it, name).Add(entries); err != nil {
			s.mapErrs.WithLabelValues(name).Inc()
			s.auditf(AuditRecord{Who: "cli", What: name + ".add", Target: req.CIDRs, Why: req.Reason, TTL: req.TTL, Result: "error", Detail: err.Error()})
			fail(w, addErrCode(err), "%s list on %s: %v", name, it.name, err)
			return
		}
	}
	if name == "allow" {
		st.rebuildExempt()
	}
	s.auditf(AuditRecord{Who: "cli", What: name + ".add", Target: req.CIDRs, Why: req.Reason, TTL: req.TTL, Result: "ok"})
	writeJSON(w, http.StatusOK, api.Added{Added: len(entries)})
}

func (s *controlServer) handleListDel(w http.ResponseWriter, r *http.Request) {
	name, _, req, pfxs, ok := s.listRequest(w, r)
	if !ok {
		return
	}
	st, ok := s.lockWriters(w)
	if !ok {
		return
	}
	defer s.writers.Unlock()
	if p, ok := configOwned(st.want, name, pfxs); ok {
		fail(w, http.StatusConflict, "%s comes from the config's %s list; change the config instead", p, name)
		return
	}
	for _, it := range st.ifaces {
		if err := pick(it, name).Delete(pfxs); err != nil {
			s.mapErrs.WithLabelValues(name).Inc()
			fail(w, http.StatusInternalServerError, "%s list on %s: %v", name, it.name, err)
			return
		}
	}
	if name == "allow" {
		st.rebuildExempt()
	}
	s.auditf(AuditRecord{Who: "cli", What: name + ".del", Target: req.CIDRs, Result: "ok"})
	writeJSON(w, http.StatusOK, api.Deleted{Deleted: len(pfxs)})
}

func (s *controlServer) handleReload(w http.ResponseWriter, r *http.Request) {
	writeReload(w, s.reload("cli"))
}

// writeReload answers a reload request whose result is err.
func writeReload(w http.ResponseWriter, err error) {
	if err != nil {
		var ce *config.Error
		msg := err.Error()
		if errors.As(err, &ce) {
			msg = ce.Text
		}
		writeJSON(w, http.StatusUnprocessableEntity, api.ReloadReply{Result: api.ReloadRejected, Diagnostics: msg})
		return
	}
	writeJSON(w, http.StatusOK, api.ReloadReply{Result: api.ReloadOK})
}

func (s *controlServer) handleStatus(w http.ResponseWriter, r *http.Request) {
	snap := s.state()
	if snap == nil {
		fail(w, http.StatusServiceUnavailable, "the agent is starting")
		return
	}
	st := api.Status{
		Version: Version, UptimeSeconds: time.Since(s.started).Seconds(), Mode: snap.cfg.Mode,
		Packets: map[string]map[string]uint64{}, Lists: map[string]map[string]int{}, Verdicts: map[string]int{},
	}
	now := monotonicNow()
	for i, it := range snap.ifaces {
		n, err := it.dp.Maps.CountSources()
		if err != nil {
			fail(w, http.StatusInternalServerError, "read sources: %v", err)
			return
		}
		is := api.InterfaceStatus{Name: it.name, Attach: string(it.mode), TrackedSources: n, PinsPersistent: it.pins.Persistent}
		if !it.pins.Persistent {
			is.PinsDetail = it.pins.Detail
		}
		mem, err := it.dp.Maps.Memory()
		if err != nil {
			fail(w, http.StatusInternalServerError, "read map memory: %v", err)
			return
		}
		for _, b := range mem {
			is.KernelMemoryBytes += b
		}
		st.Interfaces = append(st.Interfaces, is)
		stats, err := it.dp.Maps.Stats()
		if err != nil {
			fail(w, http.StatusInternalServerError, "read stats: %v", err)
			return
		}
		for _, act := range maps.Actions {
			for _, rs := range maps.Reasons {
				if c := stats[act][rs].Packets; c > 0 {
					if st.Packets[act.String()] == nil {
						st.Packets[act.String()] = map[string]uint64{}
					}
					st.Packets[act.String()][rs.String()] += c
				}
			}
		}
		if i > 0 {
			continue // lists and verdicts are the same on every interface
		}
		for name, c := range it.dp.Maps.ListCounts(now) {
			st.Lists[name] = map[string]int{"ipv4": c.IPv4, "ipv6": c.IPv6}
		}
		vc, err := it.dp.Maps.VerdictCounts(now)
		if err != nil {
			fail(w, http.StatusInternalServerError, "read verdicts: %v", err)
			return
		}
		for act, n := range vc {
			if n > 0 {
				st.Verdicts[act.String()] = n
			}
		}
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *controlServer) handleExplain(w http.ResponseWriter, r *http.Request) {
	addr, err := api.ParseAddr(r.PathValue("ip"))
	if err != nil {
		fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	st := s.state()
	if st == nil || st.scoring == nil || len(st.scoring.engines) == 0 {
		fail(w, http.StatusConflict, "the reputation engine is off (reputation.mode = \"off\"); bulwark why %s works without it", addr)
		return
	}
	sc := st.scoring
	mono := monotonicNow()
	x := sc.engines[0].Explain(addr, mono)
	for _, e := range sc.engines[1:] {
		if x.Tracked {
			break
		}
		x = e.Explain(addr, mono)
	}
	if err := explainUntracked(st, addr, &x, mono); err != nil {
		fail(w, http.StatusInternalServerError, "%v", err)
		return
	}
	if st.fleet != nil {
		x.Fleet = st.fleet.applier.findings.explain(addr, time.Now())
	}
	writeJSON(w, http.StatusOK, x)
}

func (s *controlServer) handleVerdictsGet(w http.ResponseWriter, r *http.Request) {
	st := s.state()
	if st == nil || len(st.ifaces) == 0 {
		fail(w, http.StatusServiceUnavailable, "no interface attached")
		return
	}
	now := monotonicNow()
	out := []api.Verdict{}
	seen := map[string]bool{}
	for _, it := range st.ifaces {
		vs, err := it.dp.Maps.Verdicts()
		if err != nil {
			fail(w, http.StatusInternalServerError, "read verdicts: %v", err)
			return
		}
		for _, v := range vs {
			if v.ExpiresNS <= now || seen[v.Source.String()] {
				continue
			}
			seen[v.Source.String()] = true
			out = append(out, api.Verdict{Source: v.Source.String(), Action: v.Action.String(), Origin: st.verdictOrigin(v.Origin, v.Source),
				Score: v.Score, ExpiresIn: float64(v.ExpiresNS-now) / 1e9})
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *controlServer) handleVerdictsDel(w http.ResponseWriter, r *http.Request) {
	var req api.VerdictsRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if len(req.Sources) == 0 || len(req.Sources) > api.MaxCIDRsPerReq {
		fail(w, http.StatusBadRequest, "give 1 to %d sources", api.MaxCIDRsPerReq)
		return
	}
	targets := make([]netip.Prefix, 0, len(req.Sources))
	addrs := make([]netip.Addr, 0, len(req.Sources))
	for _, s := range req.Sources {
		p, err := api.ParseCIDR(s)
		if err != nil {
			fail(w, http.StatusBadRequest, "%v", err)
			return
		}
		targets = append(targets, p)
		addrs = append(addrs, p.Addr())
	}
	if req.Fleet && !s.fleetRevoke(w, targets) {
		return
	}
	st, ok := s.lockWriters(w)
	if !ok {
		return
	}
	defer s.writers.Unlock()
	for _, it := range st.ifaces {
		for _, ad := range addrs {
			if err := it.dp.Maps.DeleteVerdict(ad); err != nil {
				s.mapErrs.WithLabelValues("verdicts").Inc()
				fail(w, http.StatusInternalServerError, "delete verdict on %s: %v", it.name, err)
				return
			}
		}
	}
	if st.scoring != nil {
		for _, e := range st.scoring.engines {
			for _, ad := range addrs {
				e.Forgive(ad)
			}
		}
	}
	s.auditf(AuditRecord{Who: "cli", What: "verdict.del", Target: req.Sources, Result: "ok"})
	writeJSON(w, http.StatusOK, api.Deleted{Deleted: len(addrs)})
}

// handleSources lists the busiest or riskiest sources:
// GET /v1/sources?sort=pps|dropped|score&limit=N
func (s *controlServer) handleSources(w http.ResponseWriter, r *http.Request) {
	by := r.URL.Query().Get("sort")
	switch by {
	case "":
		by = "pps"
	case "pps", "dropped", "score":
	default:
		fail(w, http.StatusBadRequest, "sort %q: want pps, dropped or score", by)
		return
	}
	limit := api.DefaultSources
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > api.MaxSources {
			fail(w, http.StatusBadRequest, "limit %q: want 1 to %d", s, api.MaxSources)
			return
		}
		limit = n
	}
	st := s.state()
	if st == nil || st.scoring == nil {
		fail(w, http.StatusServiceUnavailable, "the agent is starting")
		return
	}
	sc, interval := st.scoring, st.cfg.Reputation.Interval
	sc.lastTop.Store(time.Now().UnixNano())
	mono := monotonicNow()
	rep := api.SourcesReply{Interval: interval.Seconds(), Sources: []api.Source{}}
	for _, e := range sc.engines {
		rep.Measured = rep.Measured || e.Cycles() > 1
		rep.Sources = append(rep.Sources, e.Top(limit, by, mono)...)
	}
	if len(rep.Sources) > limit {
		rep.Sources = rep.Sources[:limit]
	}
	writeJSON(w, http.StatusOK, rep)
}
