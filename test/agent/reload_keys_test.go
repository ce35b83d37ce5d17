package agent_test

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/agenttest"
)

// policyMaps are the maps a config writes (not the state traffic makes).
var policyMaps = []string{
	maps.MapSettings, maps.MapRules, maps.MapPortRules, maps.MapClasses4, maps.MapClasses6,
	maps.MapAllowHosts4, maps.MapAllowHosts6, maps.MapAllowNets4, maps.MapAllowNets6,
	maps.MapBlockHosts4, maps.MapBlockHosts6, maps.MapBlockNets4, maps.MapBlockNets6,
}

// policyDigest hashes every entry of the pinned policy maps: what the datapath enforces.
func (e *env) policyDigest() string {
	e.T.Helper()
	h := sha256.New()
	for _, name := range policyMaps {
		m, err := ebpf.LoadPinnedMap(filepath.Join(e.PinRoot, e.TB.ServerIf, name), &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			e.T.Fatalf("open pinned map %s: %v", name, err)
		}
		k, v := make([]byte, m.KeySize()), make([]byte, m.ValueSize())
		it := m.Iterate()
		for it.Next(&k, &v) {
			fmt.Fprintf(h, "%s %x %x\n", name, k, v)
		}
		err = it.Err()
		m.Close()
		if err != nil {
			e.T.Fatalf("read pinned map %s: %v", name, err)
		}
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// explanation is the part of GET /v1/explain/{ip} the key test reads.
type explanation struct {
	Source     string             `json:"source"`
	Exempt     bool               `json:"exempt"`
	Thresholds map[string]float64 `json:"thresholds"`
}

func (e *env) explain(ip string) explanation {
	e.T.Helper()
	resp, err := agenttest.SocketClient(e.Sock, 10*time.Second).Get("http://bulwark/v1/explain/" + ip)
	if err != nil {
		e.T.Fatal(err)
	}
	defer resp.Body.Close()
	var x explanation
	if err := json.NewDecoder(resp.Body).Decode(&x); err != nil || resp.StatusCode != http.StatusOK {
		e.T.Fatalf("explain %s: HTTP %d, %v", ip, resp.StatusCode, err)
	}
	return x
}

// okReloads counts the ok reloads in the audit log.
func (e *env) okReloads() int {
	n := 0
	for _, rec := range e.auditLog() {
		if rec.What == "reload" && rec.Result == "ok" {
			n++
		}
	}
	return n
}

// pcapngFiles counts the flight recorder's files in dir.
func pcapngFiles(dir string) int {
	es, _ := filepath.Glob(filepath.Join(dir, "drops-*.pcapng"))
	return len(es)
}

// TestReloadEveryKeyAgent changes every key of the config schema (agenttest.KeyChanges) in a running agent, one at
// a time, and reloads: a key the issue says needs a restart is refused with "restart needed: <key>" and the
// running policy is kept (the same reload also asks for monitor mode, which must not happen); any other key is
// taken, and its effect is observed where it shows: the datapath's policy maps for policy keys, the flight
// recorder's files, the log, `explain` and the metrics for the others. After each key the base config is
// reloaded again.
func TestReloadEveryKeyAgent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	mmdb, err := filepath.Abs(filepath.Join("..", "testdata", "mmdb"))
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"$DIR": e.Dir, "$MMDB": mmdb}
	baseSrc, err := agenttest.Edit([]byte(e.Render(agenttest.Config{Block: []string{"198.18.66.0/24"}})), agenttest.KeysBase, nil, vars)
	if err != nil {
		t.Fatal(err)
	}
	agenttest.WriteFile(t, e.CfgPath, string(baseSrc))
	a := e.Start()
	baseDigest := e.policyDigest()
	dropsDir := filepath.Join(e.Dir, "drops", e.TB.ServerIf)
	blocked := agenttest.Addr("198.18.66.5")

	reload := func(what string) agenttest.Result {
		t.Helper()
		r := e.CLI("reload")
		if a.Exited() {
			t.Fatalf("%s: agent exited (%v):\n%s", what, a.Err, a.LogText())
		}
		return r
	}
	for _, key := range config.Keys() {
		kc, ok := agenttest.KeyChanges[key]
		if !ok {
			t.Errorf("%s: no entry in agenttest.KeyChanges", key)
			continue
		}
		if err := agenttest.WriteKeyFiles(e.Dir, mmdb, kc.Files); err != nil {
			t.Fatal(err)
		}
		sets := kc.Set
		if kc.Restart {
			sets = append(append([]agenttest.Setting(nil), sets...), agenttest.Setting{Attr: "mode", Value: `"monitor"`})
		}
		src, err := agenttest.Edit(baseSrc, sets, kc.Add, vars)
		if err != nil {
			t.Fatal(err)
		}
		// What is observed needs a state before the reload.
		reloadedLines, okReloads := strings.Count(a.LogText(), "config reloaded"), e.okReloads()
		if key == "events.max_files" {
			for i := range 6 {
				agenttest.WriteFile(t, filepath.Join(dropsDir, fmt.Sprintf("drops-20260101T000000Z-%06d.pcapng", 900000+i)), "")
			}
		}
		agenttest.WriteFile(t, e.CfgPath, string(src))
		r := reload(key)
		if kc.Restart {
			if r.Code == 0 || !strings.Contains(r.Stderr, "restart needed: "+key) {
				t.Errorf("%s: reload %s, want it refused with \"restart needed: %s\"", key, r, key)
			}
			var st struct{ Mode string }
			if err := json.Unmarshal([]byte(e.MustCLI("status", "--json")), &st); err != nil || st.Mode != "enforce" {
				t.Errorf("%s: after a refused reload the status says mode %q (%v), want the running mode enforce", key, st.Mode, err)
			}
			if got := e.policyDigest(); got != baseDigest {
				t.Errorf("%s: a refused reload changed the datapath's policy maps", key)
			}
		} else {
			if r.Code != 0 {
				t.Errorf("%s: reload %s, want it taken", key, r)
			} else {
				e.observe(t, key, a, baseDigest, reloadedLines, okReloads, blocked)
			}
		}
		agenttest.WriteFile(t, e.CfgPath, string(baseSrc))
		if r := reload(key + " (back to the base)"); r.Code != 0 {
			t.Fatalf("%s: reload of the base config: %s", key, r)
		}
		if got := e.policyDigest(); got != baseDigest {
			t.Fatalf("%s: the base config reloaded gives other policy maps than at start", key)
		}
	}

	// An events.dir that cannot be made refuses the reload, and the recorder goes on in the old one.
	agenttest.WriteFile(t, filepath.Join(e.Dir, "a-file"), "")
	src, err := agenttest.Edit(baseSrc, []agenttest.Setting{{Block: []string{"events"}, Attr: "dir", Value: `"$DIR/a-file/drops"`}}, nil, vars)
	if err != nil {
		t.Fatal(err)
	}
	agenttest.WriteFile(t, e.CfgPath, string(src))
	if r := reload("events.dir under a file"); r.Code == 0 || !strings.Contains(r.Stderr, "events.dir") {
		t.Errorf("reload to an events.dir under a file: %s, want it refused naming events.dir", r)
	}
	before := e.Metrics().Get("bulwark_flight_recorder_samples_total")
	e.Send(blocked, 20)
	if got := e.WaitMetric(20*time.Second, before+20, "bulwark_flight_recorder_samples_total"); got != before+20 {
		t.Errorf("after the refused reload the recorder wrote %v of 20 sampled drops, want 20", got-before)
	}
}

// observe checks that a reload changing key (and nothing else) took effect.
func (e *env) observe(t *testing.T, key string, a *agenttest.Agent, baseDigest string, reloadedLines, okReloads int, blocked netip.Addr) {
	t.Helper()
	policy := func() {
		if e.policyDigest() == baseDigest {
			t.Errorf("%s: reload taken but the datapath's policy maps did not change", key)
		}
	}
	switch {
	case key == "limits.ipv6_prefix":
		policy()
		// The scorer follows: explain groups an IPv6 source by the new /56.
		if x := e.explain("2001:2::1"); x.Source != "2001:2::/56" {
			t.Errorf("%s: explain 2001:2::1 says source %s, want 2001:2::/56", key, x.Source)
		}
	case key == "mode" || key == "malformed" || strings.HasPrefix(key, "allow.") || strings.HasPrefix(key, "block.") ||
		strings.HasPrefix(key, "limits.") || key == "events.sample_every" || key == "events.max_per_second":
		policy()
	case key == "events.dir":
		dir := filepath.Join(e.Dir, "keytest-drops", e.TB.ServerIf)
		e.Send(blocked, 20)
		agenttest.WaitFor(t, 20*time.Second, "flight recorder files in the new events.dir "+dir, func() bool { return pcapngFiles(dir) > 0 })
	case key == "events.max_files":
		// Six old files were put in the directory: with max_files = 3, the recorder keeps 3 once it writes.
		dir := filepath.Join(e.Dir, "drops", e.TB.ServerIf)
		e.Send(blocked, 20)
		agenttest.WaitFor(t, 20*time.Second, "max_files = 3 files in "+dir, func() bool { return pcapngFiles(dir) == 3 })
	case key == "events.max_file_mib":
		agenttest.WaitFor(t, 10*time.Second, "the recorder restarted with max_file_mib=2", func() bool {
			return strings.Contains(a.LogText(), "flight recorder restarted") && strings.Contains(a.LogText(), "max_file_mib=2")
		})
	case key == "log.level":
		// At warn, the reload's own info line is no longer written.
		if n := strings.Count(a.LogText(), "config reloaded"); n != reloadedLines {
			t.Errorf("%s: %d \"config reloaded\" lines after a reload to level warn, want still %d", key, n, reloadedLines)
		}
	case key == "reputation.throttle_score":
		if x := e.explain("198.18.3.3"); x.Thresholds["throttle"] != 40 {
			t.Errorf("%s: explain thresholds %v, want throttle 40", key, x.Thresholds)
		}
	case key == "reputation.block_score":
		if x := e.explain("198.18.3.3"); x.Thresholds["block"] != 90 {
			t.Errorf("%s: explain thresholds %v, want block 90", key, x.Thresholds)
		}
	case key == "reputation.protect":
		if x := e.explain("198.18.94.1"); !x.Exempt {
			t.Errorf("%s: explain 198.18.94.1 is not exempt after it was protected", key)
		}
	case key == "feed":
		if got := e.WaitMetric(20*time.Second, 1, "bulwark_feed_entries", "feed", "keytest"); got != 1 {
			t.Errorf("%s: bulwark_feed_entries{feed=\"keytest\"} = %v, want 1 (the feed file's one entry)", key, got)
		}
	default:
		// The scorer's durations, caps, weights and mode, the location databases and weights, and detach_on_exit
		// have no effect to see without traffic that scores or an exit: the reload is taken and audited.
		if n := e.okReloads(); n != okReloads+1 {
			t.Errorf("%s: %d ok reloads in the audit log, want %d", key, n, okReloads+1)
		}
	}
}
