package replay_test

import (
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/test/testutil"
)

const scansConfig = `
interface "eth0" {}
maps {
  sources      = 4096
  rule_buckets = 4096
  verdicts     = 1024
}
reputation {
  mode         = "enforce"
  interval     = "1s"
  max_verdicts = 1000
}
`

// TestReplaySlowScans merges real benign captures (bro.org and Wikipedia
// browsing, each replayed six times over 11 minutes) with synthetic slow
// scans, on capture time with the default config (scan window 9m10s):
//
//	vertical   198.18.77.7  1 TCP SYN per 10 s, a new port each, for 10 min (60 ports)
//	horizontal 198.18.77.8  1 TCP SYN per 5 s to port 22, a new address of 198.18.1.0/24 each, for 10 min
//	prober     198.18.77.9  a connection (SYN, ACK, FIN) to each of the same 20 ports every minute, for 11 min (a monitoring system: benign)
//
// Both scanners must be blocked before their scan ends (10 min), by
// port_scan_long and horizontal_scan; nobody else gets a verdict (the benign captures'
// sources and the prober).
func TestReplaySlowScans(t *testing.T) {
	dir := t.TempDir()
	const (
		vertical   = "198.18.77.7"
		horizontal = "198.18.77.8"
		prober     = "198.18.77.9"
		dst        = "198.18.0.1"
		scanFor    = 10 * time.Minute
	)
	var pkts []pkt
	for i := 0; i < int(scanFor/(10*time.Second)); i++ {
		port := uint16(1024 + i*7919%40000)
		pkts = append(pkts, pkt{captureStart.Add(time.Duration(i) * 10 * time.Second), testutil.TCP4(t, vertical, dst, port, testutil.FlagSYN)})
	}
	for i := 0; i < int(scanFor/(5*time.Second)); i++ {
		a := netip.AddrFrom4([4]byte{198, 18, 1, byte(i + 1)})
		pkts = append(pkts, pkt{captureStart.Add(time.Duration(i)*5*time.Second + time.Millisecond), testutil.TCP4(t, horizontal, a.String(), 22, testutil.FlagSYN)})
	}
	for m := 0; m < 11; m++ {
		for p := 0; p < 20; p++ { // a full connection to each: SYN, ACK, FIN
			at := captureStart.Add(time.Duration(m)*time.Minute + time.Duration(p)*30*time.Millisecond + 2*time.Millisecond)
			for i, flags := range []uint8{testutil.FlagSYN, testutil.FlagACK, testutil.FlagFIN | testutil.FlagACK} {
				pkts = append(pkts, pkt{at.Add(time.Duration(i) * 10 * time.Millisecond), testutil.TCP4(t, prober, dst, uint16(8000+p*11), flags)})
			}
		}
	}
	sortPkts(pkts)

	// The scans' capture first: the merged timeline is on its clock.
	args := []string{"--merge", "--offset", "0s"}
	captures := []string{writePcap(t, filepath.Join(dir, "scans.pcap"), ltEthernet, pkts)}
	for i := 0; i < 6; i++ {
		for _, b := range []string{"zeek_bro.org.pcap", "zeek_wikipedia.pcap"} {
			captures = append(captures, filepath.Join(pcapDir, b))
			args = append(args, "--offset", (time.Duration(i)*2*time.Minute + time.Duration(len(captures))*time.Second).String())
		}
	}
	rep := replayJSON(t, writeFile(t, filepath.Join(dir, "bulwark.hcl"), scansConfig), append(args, captures...)...)
	blocked := map[string]bool{}
	for _, v := range rep.Verdicts {
		want := map[string]string{vertical: "port_scan_long", horizontal: "horizontal_scan"}[v.Source]
		if want == "" {
			t.Errorf("verdict on a benign source: %+v", v)
			continue
		}
		top, most := "", 0.0
		for c, x := range v.Components {
			if x > most {
				top, most = c, x
			}
		}
		t.Logf("%s: %s at %s, score %.1f, top %s %.1f", v.Source, v.Action, v.At, v.Score, top, most)
		if top != want {
			t.Errorf("%s: top component %s, want %s", v.Source, top, want)
		}
		blocked[v.Source] = blocked[v.Source] || v.Action == "block"
	}
	// A verdict's time is reported on the clock of the capture whose frame
	// was next when the cycle ran, so the test times the blocks by the
	// frames they dropped: a block before the scan ends drops its last
	// frames (the verdict of a cycle applies from the next frame on).
	for _, s := range []string{vertical, horizontal} {
		src, ok := rep.source(s)
		if !blocked[s] || !ok || src.Dropped == 0 {
			t.Errorf("%s: blocked %v, %+v; want a block that drops its frames before the scan ends", s, blocked[s], src)
			continue
		}
		t.Logf("%s: %d of %d frames dropped: blocked after about %s", s, src.Dropped, src.Packets,
			time.Duration(src.Packets-src.Dropped)*scanFor/time.Duration(src.Packets))
	}
	for _, src := range rep.Sources {
		if src.Dropped != 0 && src.Source != vertical && src.Source != horizontal {
			t.Errorf("benign source %s: %d of %d frames dropped", src.Source, src.Dropped, src.Packets)
		}
	}
	if p, ok := rep.source(prober); !ok || p.Dropped != 0 || p.Packets != 11*20*3 {
		t.Errorf("prober: %+v; want %d packets, none dropped", p, 11*20*3)
	}
}
