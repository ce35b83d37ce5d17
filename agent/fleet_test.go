package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/bulwark-filter/bulwark/agent/api"
	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/desired"
	"github.com/bulwark-filter/bulwark/agent/fleet"
	"github.com/bulwark-filter/bulwark/loader"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// XDP verdicts of the program.
const (
	xdpDrop = 1
	xdpPass = 2
)

// fleetTestAgent is an agent state over one real datapath (loaded, not
// attached) and the fleet applier that writes into it, auditing to a file.
func fleetTestAgent(t *testing.T, cfg *config.Config, d *loader.Datapath) (*fleetApplier, string) {
	t.Helper()
	a, auditPath := testAgentOn(t, cfg, d, "bwk-fleet0")
	f := &fleetApplier{log: a.log, audit: a.audit, writers: &a.mu, state: a.state.Load, mapErrs: a.mapErrs}
	f.rebuildGuard(cfg, d.Maps.Allow)
	return f, auditPath
}

// testAgentOn is an agent of cfg whose published state has one
// interface, name, over the datapath d, auditing to a file (its path).
func testAgentOn(t testing.TB, cfg *config.Config, d *loader.Datapath, name string) (*Agent, string) {
	t.Helper()
	a := New("", hclog.NewNullLogger())
	auditPath := filepath.Join(t.TempDir(), "audit.jsonl")
	var err error
	if a.audit, err = OpenAudit(auditPath); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.audit.Close() })
	want, diags := desired.Compile(cfg)
	if diags.HasErrors() {
		t.Fatal(config.FormatDiagnostics(diags))
	}
	a.cfg, a.want = cfg, want
	a.ifaces = []*iface{{name: name, mode: "generic", dp: d}}
	a.mu.Lock()
	a.publish()
	a.mu.Unlock()
	return a, auditPath
}

// fleetVerdict is a verdict of issuer edge-2 on target that expires after
// ttl.
func fleetVerdict(target string, act fleet.Action, ttl time.Duration) fleet.Verdict {
	now := time.Now()
	return fleet.Verdict{Target: netip.MustParsePrefix(target), Action: act, Issuer: "edge-2", Origin: "cli",
		Reason: "test", IssuedAt: now, Expires: now.Add(ttl)}
}

func put(vs ...fleet.Verdict) []fleet.Change {
	cs := make([]fleet.Change, len(vs))
	for i, v := range vs {
		cs[i] = fleet.Change{Target: v.Target, Winner: &v}
	}
	return cs
}

// TestFleetApplier applies fleet verdicts to a real datapath and checks
// the maps and the program's verdict on frames: single sources go to the
// verdict map, wider blocks to the block list, both with the expiry on the
// kernel's clock; allowed, protected and invalid targets are refused; a
// local verdict that is stronger or lasts longer is kept; deletes remove
// only what the fleet put there; every verdict written is audited.
func TestFleetApplier(t *testing.T) {
	d := testutil.Load(t, testutil.Setup{
		Allow: []maps.Entry{{Prefix: netip.MustParsePrefix("198.18.7.1/32"), ListID: desired.ListRuntimeAllow}},
		Block: []maps.Entry{{Prefix: netip.MustParsePrefix("198.18.66.0/24"), ListID: desired.ListRuntimeBlock}},
	})
	cfg := &config.Config{
		Allow:      config.List{CIDRs: []netip.Prefix{netip.MustParsePrefix("198.18.5.0/24")}},
		Reputation: config.Reputation{Protect: []netip.Prefix{netip.MustParsePrefix("198.18.6.0/24")}},
	}
	f, auditPath := fleetTestAgent(t, cfg, d)
	m := d.Maps
	hour := uint64(time.Hour)
	mono := monotonicNow()
	// Local verdicts the merge rule weighs against the fleet's.
	for _, v := range []struct {
		addr    string
		act     maps.VerdictAction
		expires uint64
	}{
		{"198.18.2.2", maps.VerdictBlock, mono + 2*hour},    // stronger than the fleet's throttle
		{"198.18.2.3", maps.VerdictThrottle, mono + 2*hour}, // weaker than the fleet's block
		{"198.18.2.4", maps.VerdictBlock, mono + hour/6},    // as strong, shorter
		{"198.18.2.5", maps.VerdictBlock, mono + 2*hour},    // as strong, longer
	} {
		if err := m.PutVerdict(netip.MustParseAddr(v.addr), v.act, v.expires, maps.OriginScorer, 90); err != nil {
			t.Fatal(err)
		}
	}

	refused := f.Apply(put(
		fleetVerdict("198.18.1.1/32", fleet.ActionBlock, time.Hour),
		fleetVerdict("198.18.1.2/32", fleet.ActionThrottle, time.Hour),
		fleetVerdict("198.18.64.0/24", fleet.ActionBlock, time.Hour),
		fleetVerdict("2001:2:0:1::/64", fleet.ActionBlock, time.Hour),
		fleetVerdict("2001:2:1::/48", fleet.ActionBlock, time.Hour),
		fleetVerdict("198.18.66.0/24", fleet.ActionBlock, time.Hour), // a run-time block entry: it stays as it is
		fleetVerdict("198.18.2.2/32", fleet.ActionThrottle, time.Hour),
		fleetVerdict("198.18.2.3/32", fleet.ActionBlock, time.Hour),
		fleetVerdict("198.18.2.4/32", fleet.ActionBlock, time.Hour),
		fleetVerdict("198.18.2.5/32", fleet.ActionBlock, time.Hour),
		// Refused:
		fleetVerdict("198.18.65.0/24", fleet.ActionThrottle, time.Hour), // throttle on a prefix
		fleetVerdict("198.18.5.5/32", fleet.ActionBlock, time.Hour),     // config allow list
		fleetVerdict("198.18.6.0/25", fleet.ActionBlock, time.Hour),     // reputation.protect
		fleetVerdict("198.18.4.0/22", fleet.ActionBlock, time.Hour),     // contains the allowed 198.18.5.0/24
		fleetVerdict("198.18.7.1/32", fleet.ActionBlock, time.Hour),     // run-time allow entry
		fleetVerdict("198.18.1.9/32", fleet.ActionBlock, -time.Second),  // expired
	))
	wantRefused := map[netip.Prefix]string{
		netip.MustParsePrefix("198.18.65.0/24"): fleet.RefusedInvalid,
		netip.MustParsePrefix("198.18.5.5/32"):  fleet.RefusedLocal,
		netip.MustParsePrefix("198.18.6.0/25"):  fleet.RefusedLocal,
		netip.MustParsePrefix("198.18.4.0/22"):  fleet.RefusedLocal,
		netip.MustParsePrefix("198.18.7.1/32"):  fleet.RefusedLocal,
		netip.MustParsePrefix("198.18.1.9/32"):  fleet.RefusedTTL,
	}
	if len(refused) != len(wantRefused) {
		t.Errorf("refused %v, want %v", refused, wantRefused)
	}
	for p, why := range wantRefused {
		if refused[p] != why {
			t.Errorf("%s: refused %q, want %q", p, refused[p], why)
		}
	}

	// The verdict map: the fleet's with their hour, the local winners kept.
	after := monotonicNow()
	for _, w := range []struct {
		addr   string
		act    maps.VerdictAction
		origin maps.Origin
		lo, hi uint64 // bounds of the expiry
	}{
		{"198.18.1.1", maps.VerdictBlock, maps.OriginFleet, mono + hour - uint64(time.Second), after + hour},
		{"198.18.1.2", maps.VerdictThrottle, maps.OriginFleet, mono + hour - uint64(time.Second), after + hour},
		{"2001:2:0:1::", maps.VerdictBlock, maps.OriginFleet, mono + hour - uint64(time.Second), after + hour},
		{"198.18.2.2", maps.VerdictBlock, maps.OriginScorer, mono + 2*hour, mono + 2*hour},
		{"198.18.2.3", maps.VerdictBlock, maps.OriginFleet, mono + hour - uint64(time.Second), after + hour},
		{"198.18.2.4", maps.VerdictBlock, maps.OriginFleet, mono + hour - uint64(time.Second), after + hour},
		{"198.18.2.5", maps.VerdictBlock, maps.OriginScorer, mono + 2*hour, mono + 2*hour},
	} {
		v, ok, err := m.Verdict(netip.MustParseAddr(w.addr))
		if err != nil || !ok {
			t.Errorf("%s: no verdict (%v)", w.addr, err)
			continue
		}
		if v.Action != w.act || v.Origin != w.origin || v.ExpiresNS < w.lo || v.ExpiresNS > w.hi {
			t.Errorf("%s: %s by %s expiring at %d; want %s by %s expiring in [%d, %d]", w.addr, v.Action, v.Origin,
				v.ExpiresNS, w.act, w.origin, w.lo, w.hi)
		}
	}
	for _, addr := range []string{"198.18.5.5", "198.18.7.1", "198.18.1.9"} {
		if _, ok, _ := m.Verdict(netip.MustParseAddr(addr)); ok {
			t.Errorf("%s: refused, yet a verdict is in the map", addr)
		}
	}
	// The block list: the fleet's prefixes under their list id with the
	// hour; the run-time entry untouched.
	for _, w := range []struct {
		prefix string
		id     uint32
		fleet  bool
	}{{"198.18.64.0/24", desired.ListFleetBlock, true}, {"2001:2:1::/48", desired.ListFleetBlock, true}, {"198.18.66.0/24", desired.ListRuntimeBlock, false}} {
		e, ok, err := m.Block.Lookup(netip.MustParsePrefix(w.prefix))
		switch {
		case err != nil || !ok:
			t.Errorf("%s: not in the block list (%v)", w.prefix, err)
		case e.ListID != w.id:
			t.Errorf("%s: list %d, want %d", w.prefix, e.ListID, w.id)
		case w.fleet && (e.ExpiresNS < mono+hour-uint64(time.Second) || e.ExpiresNS > after+hour):
			t.Errorf("%s: expires at %d, want in [%d, %d]", w.prefix, e.ExpiresNS, mono+hour-uint64(time.Second), after+hour)
		case !w.fleet && e.ExpiresNS != 0:
			t.Errorf("%s: the run-time entry now expires at %d", w.prefix, e.ExpiresNS)
		}
	}
	for _, p := range []string{"198.18.65.0/24", "198.18.6.0/25", "198.18.4.0/22"} {
		if _, ok, _ := m.Block.Lookup(netip.MustParsePrefix(p)); ok {
			t.Errorf("%s: refused, yet in the block list", p)
		}
	}

	// The program drops what the fleet blocks and passes the rest.
	run := d.NewRunner()
	frames := []struct {
		src  string
		want uint32
	}{
		{"198.18.1.1", xdpDrop}, {"198.18.64.9", xdpDrop}, {"198.18.1.3", xdpPass},
		{"198.18.5.5", xdpPass}, {"198.18.7.1", xdpPass}, {"198.18.65.1", xdpPass},
	}
	check := func(when string) {
		t.Helper()
		for _, fr := range frames {
			got, err := run.Run(testutil.UDP4(t, fr.src, "198.19.0.1", 53, 32))
			if err != nil || got != fr.want {
				t.Errorf("%s: frame from %s: XDP verdict %d (%v), want %d", when, fr.src, got, err, fr.want)
			}
		}
	}
	check("applied")

	// Deletes: the fleet's go, the local ones stay.
	var removes []fleet.Change
	for _, p := range []string{"198.18.1.1/32", "198.18.64.0/24", "198.18.2.2/32", "198.18.2.3/32", "198.18.66.0/24", "2001:2:1::/48"} {
		removes = append(removes, fleet.Change{Target: netip.MustParsePrefix(p), Remove: true})
	}
	if refused := f.Apply(removes); len(refused) != 0 {
		t.Errorf("deletes refused: %v", refused)
	}
	for _, w := range []struct {
		addr string
		kept bool
	}{{"198.18.1.1", false}, {"198.18.2.3", false}, {"198.18.2.2", true}, {"198.18.1.2", true}} {
		if _, ok, _ := m.Verdict(netip.MustParseAddr(w.addr)); ok != w.kept {
			t.Errorf("after the deletes %s has a verdict: %v, want %v", w.addr, ok, w.kept)
		}
	}
	for _, w := range []struct {
		prefix string
		kept   bool
	}{{"198.18.64.0/24", false}, {"2001:2:1::/48", false}, {"198.18.66.0/24", true}} {
		if _, ok, _ := m.Block.Lookup(netip.MustParsePrefix(w.prefix)); ok != w.kept {
			t.Errorf("after the deletes %s is in the block list: %v, want %v", w.prefix, ok, w.kept)
		}
	}
	frames[0].want, frames[1].want = xdpPass, xdpPass
	check("deleted")

	// One audit record for each verdict written: 1.1, 1.2, the IPv6 /64
	// and /48, 64.0/24, 2.3 and 2.4.
	applied := map[string]bool{}
	for _, r := range readAudit(t, auditPath) {
		if r.Who != "fleet:edge-2" || r.Result != "ok" || len(r.Target) != 1 {
			t.Errorf("audit record %+v", r)
			continue
		}
		applied[r.Target[0]] = true
	}
	want := []string{"198.18.1.1/32", "198.18.1.2/32", "2001:2:0:1::/64", "2001:2:1::/48", "198.18.64.0/24", "198.18.2.3/32", "198.18.2.4/32"}
	if len(applied) != len(want) {
		t.Errorf("audited %v, want %v", applied, want)
	}
	for _, p := range want {
		if !applied[p] {
			t.Errorf("%s applied but not audited", p)
		}
	}
}

// readAudit reads the audit log at path.
func readAudit(t *testing.T, path string) []AuditRecord {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []AuditRecord
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r AuditRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

// fakeFleetClient records what the agent publishes and applies it as the
// winner (the merge is the real client's, tested in agent/fleet, with the
// agent in TestFleetPublishApplyOrder and test/agent).
type fakeFleetClient struct {
	published []fleet.Verdict
	issuer    string
	status    fleet.Status
	bucket    string
	apply     fleet.Applier
}

func (c *fakeFleetClient) Run(ctx context.Context) error { <-ctx.Done(); return nil }
func (c *fakeFleetClient) PublishAndApply(v fleet.Verdict) (string, error) {
	c.published = append(c.published, v)
	ch := fleet.Change{Target: v.Target, Winner: &v, Remove: v.Action == fleet.ActionRevoke}
	return c.apply.Apply([]fleet.Change{ch})[v.Target], nil
}
func (c *fakeFleetClient) Status() fleet.Status                         { return c.status }
func (c *fakeFleetClient) BucketDigest(context.Context) (string, error) { return c.bucket, nil }
func (c *fakeFleetClient) Collectors() []prometheus.Collector           { return nil }
func (c *fakeFleetClient) Issuer(netip.Prefix) (issuer string, found bool) {
	return c.issuer, c.issuer != ""
}

// call sends one request to the control API as root.
func call(t *testing.T, h http.Handler, method, path, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req = req.WithContext(context.WithValue(req.Context(), peerKey{}, 0))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestFleetControl drives the operator's fleet actions through the control
// API over a real datapath: without a fleet block, or one that does not
// publish "cli", --fleet is refused with 409; block add --fleet publishes a
// block with max_ttl by default (a longer --ttl is refused) and applies it
// here at once; verdicts del --fleet publishes a revoke and removes the
// fleet's verdict here; verdicts list names the issuer; GET /v1/fleet says
// whether the digests match.
func TestFleetControl(t *testing.T) {
	d := testutil.Load(t, testutil.Setup{})
	cfg := &config.Config{}
	f, _ := fleetTestAgent(t, cfg, d)
	st := f.state()
	noFleet := newControlServer(controlDeps{log: f.log, audit: f.audit, state: f.state, writers: f.writers, mapErrs: f.mapErrs, capture: http.NotFound}).handler()
	for _, c := range []struct{ method, path, body string }{
		{http.MethodPost, "/v1/lists/block", `{"cidrs": ["198.18.1.1"], "fleet": true}`},
		{http.MethodDelete, "/v1/verdicts", `{"sources": ["198.18.1.1"], "fleet": true}`},
		{http.MethodGet, "/v1/fleet", ``},
	} {
		if rec := call(t, noFleet, c.method, c.path, c.body); rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), "no fleet block in the config") {
			t.Errorf("%s %s without a fleet block: %d %s, want 409 no fleet block", c.method, c.path, rec.Code, rec.Body)
		}
	}

	client := &fakeFleetClient{issuer: "edge-9", status: fleet.Status{Node: "edge-1", Digest: "abc"}, bucket: "abc", apply: f}
	settings := &desired.Fleet{Options: fleet.Options{Node: "edge-1", MaxTTL: 2 * time.Hour}, PublishScorer: true}
	link := &fleetLink{client: client, settings: settings, applier: f, log: f.log, audit: f.audit}
	withFleet := *st
	withFleet.fleet = link
	state := func() *readState { return &withFleet }
	h := newControlServer(controlDeps{log: f.log, audit: f.audit, state: state, writers: f.writers, mapErrs: f.mapErrs, capture: http.NotFound}).handler()
	f.state = state
	if rec := call(t, h, http.MethodPost, "/v1/lists/block", `{"cidrs": ["198.18.1.1"], "fleet": true}`); rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), "does not publish operator actions") {
		t.Errorf("publish without cli: %d %s, want 409", rec.Code, rec.Body)
	}
	settings.PublishCLI = true
	for _, c := range []struct {
		path, body string
		code       int
	}{
		{"/v1/lists/allow", `{"cidrs": ["198.18.1.1"], "fleet": true}`, http.StatusBadRequest},
		{"/v1/lists/block", `{"cidrs": ["198.18.1.1"], "fleet": true, "ttl": "3h"}`, http.StatusBadRequest},
	} {
		if rec := call(t, h, http.MethodPost, c.path, c.body); rec.Code != c.code {
			t.Errorf("POST %s %s: %d %s, want %d", c.path, c.body, rec.Code, rec.Body, c.code)
		}
	}
	if len(client.published) != 0 {
		t.Fatalf("refused requests published %v", client.published)
	}

	before := time.Now()
	if rec := call(t, h, http.MethodPost, "/v1/lists/block", `{"cidrs": ["198.18.1.1", "198.18.64.0/24"], "fleet": true, "reason": "scanner"}`); rec.Code != http.StatusOK {
		t.Fatalf("block add --fleet: %d %s", rec.Code, rec.Body)
	}
	after := time.Now()
	if len(client.published) != 2 {
		t.Fatalf("published %v, want 2 verdicts", client.published)
	}
	for i, target := range []string{"198.18.1.1/32", "198.18.64.0/24"} {
		v := client.published[i]
		life := v.Expires.Sub(v.IssuedAt)
		if v.Target != netip.MustParsePrefix(target) || v.Action != fleet.ActionBlock || v.Issuer != "edge-1" || v.Origin != "cli" ||
			v.Reason != "scanner" || v.IssuedAt.Before(before) || v.IssuedAt.After(after) || life != 2*time.Hour {
			t.Errorf("published %+v (life %s), want a block of %s by edge-1 for max_ttl 2h", v, life, target)
		}
	}
	run := d.NewRunner()
	for _, src := range []string{"198.18.1.1", "198.18.64.7"} {
		if got, err := run.Run(testutil.UDP4(t, src, "198.19.0.1", 53, 32)); err != nil || got != xdpDrop {
			t.Errorf("frame from %s after block add --fleet: XDP verdict %d (%v), want drop", src, got, err)
		}
	}
	rec := call(t, h, http.MethodGet, "/v1/verdicts", ``)
	var vs []api.Verdict
	if err := json.Unmarshal(rec.Body.Bytes(), &vs); err != nil || len(vs) != 1 || vs[0].Origin != "fleet:edge-9" {
		t.Errorf("verdicts list: %s (%v), want one verdict of origin fleet:edge-9", rec.Body, err)
	}

	if rec := call(t, h, http.MethodDelete, "/v1/verdicts", `{"sources": ["198.18.1.1", "198.18.64.0/24"], "fleet": true}`); rec.Code != http.StatusOK {
		t.Fatalf("verdicts del --fleet: %d %s", rec.Code, rec.Body)
	}
	if len(client.published) != 4 || client.published[2].Action != fleet.ActionRevoke || client.published[3].Action != fleet.ActionRevoke ||
		client.published[3].Target != netip.MustParsePrefix("198.18.64.0/24") {
		t.Errorf("published %v, want two revokes after the blocks", client.published)
	}
	for _, src := range []string{"198.18.1.1", "198.18.64.7"} {
		if got, err := run.Run(testutil.UDP4(t, src, "198.19.0.1", 53, 32)); err != nil || got != xdpPass {
			t.Errorf("frame from %s after verdicts del --fleet: XDP verdict %d (%v), want pass", src, got, err)
		}
	}

	for _, c := range []struct {
		bucket string
		sync   bool
	}{{"abc", true}, {"abd", false}} {
		client.bucket = c.bucket
		var fs api.FleetStatus
		rec := call(t, h, http.MethodGet, "/v1/fleet", ``)
		if err := json.Unmarshal(rec.Body.Bytes(), &fs); err != nil || rec.Code != http.StatusOK || fs.InSync != c.sync ||
			fs.Node != "edge-1" || !slices.Equal(fs.Publish, []string{"scorer", "cli"}) {
			t.Errorf("fleet status with bucket digest %s: %d %s, want in_sync %v", c.bucket, rec.Code, rec.Body, c.sync)
		}
	}
}

// TestFleetApplierBatch applies more verdicts in one batch than the
// verdict map holds: the batch write fails part-way, the verdicts are
// written again one by one, and every one is accounted for: those in the
// map audited ok, the others counted as map errors and audited as errors.
// A remove after a put of the same target in one batch leaves it removed.
func TestFleetApplierBatch(t *testing.T) {
	sizes := testutil.SmallSizes()
	sizes.Verdicts = 64
	d := testutil.Load(t, testutil.Setup{Sizes: sizes})
	f, auditPath := fleetTestAgent(t, &config.Config{}, d)
	const n = 100
	var vs []fleet.Verdict
	for i := range n {
		vs = append(vs, fleetVerdict(netip.AddrFrom4([4]byte{198, 18, 30, byte(i)}).String()+"/32", fleet.ActionBlock, time.Hour))
	}
	if refused := f.Apply(put(vs...)); len(refused) != 0 {
		t.Fatalf("refused %v, want none", refused)
	}
	in := 0
	for _, v := range vs {
		if e, ok, err := d.Maps.Verdict(v.Target.Addr()); err != nil {
			t.Fatal(err)
		} else if ok && e.Origin == maps.OriginFleet && e.Action == maps.VerdictBlock {
			in++
		}
	}
	if in != int(sizes.Verdicts) {
		t.Errorf("%d verdicts in the map, want it full: %d", in, sizes.Verdicts)
	}
	ok, failed := fleetAuditResults(t, auditPath)
	if ok != in || failed != n-in {
		t.Errorf("audit: %d ok, %d errors; want %d ok, %d errors", ok, failed, in, n-in)
	}
	var counted dto.Metric
	if err := f.mapErrs.WithLabelValues("verdicts").Write(&counted); err != nil {
		t.Fatal(err)
	}
	if got := counted.GetCounter().GetValue(); got != float64(n-in) {
		t.Errorf("verdict map errors counted: %v, want %d", got, n-in)
	}

	x := vs[0]
	x.Expires = x.Expires.Add(time.Minute) // a longer one: written again
	f.Apply([]fleet.Change{{Target: x.Target, Winner: &x}, {Target: x.Target, Remove: true}})
	if _, ok, err := d.Maps.Verdict(x.Target.Addr()); err != nil || ok {
		t.Errorf("%s put then removed in one batch: in the map %v (%v), want removed", x.Target, ok, err)
	}
}

// fleetAuditResults counts the audit log's records of fleet verdicts
// applied (ok) and not written (error).
func fleetAuditResults(t *testing.T, path string) (ok, failed int) {
	t.Helper()
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		var r AuditRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		if r.What != "fleet.block" || !strings.HasPrefix(r.Who, "fleet:") {
			continue
		}
		switch r.Result {
		case "ok":
			ok++
		case "error":
			failed++
		}
	}
	return ok, failed
}
