package replay_test

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/test/parsecases"
)

// plainConfig has no limits and no lists: every frame is decided by the
// parse alone.
const plainConfig = `
interface "eth0" {}
maps {
  sources      = 4096
  rule_buckets = 4096
}
`

// TestReplayMalformedRules replays the hand-built frame of every row of the
// "Malformed rules" table of docs/datapath.md with `bulwark replay`: the report counts
// the table's outcomes, and --write-dropped holds exactly the malformed
// frames, in order; not one legitimate frame is among them.
func TestReplayMalformedRules(t *testing.T) {
	cases := parsecases.Cases(t)
	dir := t.TempDir()
	cfg := writeFile(t, filepath.Join(dir, "bulwark.hcl"), plainConfig)
	var pkts, malformed []pkt
	want := map[parsecases.Outcome]uint64{}
	for i, c := range cases {
		p := pkt{captureStart.Add(time.Duration(i) * time.Millisecond), c.Frame}
		pkts = append(pkts, p)
		if c.Want == parsecases.Malformed {
			malformed = append(malformed, p)
		}
		want[c.Want]++
	}
	in := writePcap(t, filepath.Join(dir, "rules.pcap"), ltEthernet, pkts)
	out := filepath.Join(dir, "dropped.pcap")
	rep := replayJSON(t, cfg, "--write-dropped", out, in)
	if rep.Packets != uint64(len(cases)) || rep.Reasons["malformed"] != want[parsecases.Malformed] ||
		rep.Reasons["passed"] != want[parsecases.Passed] || rep.Reasons["non_ip"] != want[parsecases.NonIP] {
		t.Errorf("report: %d packets, reasons %v; want %d packets: malformed %d, passed %d, non_ip %d", rep.Packets,
			rep.Reasons, len(cases), want[parsecases.Malformed], want[parsecases.Passed], want[parsecases.NonIP])
	}
	got := readPcap(t, out)
	if len(got) != len(malformed) {
		t.Errorf("%d frames dropped, want the %d malformed ones", len(got), len(malformed))
	}
	for i := range min(len(got), len(malformed)) {
		if !bytes.Equal(got[i].frame, malformed[i].frame) || !got[i].ts.Equal(malformed[i].ts) {
			t.Errorf("dropped frame %d is not malformed case %d", i, i)
		}
	}
	dropped := map[string]bool{}
	for _, g := range got {
		dropped[string(g.frame)] = true
	}
	for _, c := range cases {
		if c.Want != parsecases.Malformed && dropped[string(c.Frame)] {
			t.Errorf("%s: %s: dropped; the table says %s", c.Rule, c.Name, c.Want)
		}
	}
	r := replay(t, "--config", cfg, in)
	t.Logf("bulwark replay --config bulwark.hcl rules.pcap:\n%s", r.stdout)
}
