package replay

import (
	"errors"
	"io"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/agent/desired"
	"github.com/bulwark-filter/bulwark/loader"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// TestTimeline: the read stage lays captures on one timeline. The second
// capture starts (t0) before the first ended (t0+10s), so it is laid a
// second after the first's last frame (offset 11 s); a clock that steps
// back inside a capture is held at the last time. Each frame carries its
// file, record number, source and tracking key (IPv6 at the /56 prefix).
func TestTimeline(t *testing.T) {
	dir := t.TempDir()
	a4 := testutil.UDP4(t, "198.18.0.1", "198.18.1.1", 53, 10)
	a6 := testutil.UDP6(t, "2001:2::1:2:3:4", "2001:2:0:1::1", 53, 10)
	one := writePcap(t, filepath.Join(dir, "one.pcap"), []rec{{t0, a4}, {t0.Add(10 * time.Second), a6}, {t0.Add(5 * time.Second), a4}})
	two := writePcap(t, filepath.Join(dir, "two.pcap"), []rec{{t0, a4}, {t0.Add(2 * time.Second), a6}})
	readers, err := openCaptures([]string{one, two})
	if err != nil {
		t.Fatal(err)
	}
	defer closeCaptures(readers)
	tl := newTimeline(readers, 56, partitioner{srcPrefix6: 56}, layout{})
	want := []struct {
		ts     time.Duration // from t0
		offset time.Duration
		path   string
		record int
		src    string
	}{
		{0, 0, one, 1, "198.18.0.1"},
		{10 * time.Second, 0, one, 2, "2001:2::1:2:3:4"},
		{10 * time.Second, 0, one, 3, "198.18.0.1"}, // stepped back 5 s: held
		{11 * time.Second, 11 * time.Second, two, 1, "198.18.0.1"},
		{13 * time.Second, 11 * time.Second, two, 2, "2001:2::1:2:3:4"},
	}
	for i, w := range want {
		f, err := tl.next()
		if err != nil {
			t.Fatalf("frame %d: %v", i+1, err)
		}
		if got := f.ts.Sub(t0); got != w.ts || f.offset != w.offset || f.path != w.path || f.record != w.record {
			t.Errorf("frame %d: at %v offset %v %s#%d; want at %v offset %v %s#%d", i+1, got, f.offset, f.path, f.record,
				w.ts, w.offset, w.path, w.record)
		}
		src := netip.MustParseAddr(w.src)
		if f.src != src {
			t.Errorf("frame %d: source %v; want %v", i+1, f.src, src)
		}
		var key [16]byte
		if src.Is4() {
			key = maps.SourceKey(src, 56)
			if f.family != 4 || f.name(56) != w.src {
				t.Errorf("frame %d: family %d name %q", i+1, f.family, f.name(56))
			}
		} else {
			key = netip.MustParseAddr("2001:2::").As16() // 2001:2::1:2:3:4 at /56
			if f.family != 6 || f.name(56) != "2001:2::/56" {
				t.Errorf("frame %d: family %d name %q; want 6, 2001:2::/56", i+1, f.family, f.name(56))
			}
		}
		if f.key != key {
			t.Errorf("frame %d: key %x; want %x", i+1, f.key, key)
		}
		if len(f.buf) != loader.ReplayHeadroom+len(f.eth) || string(f.eth) != string(map[bool][]byte{true: a4, false: a6}[src.Is4()]) {
			t.Errorf("frame %d: %d bytes behind %d of headroom, not the frame written", i+1, len(f.eth), len(f.buf)-len(f.eth))
		}
	}
	if _, err := tl.next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last frame: %v; want io.EOF", err)
	}
}

// TestScanCaptures: the scan keeps every frame in memory in capture order,
// counts the distinct source keys (three IPv4 hosts, two IPv6 hosts in one
// /64 and one in another: 5) and sizes the per-source tables from them:
// the smallest power of two from 4096 holding twice the sources (rule
// buckets: four times), capped at the config's size.
func TestScanCaptures(t *testing.T) {
	dir := t.TempDir()
	var recs []rec
	for i, src := range []string{"198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.0.1"} {
		recs = append(recs, rec{t0.Add(time.Duration(i) * time.Millisecond), testutil.UDP4(t, src, "198.18.1.1", 53, 10)})
	}
	for i, src := range []string{"2001:2::1", "2001:2::2", "2001:2:0:1::1"} {
		recs = append(recs, rec{t0.Add(time.Second + time.Duration(i)*time.Millisecond), testutil.UDP6(t, src, "2001:2:0:9::1", 53, 10)})
	}
	path := writePcap(t, filepath.Join(dir, "c.pcap"), recs)
	want := &desired.State{Sizes: loader.DefaultSizes()}
	want.Sizes.Aggregates = 2048 // smaller than 4096: the config's size wins
	sc, err := scanCaptures([]string{path}, want, layout{})
	if err != nil {
		t.Fatal(err)
	}
	if sc.sources != 5 {
		t.Errorf("%d sources; want 5", sc.sources)
	}
	if s := sc.sizes; s.Sources != 4096 || s.RuleBuckets != 4096 || s.Aggregates != 2048 || s.Verdicts != want.Sizes.Verdicts {
		t.Errorf("sizes %+v; want sources 4096, rule buckets 4096, aggregates 2048, the rest the config's", s)
	}
	var n int
	for _, b := range sc.frames {
		for _, f := range b.items {
			if f.record != n+1 || !f.ts.Equal(recs[n].ts) {
				t.Errorf("frame %d: record %d at %v; want record %d at %v", n+1, f.record, f.ts, n+1, recs[n].ts)
			}
			n++
		}
	}
	if n != len(recs) {
		t.Fatalf("%d frames kept; want %d", n, len(recs))
	}
	frames, stop, err := sc.stream([]string{path}, want, layout{})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	n = 0
	for b := range frames {
		n += len(b.items)
	}
	if n != len(recs) {
		t.Fatalf("%d frames streamed; want %d", n, len(recs))
	}
}

// TestStreamReadsAgain: captures that did not fit in memory (a scan with
// no frames) are read again, in batches of frameBatchSize, in order; a
// capture that cannot be opened is an error naming it.
func TestStreamReadsAgain(t *testing.T) {
	dir := t.TempDir()
	frame := testutil.UDP4(t, "198.18.0.1", "198.18.1.1", 53, 10)
	var recs []rec
	for i := range frameBatchSize + 3 {
		recs = append(recs, rec{t0.Add(time.Duration(i) * time.Microsecond), frame})
	}
	path := writePcap(t, filepath.Join(dir, "c.pcap"), recs)
	want := &desired.State{}
	frames, stop, err := scan{}.stream([]string{path}, want, layout{})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	var sizes []int
	n := 0
	for b := range frames {
		if b.err != nil {
			t.Fatal(b.err)
		}
		sizes = append(sizes, len(b.items))
		for _, f := range b.items {
			n++
			if f.record != n {
				t.Fatalf("frame %d: record %d", n, f.record)
			}
		}
	}
	if len(sizes) != 2 || sizes[0] != frameBatchSize || sizes[1] != 3 {
		t.Fatalf("batches %v; want [%d 3]", sizes, frameBatchSize)
	}
	missing := filepath.Join(dir, "missing.pcap")
	if _, _, err := (scan{}).stream([]string{path, missing}, want, layout{}); err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("missing capture: %v; want an error naming it", err)
	}
}
