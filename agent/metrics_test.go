package agent

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/desired"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// stalledReader is a datapath reader whose sources walk stops until the
// test lets it go: a scrape held mid-walk.
type stalledReader struct {
	*maps.Set
	entered, release chan struct{}
}

func (s stalledReader) CountSources() (int, error) {
	close(s.entered)
	<-s.release
	return s.Set.CountSources()
}

// gauge is the value of the metric name with the labels (name, value
// pairs) among families; -1 when absent.
func gauge(families []*dto.MetricFamily, name string, labels ...string) float64 {
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue metrics
				}
			}
			switch {
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Counter != nil:
				return m.Counter.GetValue()
			}
		}
	}
	return -1
}

// TestScrapeDoesNotHoldWritersLock holds a scrape in the middle of its walk
// of the sources map and, meanwhile, takes the writers' lock and adds to
// the block list through the control API; then lets the scrape finish and
// checks its figures against what the test wrote.
func TestScrapeDoesNotHoldWritersLock(t *testing.T) {
	d := testutil.Load(t, testutil.Setup{})
	const sources = 100
	src := make([]maps.Source, sources)
	for i := range src {
		src[i].Source = netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 1, byte(i)}), 32)
	}
	if err := d.Maps.WriteSources(src); err != nil {
		t.Fatal(err)
	}
	// One allow entry in force and one expired: the expired one is not
	// counted.
	if err := d.Maps.Allow.Add([]maps.Entry{
		{Prefix: netip.MustParsePrefix("198.18.2.0/24"), ListID: desired.ListConfigAllow},
		{Prefix: netip.MustParsePrefix("2001:2::/64"), ListID: desired.ListRuntimeAllow, ExpiresNS: 1},
	}); err != nil {
		t.Fatal(err)
	}

	a := New("", hclog.NewNullLogger())
	var err error
	if a.audit, err = OpenAudit(""); err != nil {
		t.Fatal(err)
	}
	want, diags := desired.Compile(&config.Config{})
	if diags.HasErrors() {
		t.Fatal(config.FormatDiagnostics(diags))
	}
	a.cfg, a.want = &config.Config{Mode: "enforce"}, want
	a.ifaces = []*iface{{name: "bwk-test0", mode: "generic", dp: d}}
	a.mu.Lock()
	a.publish()
	a.mu.Unlock()

	stall := stalledReader{Set: d.Maps, entered: make(chan struct{}), release: make(chan struct{})}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(newCollector(func() *metricsView {
		v := *a.metricsView()
		v.ifaces = []metricsIface{v.ifaces[0]}
		v.ifaces[0].maps = stall
		return &v
	}))
	type gathered struct {
		fs  []*dto.MetricFamily
		err error
	}
	scrape := make(chan gathered, 1)
	go func() {
		fs, err := reg.Gather()
		scrape <- gathered{fs, err}
	}()
	<-stall.entered

	// The scrape is held mid-walk: the writers' lock is free and a block
	// add goes through.
	if !a.mu.TryLock() {
		t.Fatal("the writers' lock is held while a scrape walks the maps")
	}
	a.mu.Unlock()
	added := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		req := httptest.NewRequest(http.MethodPost, "/v1/lists/block",
			strings.NewReader(`{"cidrs": ["198.18.3.1", "198.18.4.0/24", "2001:2::1"]}`))
		req = req.WithContext(context.WithValue(req.Context(), peerKey{}, 0))
		rec := httptest.NewRecorder()
		a.control().handler().ServeHTTP(rec, req)
		added <- rec
	}()
	select {
	case rec := <-added:
		if rec.Code != http.StatusOK {
			t.Fatalf("block add during a scrape: %d %s", rec.Code, rec.Body)
		}
	case <-time.After(time.Minute):
		t.Fatal("a block add waits for the scrape")
	}
	select {
	case <-scrape:
		t.Fatal("the scrape finished while its sources walk was held")
	default:
	}
	close(stall.release)
	g := <-scrape
	if g.err != nil {
		t.Fatal(g.err)
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"bulwark_tracked_sources", []string{"interface", "bwk-test0"}, sources},
		{"bulwark_list_entries", []string{"list", "block", "family", "ipv4"}, 2}, // added during the scrape, read after
		{"bulwark_list_entries", []string{"list", "block", "family", "ipv6"}, 1},
		{"bulwark_list_entries", []string{"list", "allow", "family", "ipv4"}, 1},
		{"bulwark_list_entries", []string{"list", "allow", "family", "ipv6"}, 0}, // expired
		{"bulwark_verdicts_active", []string{"action", "block"}, 0},
		{"bulwark_attach_mode", []string{"interface", "bwk-test0", "mode", "generic"}, 1},
		{"bulwark_scrape_errors_total", nil, 0},
		{"bulwark_map_entries", []string{"interface", "bwk-test0", "map", "sources"}, sources},
		{"bulwark_map_max_entries", []string{"interface", "bwk-test0", "map", "sources"}, float64(testutil.SmallSizes().Sources)},
		{"bulwark_map_entries", []string{"interface", "bwk-test0", "map", "block_hosts4"}, 1},
		{"bulwark_map_entries", []string{"interface", "bwk-test0", "map", "block_nets4"}, 1},
		{"bulwark_map_entries", []string{"interface", "bwk-test0", "map", "block_hosts6"}, 1},
		{"bulwark_map_entries", []string{"interface", "bwk-test0", "map", "allow_nets6"}, 1}, // expired, still in the map
		{"bulwark_map_max_entries", []string{"interface", "bwk-test0", "map", "block_nets6"}, float64(testutil.SmallSizes().BlockPrefixes)},
		{"bulwark_map_entries", []string{"interface", "bwk-test0", "map", "verdicts"}, 0},
		{"bulwark_map_max_entries", []string{"interface", "bwk-test0", "map", "verdicts"}, float64(testutil.SmallSizes().Verdicts)},
	} {
		if got := gauge(g.fs, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}
