package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/bulwark-filter/bulwark/agent/api"
	"github.com/bulwark-filter/bulwark/agent/desired"
	"github.com/bulwark-filter/bulwark/loader"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/agenttest"
)

// scrapeEnv names the environment variable that turns TestScrape1M on: the
// file its figures are written to, as JSON. make bench sets it.
const scrapeEnv = "BULWARK_SCRAPE_OUT"

// scrapeFigures is what TestScrape1M measured.
type scrapeFigures struct {
	BlockEntries   int       `json:"block_entries"`       // block list entries the scrapes counted
	Sources        int       `json:"sources"`             // tracked sources the scrapes counted
	ScrapeMS       []float64 `json:"scrape_ms"`           // each scrape, alone
	ScrapeMedianMS float64   `json:"scrape_median_ms"`    // their median
	AddMS          []float64 `json:"block_add_ms"`        // each block add, issued during a scrape
	AddMedianMS    float64   `json:"block_add_median_ms"` // their median
	AddsInScrape   int       `json:"adds_within_scrape"`  // adds that completed before their scrape did
}

// addBlockHosts adds n distinct host entries (hostEntries 0..n-1) to the
// agent's run-time block list through its control API, as `bulwark block
// add` does, in requests of the most CIDRs one may carry.
func addBlockHosts(client *http.Client, n int) error {
	es := hostEntries(n, 0, desired.ListRuntimeBlock)
	for i := 0; i < n; i += api.MaxCIDRsPerReq {
		req := api.ListRequest{Reason: "bench"}
		for _, e := range es[i:min(i+api.MaxCIDRsPerReq, n)] {
			req.CIDRs = append(req.CIDRs, e.Prefix.Addr().String())
		}
		body, err := json.Marshal(req)
		if err != nil {
			return err
		}
		resp, err := client.Post("http://bulwark/v1/lists/block", "application/json", bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("block add: %w", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("block add of entries %d-%d: HTTP %d", i, i+len(req.CIDRs)-1, resp.StatusCode)
		}
	}
	return nil
}

// TestScrape1M measures readers against writers in the real agent (`bulwark
// run` on a testbed veth): with 1M block entries and 1M tracked sources in
// its pinned maps, the time of one /metrics scrape (several, alone), and the
// time a `block add` (POST /v1/lists/block on the control socket) takes when
// issued while a scrape runs. The targets: a scrape within 300 ms,
// the add within 20 ms.
//
// It takes about 30 s and 300 MB, so it runs only when scrapeEnv names the
// file for its figures (make bench sets it); `make test` skips it.
func TestScrape1M(t *testing.T) {
	out := benchOnly(t, scrapeEnv, "measure scrapes with 1M entries and sources")
	const (
		n      = 1_000_000
		rounds = 9
	)
	e := agenttest.NewEnv(t, agenttest.Options{DirPrefix: "bwk-scr-", MetricsAddr: "127.0.0.1:9741"})
	e.WriteConfig("", agenttest.Config{
		Maps:       agenttest.Sizes{Sources: 1 << 20, BlockHosts: 1 << 20},
		IPv6Prefix: 128, // each host of 2001:2:0:ffff::/64 is a source of its own
	})
	a := e.Start()
	client := agenttest.SocketClient(e.Sock, time.Minute)
	t0 := time.Now()
	if err := addBlockHosts(client, n); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d block entries added through the control API in %v", n, time.Since(t0).Round(time.Millisecond))
	pins := loader.PinDir(e.PinRoot, e.TB.ServerIf)
	srcs, err := ebpf.LoadPinnedMap(filepath.Join(pins, maps.MapSources), nil)
	if err != nil {
		t.Fatalf("open the agent's sources map: %v", err)
	}
	defer srcs.Close()
	if err := writeSources(srcs, n, 1); err != nil {
		t.Fatal(err)
	}

	var f scrapeFigures
	scrape := func() (time.Duration, agenttest.MetricSet) {
		t0 := time.Now()
		text := e.MetricsText()
		return time.Since(t0), agenttest.ParseMetrics(t, text)
	}
	// The figures the scrapes read are those written: 2^17 IPv4 and the
	// rest IPv6 entries; about n sources (an estimate above
	// maps.SourceSample, within about 1 %).
	_, m := scrape()
	v4, v6 := m.Get("bulwark_list_entries", "list", "block", "family", "ipv4"), m.Get("bulwark_list_entries", "list", "block", "family", "ipv6")
	if v4 != 1<<17 || v6 != n-1<<17 {
		t.Fatalf("bulwark_list_entries{block}: ipv4 %v ipv6 %v, want %d and %d", v4, v6, 1<<17, n-1<<17)
	}
	f.BlockEntries = int(v4 + v6)
	f.Sources = int(m.Get("bulwark_tracked_sources"))
	if f.Sources < n*95/100 || f.Sources > n*105/100 {
		t.Fatalf("bulwark_tracked_sources %d, want %d within 5 %%", f.Sources, n)
	}
	for range rounds {
		d, _ := scrape()
		f.ScrapeMS = append(f.ScrapeMS, float64(d.Microseconds())/1000)
	}
	f.ScrapeMedianMS = median(f.ScrapeMS)

	for i := range rounds {
		done := make(chan struct{})
		go func() { defer close(done); scrape() }()
		// A third into a scrape of median length.
		time.Sleep(time.Duration(f.ScrapeMedianMS/3*1000) * time.Microsecond)
		body := fmt.Sprintf(`{"cidrs": ["2001:2:0:fffe::%x"], "reason": "bench"}`, i+1)
		t0 := time.Now()
		resp, err := client.Post("http://bulwark/v1/lists/block", "application/json", strings.NewReader(body))
		took := time.Since(t0)
		if err != nil {
			t.Fatalf("block add: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("block add: HTTP %d", resp.StatusCode)
		}
		select {
		case <-done:
		default:
			f.AddsInScrape++
		}
		f.AddMS = append(f.AddMS, float64(took.Microseconds())/1000)
		<-done
	}
	f.AddMedianMS = median(f.AddMS)
	if a.Exited() {
		t.Fatalf("agent exited (%v):\n%s", a.Err, a.LogText())
	}
	t.Logf("scrape with %d block entries and %d sources: median %.1f ms (min %.1f, max %.1f) over %d; "+
		"block add during a scrape: median %.2f ms (min %.2f, max %.2f), %d of %d done before their scrape",
		f.BlockEntries, f.Sources, f.ScrapeMedianMS, slices.Min(f.ScrapeMS), slices.Max(f.ScrapeMS), len(f.ScrapeMS),
		f.AddMedianMS, slices.Min(f.AddMS), slices.Max(f.AddMS), f.AddsInScrape, len(f.AddMS))
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
		t.Fatalf("write the figures: %v", err)
	}
}
