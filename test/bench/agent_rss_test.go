package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/bulwark-filter/bulwark/loader"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/agenttest"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// agentRSSEnv names the environment variable that turns TestAgentRSS1M on:
// the file its figures are written to, as JSON. make bench sets it.
const agentRSSEnv = "BULWARK_AGENT_RSS_OUT"

// agentRSS is what TestAgentRSS1M measured: the agent's resident memory
// idle and with a million sources tracked and scored.
type agentRSS struct {
	Sources        int     `json:"sources"`           // entries in the agent's sources map
	Interval       string  `json:"scoring_interval"`  // reputation.interval
	Cycles         int     `json:"cycles_over_all"`   // scoring cycles completed over all of them
	CycleSeconds   float64 `json:"cycle_seconds"`     // mean duration of those cycles
	IdleRSSBytes   uint64  `json:"idle_rss_bytes"`    // VmRSS before the sources were written
	RSSBytes       uint64  `json:"rss_bytes"`         // VmRSS at the end
	HWMBytes       uint64  `json:"hwm_bytes"`         // VmHWM (peak RSS) at the end
	HeapInuseBytes float64 `json:"heap_inuse_bytes"`  // go_memstats_heap_inuse_bytes at the end
	RSSMiB         float64 `json:"rss_mib"`           // RSSBytes in MiB
	HWMMiB         float64 `json:"hwm_mib"`           // HWMBytes in MiB
	BytesPerSource float64 `json:"rss_bytes_per_src"` // (RSSBytes - IdleRSSBytes) / Sources
}

// procMemory reads VmRSS and VmHWM, in bytes, from /proc/<pid>/status.
func procMemory(pid int) (rss, hwm uint64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("process memory: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) != 2 || fs[1] != "kB" {
			return 0, 0, fmt.Errorf("process memory: bad %s line %q", k, sc.Text())
		}
		kb, err := strconv.ParseUint(fs[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("process memory: %s: %w", k, err)
		}
		if k == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, fmt.Errorf("process memory: %w", err)
	}
	if rss == 0 || hwm == 0 {
		return 0, 0, fmt.Errorf("process memory: no VmRSS or VmHWM in /proc/%d/status", pid)
	}
	return rss, hwm, nil
}

// TestAgentRSS1M measures the real agent's memory with a million tracked
// sources (the "agent RSS with 1M tracked sources"): `bulwark run`
// on a testbed veth with maps.sources = 2^20 and the reputation engine
// scoring every second. The test writes 1M distinct sources (198.19.0.0/16
// and 2001:2:0:ffff::/64, IPv6 tracked at /128) into the agent's pinned
// sources map, rewrites them with grown counters after every cycle (as if
// every source kept sending), waits until the scorer has completed two
// cycles over all of them, and reads VmRSS and VmHWM of the agent process.
//
// It takes about 15 s and 250 MB, so it runs only when agentRSSEnv names the
// file for its figures (make bench sets it); `make test` skips it.
func TestAgentRSS1M(t *testing.T) {
	out := benchOnly(t, agentRSSEnv, "measure the agent with 1M sources")
	const (
		n        = 1_000_000
		interval = time.Second
		full     = 2 // scoring cycles over all n sources before the reading
	)
	e := agenttest.NewEnv(t, agenttest.Options{DirPrefix: "bwk-rss-", MetricsAddr: "127.0.0.1:9740"})
	e.WriteConfig("", agenttest.Config{
		Maps:       agenttest.Sizes{Sources: 1 << 20, Verdicts: 1 << 17},
		IPv6Prefix: 128, // each host of 2001:2:0:ffff::/64 is a source of its own
		Extra:      fmt.Sprintf("\nreputation {\n  mode     = \"enforce\"\n  interval = %q\n}\n", interval),
	})
	a := e.Start()
	pid := a.Cmd.Process.Pid
	if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err != nil || strings.TrimSpace(string(comm)) != "bulwark" {
		t.Fatalf("process %d is %q (%v), want the agent", pid, comm, err)
	}

	// One scrape serves every check below: the metrics read the whole
	// sources map, so they are polled at most twice a second.
	cycles := func(m agenttest.MetricSet) int { return int(m.Get("bulwark_score_cycle_seconds_count")) }
	waitCycles := func(want int, what string) agenttest.MetricSet {
		t.Helper()
		deadline := time.Now().Add(30*interval + 30*time.Second)
		for {
			if a.Exited() {
				t.Fatalf("agent exited (%v):\n%s", a.Err, a.LogText())
			}
			m := e.Metrics()
			if cycles(m) >= want {
				return m
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s: %d scoring cycles, want %d", what, cycles(m), want)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}

	waitCycles(2, "two idle scoring cycles")
	idle, _, err := procMemory(pid)
	if err != nil {
		t.Fatal(err)
	}

	pin := filepath.Join(loader.PinDir(e.PinRoot, e.TB.ServerIf), maps.MapSources)
	srcs, err := ebpf.LoadPinnedMap(pin, nil)
	if err != nil {
		t.Fatalf("open the agent's sources map: %v", err)
	}
	defer srcs.Close()
	t0 := time.Now()
	if err := writeSources(srcs, n, 1); err != nil {
		t.Fatal(err)
	}
	// The testbed's own chatter (neighbour discovery) may add a source or
	// two.
	if got, err := countSources(srcs); err != nil || got < n {
		t.Fatalf("the agent's sources map holds %d sources (%v), want at least %d", got, err, n)
	}
	t.Logf("%d sources written in %v", n, time.Since(t0).Round(time.Millisecond))

	// A cycle running while the map filled may have seen part of it; the
	// ones after it see all of it. Between cycles the counters grow.
	c0 := cycles(e.Metrics())
	m := waitCycles(c0+1, "the cycle that overlapped the fill")
	from, sum0 := cycles(m), m.Get("bulwark_score_cycle_seconds_sum")
	for round := uint64(2); cycles(m) < c0+1+full; round++ {
		if err := writeSources(srcs, n, round); err != nil {
			t.Fatal(err)
		}
		m = waitCycles(cycles(m)+1, "a scoring cycle over 1M sources")
	}
	rss, hwm, err := procMemory(pid)
	if err != nil {
		t.Fatal(err)
	}
	// Counted whole: above maps.SourceSample bulwark_tracked_sources is an
	// estimate.
	tracked, err := countSources(srcs)
	if err != nil || tracked < n {
		t.Fatalf("the agent's sources map holds %d sources (%v), want at least %d", tracked, err, n)
	}
	done := cycles(m) - from
	const mib = 1 << 20
	r := agentRSS{
		Sources: tracked, Interval: interval.String(), Cycles: done,
		CycleSeconds: (m.Get("bulwark_score_cycle_seconds_sum") - sum0) / float64(done),
		IdleRSSBytes: idle, RSSBytes: rss, HWMBytes: hwm,
		HeapInuseBytes: m.Get("go_memstats_heap_inuse_bytes"),
		RSSMiB:         float64(rss) / mib, HWMMiB: float64(hwm) / mib,
		BytesPerSource: (float64(rss) - float64(idle)) / float64(tracked),
	}
	t.Logf("agent RSS with %d tracked sources: VmRSS %.1f MiB (idle %.1f MiB), VmHWM %.1f MiB, Go heap in use %.1f MiB; "+
		"%.0f B of RSS per source; %d scoring cycles over all of them, %.3f s each",
		tracked, r.RSSMiB, float64(idle)/mib, r.HWMMiB, r.HeapInuseBytes/mib, r.BytesPerSource, r.Cycles, r.CycleSeconds)
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
		t.Fatalf("write the figures: %v", err)
	}
}

// benchOnly returns the file named by the environment variable env, where a
// measurement that only make bench runs writes its figures; without it the
// test skips, saying what it would measure. With it, it needs root and the
// real binary (built here unless the harness has one).
func benchOnly(t *testing.T, env, what string) string {
	t.Helper()
	out := os.Getenv(env)
	if out == "" {
		t.Skipf("SKIP: set %s=FILE to %s (make bench does)", env, what)
	}
	requireAgentBin(t)
	return out
}

// requireAgentBin skips t when not root and builds the bulwark binary the
// agent tests run, once.
func requireAgentBin(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t)
	if agenttest.Bin == "" {
		bin, err := testutil.BuildBulwark("../..", t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		agenttest.Bin = bin
	}
}
