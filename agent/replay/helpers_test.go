package replay

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// rec is one record of a test capture.
type rec struct {
	ts    time.Time
	frame []byte
}

// writePcap writes recs as an Ethernet pcap (nanosecond timestamps).
func writePcap(t *testing.T, path string, recs []rec) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriterNanos(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		ci := gopacket.CaptureInfo{Timestamp: r.ts, CaptureLength: len(r.frame), Length: len(r.frame)}
		if err := w.WritePacket(ci, r.frame); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// writeFile writes text to dir/name and returns the path.
func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// t0 is where test captures start.
var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
