package replay

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/agent/desired"
	"github.com/bulwark-filter/bulwark/loader"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// TestRunFrameRunt: a frame shorter than an Ethernet header never reaches
// the datapath (no runner is needed): it is malformed, dropped, passed
// with malformed = "pass", and would_drop in monitor mode.
func TestRunFrameRunt(t *testing.T) {
	buf := make([]byte, loader.ReplayHeadroom+13)
	for _, tt := range []struct {
		name   string
		policy maps.Policy
		want   maps.Action
	}{
		{"enforce", maps.Policy{}, maps.ActionDrop},
		{"malformed pass", maps.Policy{MalformedPass: true}, maps.ActionPass},
		{"monitor", maps.Policy{Mode: maps.ModeMonitor}, maps.ActionWouldDrop},
		{"monitor, malformed pass", maps.Policy{Mode: maps.ModeMonitor, MalformedPass: true}, maps.ActionPass},
	} {
		dec, err := runFrame(nil, buf, replayBase, &tt.policy)
		if err != nil || !dec.runt || dec.Action != tt.want || dec.Reason != maps.ReasonMalformed {
			t.Errorf("%s: %+v, %v; want a runt, %v malformed", tt.name, dec, err, tt.want)
		}
	}
}

// TestRunFrames: the run stage through the real datapath. One source
// sends 20 frames in the same microsecond under a default limit of burst
// 5: the first 5 pass and 15 are dropped by the rate limit, in capture
// order, on one CPU and on two; a second source sends as many and fares
// the same.
func TestRunFrames(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	a := testutil.UDP4(t, "198.18.0.1", "198.18.1.1", 53, 10)
	b := testutil.UDP4(t, "198.18.200.2", "198.18.1.1", 53, 10)
	var recs []rec
	for i := range 20 {
		at := t0.Add(time.Duration(i) * time.Nanosecond)
		recs = append(recs, rec{at, a}, rec{at, b})
	}
	path := writePcap(t, filepath.Join(dir, "c.pcap"), recs)
	want := &desired.State{Policy: maps.Policy{Default: maps.Limit{PPS: 1, Burst: 5}}}
	want.Sizes = testutil.SmallSizes()
	if _, err := want.Policy.Compile(); err != nil {
		t.Fatal(err)
	}
	for _, cpus := range []int{1, 2} {
		sc, err := scanCaptures([]string{path}, want, layout{})
		if err != nil {
			t.Fatal(err)
		}
		d := testutil.Load(t, testutil.Setup{ReplayClock: true, Policy: want.Policy})
		p := newPool(d, cpus, &want.Policy)
		frames, stop, err := sc.stream([]string{path}, want, layout{})
		if err != nil {
			t.Fatal(err)
		}
		c := newCollector(want, nil)
		err = runFrames(frames, p, &datapath{Datapath: d}, time.Second, maxSegmentSpan(&want.Policy), c)
		stop()
		if err != nil {
			t.Fatal(err)
		}
		rep := c.report()
		if rep.Packets != 40 || rep.Actions["pass"] != 10 || rep.Actions["drop"] != 30 || rep.Reasons["ratelimit"] != 30 || rep.Rules["default"] != 30 {
			t.Errorf("%d CPUs: %+v; want 40 packets, 10 passed, 30 dropped by the default rule", cpus, rep)
		}
		for _, s := range rep.Sources {
			if s.Packets != 20 || s.Passed != 5 || s.Dropped != 15 {
				t.Errorf("%d CPUs: source %+v; want 20 packets, 5 passed, 15 dropped", cpus, s)
			}
		}
	}
}

// TestPartitionAndWorkers: sources in one aggregate prefix share a
// partition when the aggregate limit is on (their state is shared); the
// pool runs on one CPU when the new-source ceiling (10 pps, burst 10: a
// bucket 1 s deep) could refuse a source, that is when the sources'
// intervals (100 ms each) exceed half its depth: 5 sources fit, 6 do not.
func TestPartitionAndWorkers(t *testing.T) {
	agg := maps.Policy{Aggregate: maps.Limit{PPS: 100, Burst: 100}, AggregatePrefix4: 24, AggregatePrefix6: 48}
	pt := newPartitioner(&agg)
	a, b := pt.of(mustAddr("198.18.3.1")), pt.of(mustAddr("198.18.3.254"))
	if a != b {
		t.Errorf("one /24, aggregate on: partitions %x and %x", a, b)
	}
	if x, y := pt.of(mustAddr("2001:2:0:1::1")), pt.of(mustAddr("2001:2:0:ff::1")); x != y {
		t.Errorf("one /48, aggregate on: partitions %x and %x", x, y)
	}
	per := newPartitioner(&maps.Policy{})
	if per.of(mustAddr("::ffff:198.18.3.1")) != per.of(mustAddr("198.18.3.1")) {
		t.Error("an IPv4-mapped address is not partitioned as its IPv4 address")
	}
	all := workers(&maps.Policy{}, 1000, 0)
	if all < 1 || all > maxCPUs {
		t.Fatalf("workers %d; want 1..%d", all, maxCPUs)
	}
	if n := workers(&maps.Policy{}, 1000, 1); n != 1 {
		t.Errorf("--cpus 1: %d workers", n)
	}
	ceiling := maps.Policy{NewSources: maps.Limit{PPS: 10, Burst: 10}}
	if n := workers(&ceiling, 5, 0); n != all {
		t.Errorf("5 sources under the ceiling: %d workers; want %d", n, all)
	}
	if n := workers(&ceiling, 6, 0); n != 1 {
		t.Errorf("6 sources under the ceiling: %d workers; want 1", n)
	}
	if s := maxSegmentSpan(&ceiling); s != 500*time.Millisecond {
		t.Errorf("segment span %v; want half the ceiling's depth, 500ms", s)
	}
}
