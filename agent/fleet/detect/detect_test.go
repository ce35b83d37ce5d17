package detect_test

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bulwark-filter/bulwark/agent/fleet"
	"github.com/bulwark-filter/bulwark/agent/fleet/detect"
	"github.com/bulwark-filter/bulwark/agent/fleet/summary"
	"github.com/bulwark-filter/bulwark/test/natstest"
)

const (
	stream = "bulwark-summaries"
	bucket = "bulwark-verdicts"
	hosts  = 10
)

func connect(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func sketch(ports ...uint16) summary.Sketch {
	var s summary.Sketch
	for _, p := range ports {
		s.AddPort(p)
	}
	return s
}

// waitFor polls cond every 100 ms, up to 600 times (a bound for a busy
// machine, not a timing assertion).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 600 {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("gave up waiting for %s", what)
}

// Ten agents publish a window in which one source probes 2 ports on each
// host (1000+2i and 1001+2i: 20 ports, estimate 21, see the summary
// tests), a benign client uses ports 80 and 443 on every host, and each
// host has its own clients on port 443. Two aggregators run: the bucket
// ends with one verdict, the scanner's, with the value both compute; the
// benign sources get none. A summary published after the window is
// decided is counted late and changes nothing.
func TestTwoAggregatorsOneVerdict(t *testing.T) {
	srv := natstest.Cluster(t, 1, natstest.Options{})
	js := connect(t, srv.URL(0))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The fleet clients create the bucket; here the test does.
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, History: 1})
	if err != nil {
		t.Fatal(err)
	}

	cfg := detect.DefaultConfig()
	cfg.Role, cfg.Window, cfg.Grace = detect.RoleAggregate, 5*time.Second, 2*time.Second
	var mu sync.Mutex
	var decided []fleet.Verdict
	aggs := make([]*detect.Aggregator, 2)
	var wg sync.WaitGroup
	for i := range aggs {
		a, err := detect.NewAggregator(stream, bucket, cfg, hclog.NewNullLogger(), func(v fleet.Verdict) {
			mu.Lock()
			decided = append(decided, v)
			mu.Unlock()
		})
		if err != nil {
			t.Fatal(err)
		}
		aggs[i] = a
		ajs := connect(t, srv.URL(0))
		wg.Go(func() { _ = a.Run(ctx, ajs) })
	}
	defer wg.Wait()
	defer cancel()

	scanner, client := netip.MustParsePrefix("198.18.0.1/32"), netip.MustParsePrefix("198.18.0.2/32")
	// Publish at the start of a window: every summary is stored well before
	// the window's end + grace (one published after it would be late).
	time.Sleep(time.Until(summary.WindowStart(time.Now(), cfg.Window).Add(cfg.Window + 100*time.Millisecond)))
	start := summary.WindowStart(time.Now(), cfg.Window)
	pjs := connect(t, srv.URL(0))
	var last *summary.Summary
	for h := range hosts {
		node := fmt.Sprintf("edge-%d", h)
		s := &summary.Summary{Node: node, Start: start, Length: cfg.Window, Entries: []summary.Entry{
			{Source: scanner, Ports: sketch(uint16(1000+2*h), uint16(1001+2*h)), Packets: 2},
			{Source: client, Ports: sketch(80, 443), Packets: 500},
		}}
		for c := range 50 {
			own := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(10 + h), byte(c)}), 32)
			s.Entries = append(s.Entries, summary.Entry{Source: own, Ports: sketch(443), Packets: 20})
		}
		p := detect.NewPublisher(stream, node, 1, cfg.Window, nil, hclog.NewNullLogger())
		if err := p.Publish(ctx, pjs, s); err != nil {
			t.Fatal(err)
		}
		// 2 + 50 sources, nothing left out.
		if st := p.Stats(); st.Published != 1 || st.Sources != 52 || st.Omitted != 0 || st.Bytes == 0 || st.Bytes > summary.MaxSize {
			t.Fatalf("%s: publisher stats %+v", node, st)
		}
		last = s
	}
	// Windows counts a window when it is decided, before its verdicts are
	// written: wait for each aggregator's write (or its finding it written).
	waitFor(t, "both aggregators to decide the window and write its verdict", func() bool {
		for _, a := range aggs {
			if st := a.Stats(); st.Windows < 1 || st.Verdicts+st.Unchanged < 1 {
				return false
			}
		}
		return true
	})

	end := start.Add(cfg.Window)
	want := fleet.Verdict{Target: scanner, Action: fleet.ActionBlock, Issuer: "aggregate", Origin: "aggregate",
		Reason:   "fleet: seen on 10 hosts, 2 ports each (21 distinct) in 5 s",
		IssuedAt: end, Expires: end.Add(time.Hour)}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for k := range keys.Keys() {
		got = append(got, k)
	}
	if len(got) != 1 || got[0] != "aggregate.4-c6120001-32" {
		t.Fatalf("bucket keys %v, want only aggregate.4-c6120001-32; aggregators %+v, %+v", got, aggs[0].Stats(), aggs[1].Stats())
	}
	e, err := kv.Get(ctx, got[0])
	if err != nil {
		t.Fatal(err)
	}
	v, err := fleet.DecodeValue(e.Value())
	if err != nil {
		t.Fatal(err)
	}
	if !v.IssuedAt.Equal(want.IssuedAt) || !v.Expires.Equal(want.Expires) {
		t.Errorf("times %v..%v, want %v..%v", v.IssuedAt, v.Expires, want.IssuedAt, want.Expires)
	}
	v.IssuedAt, v.Expires = want.IssuedAt, want.Expires
	if v != want {
		t.Errorf("verdict %+v\nwant %+v", v, want)
	}
	mu.Lock()
	if len(decided) != 2 || decided[0] != decided[1] {
		t.Errorf("the aggregators decided %v, want the same verdict twice", decided)
	}
	mu.Unlock()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(detect.Collectors(nil, aggs[0])...)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	metrics := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			name := f.GetName()
			for _, l := range m.GetLabel() {
				name += "/" + l.GetValue()
			}
			metrics[name] = m.GetCounter().GetValue()
		}
	}
	if metrics["bulwark_fleet_aggregate_windows_total"] != 1 || metrics["bulwark_fleet_aggregate_summaries_total/merged"] != hosts ||
		metrics["bulwark_fleet_aggregate_verdicts_total/written"]+metrics["bulwark_fleet_aggregate_verdicts_total/unchanged"] != 1 {
		t.Errorf("aggregator metrics %v", metrics)
	}
	s0, s1 := aggs[0].Stats(), aggs[1].Stats()
	if s0.Summaries != hosts || s1.Summaries != hosts || s0.Verdicts+s0.Unchanged != 1 || s1.Verdicts+s1.Unchanged != 1 {
		t.Errorf("stats %+v and %+v: want %d summaries and one verdict each", s0, s1, hosts)
	}

	// A late summary (another node, same window) is left out.
	last.Node = "edge-late"
	p := detect.NewPublisher(stream, "edge-late", 1, cfg.Window, nil, hclog.NewNullLogger())
	if err := p.Publish(ctx, js, last); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the late summary to be counted", func() bool {
		return aggs[0].Stats().Late == 1 && aggs[1].Stats().Late == 1
	})
	if st := aggs[0].Stats(); st.Windows != 1 || st.Summaries != hosts {
		t.Errorf("after a late summary: %+v", st)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := detect.DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for name, f := range map[string]func(*detect.Config){
		"role":        func(c *detect.Config) { c.Role = "both" },
		"window":      func(c *detect.Config) { c.Window = 1500 * time.Millisecond },
		"min_hosts":   func(c *detect.Config) { c.Rule.MinHosts = 1 },
		"action":      func(c *detect.Config) { c.Action = fleet.ActionRevoke },
		"ttl":         func(c *detect.Config) { c.TTL = time.Second },
		"grace":       func(c *detect.Config) { c.Grace = 2 * time.Minute },
		"max_sources": func(c *detect.Config) { c.MaxSources = 0 },
	} {
		c := detect.DefaultConfig()
		f(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
