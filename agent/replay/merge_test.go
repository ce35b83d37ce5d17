package replay

import (
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/test/testutil"
)

// TestMergedTimeline: with merge, the captures are interleaved by time,
// each moved to start at the first one's start plus its offset, whatever
// its own clock says (the second capture's clock is a year later).
func TestMergedTimeline(t *testing.T) {
	dir := t.TempDir()
	a := testutil.UDP4(t, "198.18.0.1", "198.18.1.1", 53, 10)
	b := testutil.UDP4(t, "198.18.0.2", "198.18.1.1", 53, 10)
	late := t0.AddDate(1, 0, 0)
	one := writePcap(t, filepath.Join(dir, "one.pcap"), []rec{{t0, a}, {t0.Add(2 * time.Second), a}, {t0.Add(4 * time.Second), a}})
	two := writePcap(t, filepath.Join(dir, "two.pcap"), []rec{{late, b}, {late.Add(time.Second), b}, {late.Add(5 * time.Second), b}})
	for _, c := range []struct {
		offsets []time.Duration
		want    []struct {
			at   time.Duration
			path string
		}
	}{
		{nil, []struct {
			at   time.Duration
			path string
		}{{0, one}, {0, two}, {time.Second, two}, {2 * time.Second, one}, {4 * time.Second, one}, {5 * time.Second, two}}},
		{[]time.Duration{0, 3 * time.Second}, []struct {
			at   time.Duration
			path string
		}{{0, one}, {2 * time.Second, one}, {3 * time.Second, two}, {4 * time.Second, one}, {4 * time.Second, two}, {8 * time.Second, two}}},
	} {
		readers, err := openCaptures([]string{one, two})
		if err != nil {
			t.Fatal(err)
		}
		tl := newTimeline(readers, 64, partitioner{srcPrefix6: 64}, layout{merge: true, offsets: c.offsets})
		for i, w := range c.want {
			f, err := tl.next()
			if err != nil {
				t.Fatalf("offsets %v, frame %d: %v", c.offsets, i+1, err)
			}
			if got := f.ts.Sub(t0); got != w.at || f.path != w.path {
				t.Errorf("offsets %v, frame %d: %s at %v; want %s at %v", c.offsets, i+1, filepath.Base(f.path), got,
					filepath.Base(w.path), w.at)
			}
			if !f.ci.Timestamp.Equal(f.ts.Add(-f.offset)) {
				t.Errorf("frame %d: original time %v is not its timeline time less its shift", i+1, f.ci.Timestamp)
			}
		}
		if _, err := tl.next(); !errors.Is(err, io.EOF) {
			t.Errorf("after the last frame: %v, want EOF", err)
		}
		closeCaptures(readers)
	}
}

// TestMergeOptions: offsets need merge and one per capture, none negative.
func TestMergeOptions(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, dir, "c.hcl", "interface \"eth0\" {}\n")
	cap1 := writePcap(t, filepath.Join(dir, "one.pcap"), []rec{{t0, testutil.UDP4(t, "198.18.0.1", "198.18.1.1", 53, 10)}})
	for want, o := range map[string]Options{
		"1 offsets for 1 captures: with merge": {Config: cfg, Captures: []string{cap1}, Offsets: []time.Duration{0}},
		"1 offsets for 2 captures":             {Config: cfg, Captures: []string{cap1, cap1}, Merge: true, Offsets: []time.Duration{0}},
		"offset -1s: want 0 or more":           {Config: cfg, Captures: []string{cap1}, Merge: true, Offsets: []time.Duration{-time.Second}},
	} {
		if _, err := Run(o); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: %v, want an error with %q", o, err, want)
		}
	}
}
