package replay

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulwark-filter/bulwark/loader"
)

// FuzzCaptureRead reads arbitrary bytes as a capture file, as replay does
// (the reader, the Ethernet header for raw and cooked link types, the
// timeline and the parse of each frame's source): no panic, and every
// error names the file. The shared captures are the seeds.
func FuzzCaptureRead(f *testing.F) {
	seeds, err := filepath.Glob("../../test/testdata/pcaps/*.pcap*")
	if err != nil || len(seeds) == 0 {
		f.Fatalf("no seed captures (%v)", err)
	}
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		if len(b) <= 64<<10 {
			f.Add(b)
		}
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "fuzz.pcap")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := openCapture(path)
		if err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		defer r.Close()
		tl := newTimeline([]*captureReader{r}, 64, partitioner{srcPrefix6: 64}, layout{})
		for n := 0; n < 1<<16; n++ {
			f, err := tl.next()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				if !strings.Contains(err.Error(), path) {
					t.Fatalf("error does not name the file: %v", err)
				}
				return
			}
			if len(f.buf) != loader.ReplayHeadroom+len(f.eth) || f.record != n+1 {
				t.Fatalf("frame %d: record %d, %d bytes with %d of headroom", n+1, f.record, len(f.buf), len(f.buf)-len(f.eth))
			}
		}
	})
}
