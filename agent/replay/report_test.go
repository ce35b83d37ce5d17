package replay

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/gopacket/pcapgo"

	"github.com/bulwark-filter/bulwark/agent/api"
	"github.com/bulwark-filter/bulwark/agent/desired"
	"github.com/bulwark-filter/bulwark/agent/reputation"
	"github.com/bulwark-filter/bulwark/maps"
)

// TestCollector: the report stage counts each frame under its action,
// reason, rule and list names (a list id without a name as listN), keeps
// each source's fate (a would_drop is passed, with its reason), sorts the
// sources by drops, then packets, then name, writes only the dropped
// frames to the pcap with their capture time and original length, and
// shows verdicts at the time of their own capture.
func TestCollector(t *testing.T) {
	want := &desired.State{
		Policy:    maps.Policy{Default: maps.Limit{PPS: 1, Burst: 1}, Rules: []maps.Rule{{Name: "dns", Protocol: maps.ProtoUDP}}},
		ListNames: map[uint32]string{desired.ListConfigBlock: "block"},
	}
	path := filepath.Join(t.TempDir(), "dropped.pcap")
	dw, err := newDroppedWriter(path)
	if err != nil {
		t.Fatal(err)
	}
	c := newCollector(want, dw)
	mk := func(src string, at time.Duration, origLen int) *frame {
		a := netip.MustParseAddr(src)
		f := &frame{eth: []byte(src), ts: t0.Add(at), family: 4, src: a, key: maps.SourceKey(a, 64)}
		f.ci.Timestamp, f.ci.CaptureLength, f.ci.Length = f.ts, len(f.eth), origLen
		return f
	}
	mkRunt := func() *frame {
		f := &frame{eth: []byte{1}, ts: t0.Add(5 * time.Second)}
		f.ci.Timestamp, f.ci.CaptureLength, f.ci.Length = f.ts, 1, 1
		return f
	}
	for _, x := range []struct {
		f   *frame
		dec decision
	}{
		{mk("198.18.0.1", 0, 100), decision{Decision: maps.Decision{Action: maps.ActionPass, Reason: maps.ReasonPassed}}},
		{mk("198.18.0.1", time.Second, 100), decision{Decision: maps.Decision{Action: maps.ActionDrop, Reason: maps.ReasonRatelimit, Detail: 1}}},
		{mk("198.18.0.2", 2*time.Second, 10), decision{Decision: maps.Decision{Action: maps.ActionDrop, Reason: maps.ReasonBlocklist, Detail: desired.ListConfigBlock}}},
		{mk("198.18.0.2", 3*time.Second, 10), decision{Decision: maps.Decision{Action: maps.ActionDrop, Reason: maps.ReasonBlocklist, Detail: 9}}},
		{mk("198.18.0.3", 4*time.Second, 10), decision{Decision: maps.Decision{Action: maps.ActionWouldDrop, Reason: maps.ReasonRatelimit}}},
		{mkRunt(), decision{Decision: maps.Decision{Action: maps.ActionDrop, Reason: maps.ReasonMalformed}, runt: true}},
	} {
		if err := c.frame(x.f, x.dec); err != nil {
			t.Fatal(err)
		}
	}
	c.verdicts([]reputation.Verdict{{VerdictRecord: api.VerdictRecord{Source: netip.MustParsePrefix("198.18.0.2/32"), Action: "block", Score: 70,
		At: t0.Add(time.Hour), For: 10 * time.Minute, Enforced: true}}}, 30*time.Minute)
	// A second cycle's verdicts come in no fixed order; the report sorts
	// them by source, after the first cycle's.
	c.verdicts([]reputation.Verdict{
		{VerdictRecord: api.VerdictRecord{Source: netip.MustParsePrefix("198.18.0.9/32"), Action: "throttle", At: t0.Add(2 * time.Hour), For: time.Minute}},
		{VerdictRecord: api.VerdictRecord{Source: netip.MustParsePrefix("2001:2::/64"), Action: "block", At: t0.Add(2 * time.Hour), For: time.Minute}},
		{VerdictRecord: api.VerdictRecord{Source: netip.MustParsePrefix("198.18.0.1/32"), Action: "block", At: t0.Add(2 * time.Hour), For: time.Minute}},
	}, 0)
	rep := c.report()
	if err := dw.Close(); err != nil {
		t.Fatal(err)
	}

	if rep.Packets != 6 || rep.Runts != 1 || rep.Duration != "5s" {
		t.Errorf("packets %d runts %d duration %s; want 6, 1, 5s", rep.Packets, rep.Runts, rep.Duration)
	}
	for k, n := range map[string]uint64{"pass": 1, "drop": 4, "would_drop": 1} {
		if rep.Actions[k] != n {
			t.Errorf("action %s: %d; want %d", k, rep.Actions[k], n)
		}
	}
	for k, n := range map[string]uint64{"passed": 1, "ratelimit": 2, "blocklist": 2, "malformed": 1, "verdict": 0} {
		if rep.Reasons[k] != n {
			t.Errorf("reason %s: %d; want %d", k, rep.Reasons[k], n)
		}
	}
	if len(rep.Rules) != 2 || rep.Rules["dns"] != 1 || rep.Rules["default"] != 1 {
		t.Errorf("rules %v; want dns 1, default 1", rep.Rules)
	}
	if len(rep.Lists) != 2 || rep.Lists["block"] != 1 || rep.Lists["list9"] != 1 {
		t.Errorf("lists %v; want block 1, list9 1", rep.Lists)
	}
	wantSources := []Source{
		{Source: "198.18.0.2", Packets: 2, Dropped: 2, Reasons: map[string]uint64{"blocklist": 2}},
		{Source: "198.18.0.1", Packets: 2, Passed: 1, Dropped: 1, Reasons: map[string]uint64{"ratelimit": 1}},
		{Source: "198.18.0.3", Packets: 1, Passed: 1, Reasons: map[string]uint64{"ratelimit": 1}},
	}
	if len(rep.Sources) != len(wantSources) {
		t.Fatalf("sources %+v; want %+v", rep.Sources, wantSources)
	}
	for i, w := range wantSources {
		s := rep.Sources[i]
		if s.Source != w.Source || s.Packets != w.Packets || s.Passed != w.Passed || s.Dropped != w.Dropped || len(s.Reasons) != len(w.Reasons) {
			t.Errorf("source %d: %+v; want %+v", i, s, w)
		}
		for k, n := range w.Reasons {
			if s.Reasons[k] != n {
				t.Errorf("source %s reason %s: %d; want %d", s.Source, k, s.Reasons[k], n)
			}
		}
	}
	if len(rep.Verdicts) != 4 || rep.Verdicts[0].Source != "198.18.0.2" || rep.Verdicts[0].At != t0.Add(30*time.Minute).Format(time.RFC3339Nano) ||
		rep.Verdicts[0].For != "10m0s" {
		t.Fatalf("verdicts %+v; want first a block of 198.18.0.2 at %s for 10m0s", rep.Verdicts, t0.Add(30*time.Minute).Format(time.RFC3339Nano))
	}
	for i, src := range []string{"198.18.0.1", "198.18.0.9", "2001:2::/64"} {
		if v := rep.Verdicts[i+1]; v.Source != src || v.At != t0.Add(2*time.Hour).Format(time.RFC3339Nano) {
			t.Errorf("verdict %d: %s at %s; want %s at %s", i+2, v.Source, v.At, src, t0.Add(2*time.Hour).Format(time.RFC3339Nano))
		}
	}

	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range []struct {
		at   time.Duration
		data string
		orig int
	}{{time.Second, "198.18.0.1", 100}, {2 * time.Second, "198.18.0.2", 10}, {3 * time.Second, "198.18.0.2", 10}, {5 * time.Second, "\x01", 1}} {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			t.Fatalf("dropped frame %d: %v", i+1, err)
		}
		if string(data) != w.data || !ci.Timestamp.Equal(t0.Add(w.at)) || ci.Length != w.orig {
			t.Errorf("dropped frame %d: %q at %v, %d bytes long; want %q at %v, %d", i+1, data, ci.Timestamp, ci.Length, w.data, t0.Add(w.at), w.orig)
		}
	}
	if _, _, err := r.ReadPacketData(); err == nil {
		t.Error("more dropped frames than the 4 dropped")
	}
	if err := dw.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
