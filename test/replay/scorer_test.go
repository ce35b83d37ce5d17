package replay_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/test/testutil"
)

const scorerConfig = `
interface "eth0" {}
limits {
  default {
    pps   = 100
    burst = 200
  }
}
maps {
  sources      = 4096
  rule_buckets = 4096
  verdicts     = 1024
}
reputation {
  mode           = "enforce"
  interval       = "1s"
  throttle_score = 40
  block_score    = 60
  max_verdicts   = 1000
}
`

// TestReplayScorerVerdict: 50 well-behaved sources (5 pps each) for 20 s of
// capture time, then a new source floods UDP at 2000 pps for 5 s while the
// others carry on. The scorer, cycling every second of
// capture time, must issue a block on the flooder inside the flood window
// (at: capture time, RFC3339), and the flooder's later frames must be
// dropped by the verdict. Nobody else gets a verdict.
func TestReplayScorerVerdict(t *testing.T) {
	const (
		clients   = 50
		clientPPS = 5
		quiet     = 20 * time.Second
		flood     = 5 * time.Second
		floodPPS  = 2000
		flooder   = "198.18.0.66"
	)
	var pkts []pkt
	frames := map[string][]byte{}
	for c := 0; c < clients; c++ {
		src := fmt.Sprintf("198.18.2.%d", c+10)
		frames[src] = testutil.UDP4(t, src, "198.18.0.1", 443, 200)
		step := time.Second / clientPPS
		// Spread the clients' phases over the step.
		off := time.Duration(c) * step / clients
		for at := off; at < quiet+flood; at += step {
			pkts = append(pkts, pkt{captureStart.Add(at), frames[src]})
		}
	}
	frames[flooder] = testutil.UDP4(t, flooder, "198.18.0.1", 53, 60)
	for i := 0; i < int(flood.Seconds())*floodPPS; i++ {
		pkts = append(pkts, pkt{captureStart.Add(quiet + time.Duration(i)*time.Second/floodPPS + time.Microsecond), frames[flooder]})
	}
	sortPkts(pkts)
	if len(pkts) > 100_000 {
		t.Fatalf("%d frames: keep the capture small", len(pkts))
	}
	dir := t.TempDir()
	cfg := writeFile(t, filepath.Join(dir, "bulwark.hcl"), scorerConfig)
	rep := replayJSON(t, cfg, writePcap(t, filepath.Join(dir, "flood.pcap"), ltEthernet, pkts))

	floodStart, floodEnd := captureStart.Add(quiet), captureStart.Add(quiet+flood)
	var onFlooder int
	for _, v := range rep.Verdicts {
		if v.Source != flooder {
			t.Errorf("verdict on a well-behaved source: %+v", v)
			continue
		}
		onFlooder++
		at, err := time.Parse(time.RFC3339, v.At)
		if err != nil {
			t.Errorf("verdict at %q: not RFC3339: %v", v.At, err)
			continue
		}
		if at.Before(floodStart) || at.After(floodEnd) {
			t.Errorf("verdict %s on the flooder at %s: outside the flood window [%s, %s] of capture time",
				v.Action, v.At, floodStart.Format(time.RFC3339), floodEnd.Format(time.RFC3339))
		}
		t.Logf("verdict: %s %s at %s score %.1f components %v", v.Action, v.Source, v.At, v.Score, v.Components)
	}
	if onFlooder == 0 {
		t.Fatalf("no verdict on the flooder; verdicts %+v", rep.Verdicts)
	}
	blocked := false
	for _, v := range rep.Verdicts {
		blocked = blocked || (v.Source == flooder && v.Action == "block")
	}
	if !blocked {
		t.Errorf("no block verdict on the flooder: %+v", rep.Verdicts)
	}
	s, ok := rep.source(flooder)
	if !ok {
		t.Fatalf("no flooder in the sources")
	}
	if s.Packets != uint64(flood.Seconds())*floodPPS {
		t.Errorf("flooder packets %d, want %d", s.Packets, uint64(flood.Seconds())*floodPPS)
	}
	if s.Reasons["verdict"] == 0 || rep.Reasons["verdict"] != s.Reasons["verdict"] {
		t.Errorf("flooder: reasons %v (report reasons %v): want later frames dropped by the verdict, and only its",
			s.Reasons, rep.Reasons)
	}
	// The verdict came within a few seconds of capture time: most of the
	// flood after it is dropped by the verdict, not the limit.
	if s.Reasons["verdict"] < uint64(floodPPS) {
		t.Errorf("flooder: only %d frames dropped by the verdict (of %d)", s.Reasons["verdict"], s.Packets)
	}
	for _, x := range rep.Sources {
		if x.Source != flooder && x.Dropped != 0 {
			t.Errorf("well-behaved source %s: %d dropped %v", x.Source, x.Dropped, x.Reasons)
		}
	}
	t.Logf("%d frames; flooder: %d packets, %d passed, %v", len(pkts), s.Packets, s.Passed, s.Reasons)
}
