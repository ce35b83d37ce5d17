package replay_test

import (
	"bytes"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/test/testutil"
)

// handConfig: a default limit of 100 pps with a bucket of 3, a block list,
// IPv6 sources grouped by /64.
const handConfig = `
interface "eth0" {}
block {
  cidrs = ["198.19.9.9"]
}
limits {
  ipv6_prefix = 64
  default {
    pps   = 100
    burst = 3
  }
}
maps {
  sources      = 4096
  rule_buckets = 4096
}
`

func handCfg(t *testing.T) string {
	t.Helper()
	return writeFile(t, filepath.Join(t.TempDir(), "bulwark.hcl"), handConfig)
}

// series is n frames made by mk, the i-th at start + i*step (plus a few
// nanoseconds, so a writer that drops them shows).
func series(n int, start time.Time, step time.Duration, mk func(i int) []byte) []pkt {
	out := make([]pkt, n)
	for i := range out {
		out[i] = pkt{start.Add(time.Duration(i)*step + time.Duration(i+1)*7), mk(i)}
	}
	return out
}

func udpFrom(t *testing.T, src string) func(int) []byte {
	return func(int) []byte { return testutil.UDP4(t, src, "198.18.0.1", 9000, 32) }
}

func checkSource(t *testing.T, rep *report, src string, packets, passed, dropped uint64, reason string) {
	t.Helper()
	s, ok := rep.source(src)
	if !ok {
		var have []string
		for _, x := range rep.Sources {
			have = append(have, x.Source)
		}
		t.Fatalf("no source %s in the report; have %v", src, have)
	}
	if s.Packets != packets || s.Passed != passed || s.Dropped != dropped {
		t.Errorf("source %s: packets %d passed %d dropped %d; want %d %d %d", src, s.Packets, s.Passed, s.Dropped,
			packets, passed, dropped)
	}
	if dropped > 0 && s.Reasons[reason] != dropped {
		t.Errorf("source %s: reasons %v; want %s %d", src, s.Reasons, reason, dropped)
	}
}

// TestReplayBucketByCaptureTime: 10 frames 1 ms apart against 100 pps with
// a bucket of 3: 3 pass, 7 are over the limit (worked out by hand: the
// bucket refills one packet per 10 ms). The same frames 10 s apart all pass:
// the capture spans 90 s, the replay takes a fraction of that, so only
// capture time refills the bucket.
func TestReplayBucketByCaptureTime(t *testing.T) {
	cfg := handCfg(t)
	dir := t.TempDir()

	fast := writePcap(t, filepath.Join(dir, "fast.pcap"), ltEthernet,
		series(10, captureStart, time.Millisecond, udpFrom(t, "198.18.1.1")))
	rep := replayJSON(t, cfg, fast)
	if rep.Packets != 10 || rep.Actions["pass"] != 3 || rep.Actions["drop"] != 7 || rep.Reasons["ratelimit"] != 7 {
		t.Errorf("1 ms apart: packets %d actions %v reasons %v; want 10 packets, 3 passed, 7 dropped by ratelimit",
			rep.Packets, rep.Actions, rep.Reasons)
	}
	if rep.Rules["default"] != 7 {
		t.Errorf("1 ms apart: rules %v; want default 7", rep.Rules)
	}
	checkSource(t, rep, "198.18.1.1", 10, 3, 7, "ratelimit")

	slow := writePcap(t, filepath.Join(dir, "slow.pcap"), ltEthernet,
		series(10, captureStart, 10*time.Second, udpFrom(t, "198.18.1.1")))
	r := replay(t, "--json", "--config", cfg, slow)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if r.took >= 45*time.Second {
		t.Fatalf("the replay took %v, not far less than the 90 s of capture: the test cannot tell capture time from wall time", r.took)
	}
	rep = replayJSON(t, cfg, slow)
	if rep.Actions["pass"] != 10 || rep.Actions["drop"] != 0 {
		t.Errorf("10 s apart (capture time): actions %v; want all 10 passed: the bucket refills by capture time", rep.Actions)
	}
	checkSource(t, rep, "198.18.1.1", 10, 10, 0, "")

	// Mixed: a burst, a 30 ms gap (3 tokens back), another burst.
	mixed := append(series(5, captureStart, time.Millisecond, udpFrom(t, "198.18.1.1")),
		series(5, captureStart.Add(4*time.Millisecond+40*time.Millisecond), time.Microsecond, udpFrom(t, "198.18.1.1"))...)
	rep = replayJSON(t, cfg, writePcap(t, filepath.Join(dir, "mixed.pcap"), ltEthernet, mixed))
	// t=0,1,2 pass (tat 30 ms); 3, 4 drop. At 44 ms the bucket is full
	// again (tat 30 <= 44): 3 more pass, 2 drop.
	checkSource(t, rep, "198.18.1.1", 10, 6, 4, "ratelimit")
}

// TestReplayBlockListAndIPv6Prefix: a block-listed source is dropped
// whatever its rate; two IPv6 sources in one /64 share one bucket and are
// one source, written as the /64.
func TestReplayBlockListAndIPv6Prefix(t *testing.T) {
	cfg := handCfg(t)
	var pkts []pkt
	for i := 0; i < 10; i++ {
		ts := captureStart.Add(time.Duration(i) * 100 * time.Millisecond)
		pkts = append(pkts, pkt{ts, testutil.UDP4(t, "198.19.9.9", "198.18.0.1", 9000, 10)})
		src := "2001:2:0:b::1"
		if i%2 == 1 {
			src = "2001:2:0:b:ffff:1:2:3"
		}
		// 1 ms apart from each other, 10 frames in 9 ms: 3 pass in all.
		pkts = append(pkts, pkt{captureStart.Add(time.Duration(i) * time.Millisecond), testutil.UDP6(t, src, "2001:2::1", 9000, 10)})
		// Another /64: its own bucket.
		pkts = append(pkts, pkt{captureStart.Add(time.Duration(i) * 100 * time.Millisecond), testutil.UDP6(t, "2001:2:0:c::1", "2001:2::1", 9000, 10)})
	}
	// Capture order is time order (replay clamps a clock that steps back).
	sortPkts(pkts)
	rep := replayJSON(t, writeFile(t, filepath.Join(t.TempDir(), "b.hcl"), handConfig),
		writePcap(t, filepath.Join(t.TempDir(), "v6.pcap"), ltEthernet, pkts))
	_ = cfg
	checkSource(t, rep, "198.19.9.9", 10, 0, 10, "blocklist")
	if rep.Lists["block"] != 10 || rep.Reasons["blocklist"] != 10 {
		t.Errorf("lists %v reasons %v; want block 10", rep.Lists, rep.Reasons)
	}
	checkSource(t, rep, "2001:2:0:b::/64", 10, 3, 7, "ratelimit")
	checkSource(t, rep, "2001:2:0:c::/64", 10, 10, 0, "")
	if len(rep.Sources) != 3 {
		t.Errorf("%d sources, want 3: %+v", len(rep.Sources), rep.Sources)
	}
	for _, s := range rep.Sources {
		if strings.HasPrefix(s.Source, "2001:2:0:b:") && s.Source != "2001:2:0:b::/64" {
			t.Errorf("IPv6 host %s listed on its own; want it in its /64", s.Source)
		}
	}
	checkSorted(t, rep.Sources)
}

// sortPkts puts frames in time order (stable).
func sortPkts(p []pkt) {
	slices.SortStableFunc(p, func(a, b pkt) int { return a.ts.Compare(b.ts) })
}

// TestReplayLinkTypes: the same frames as Ethernet pcap, pcapng, raw IPv4
// (228), raw IPv6 (229), raw (101, 12), Linux cooked (113) and cooked v2
// (276) get the same decisions; an unsupported link type is an error that
// names the file.
func TestReplayLinkTypes(t *testing.T) {
	cfg := handCfg(t)
	dir := t.TempDir()
	v4 := append(series(10, captureStart, time.Millisecond, udpFrom(t, "198.18.1.1")),
		series(4, captureStart.Add(20*time.Millisecond), time.Millisecond, udpFrom(t, "198.19.9.9"))...)
	v6 := series(10, captureStart, time.Millisecond, func(i int) []byte {
		return testutil.UDP6(t, fmt.Sprintf("2001:2:0:b::%x", i+1), "2001:2::1", 9000, 20)
	})
	both := append(append([]pkt(nil), v4...), series(10, captureStart.Add(time.Second), time.Millisecond, func(i int) []byte {
		return testutil.UDP6(t, fmt.Sprintf("2001:2:0:b::%x", i+1), "2001:2::1", 9000, 20)
	})...)

	type file struct {
		name string
		path string
	}
	for _, set := range []struct {
		name  string
		pkts  []pkt
		files []file
	}{
		{"ipv4", v4, []file{
			{"pcapgo-ethernet", writePcapgo(t, filepath.Join(dir, "v4-gopacket.pcap"), v4)},
			{"pcapng", writePcapng(t, filepath.Join(dir, "v4.pcapng"), v4)},
			{"raw-ipv4-228", writePcap(t, filepath.Join(dir, "v4-228.pcap"), ltIPv4, v4)},
			{"raw-101", writePcap(t, filepath.Join(dir, "v4-101.pcap"), ltRaw, v4)},
			{"raw-12", writePcap(t, filepath.Join(dir, "v4-12.pcap"), ltRawBSD, v4)},
			{"sll-113", writePcap(t, filepath.Join(dir, "v4-113.pcap"), ltSLL, v4)},
			{"sll2-276", writePcap(t, filepath.Join(dir, "v4-276.pcap"), ltSLL2, v4)},
		}},
		{"ipv6", v6, []file{
			{"pcapng", writePcapng(t, filepath.Join(dir, "v6.pcapng"), v6)},
			{"raw-ipv6-229", writePcap(t, filepath.Join(dir, "v6-229.pcap"), ltIPv6, v6)},
			{"raw-101", writePcap(t, filepath.Join(dir, "v6-101.pcap"), ltRaw, v6)},
			{"sll-113", writePcap(t, filepath.Join(dir, "v6-113.pcap"), ltSLL, v6)},
			{"sll2-276", writePcap(t, filepath.Join(dir, "v6-276.pcap"), ltSLL2, v6)},
		}},
		{"mixed", both, []file{
			{"raw-101", writePcap(t, filepath.Join(dir, "both-101.pcap"), ltRaw, both)},
			{"sll-113", writePcap(t, filepath.Join(dir, "both-113.pcap"), ltSLL, both)},
			{"sll2-276", writePcap(t, filepath.Join(dir, "both-276.pcap"), ltSLL2, both)},
		}},
	} {
		t.Run(set.name, func(t *testing.T) {
			ref := replayJSON(t, cfg, writePcap(t, filepath.Join(dir, set.name+"-eth.pcap"), ltEthernet, set.pkts))
			if ref.Packets != uint64(len(set.pkts)) || ref.Actions["drop"] == 0 || ref.Actions["pass"] == 0 {
				t.Fatalf("reference: %d packets, actions %v: want some passed and some dropped", ref.Packets, ref.Actions)
			}
			if set.name != "mixed" {
				// By hand: 3 of 10 in 10 ms pass; the block-listed source's 4 drop.
				want := map[string]uint64{"pass": 3, "drop": 7}
				if set.name == "ipv4" {
					want = map[string]uint64{"pass": 3, "drop": 11}
				}
				if !sameCounts(ref.Actions, want) {
					t.Errorf("reference actions %v, want %v", ref.Actions, want)
				}
			}
			for _, f := range set.files {
				rep := replayJSON(t, cfg, f.path)
				if d := diffReports(ref, rep); d != "" {
					t.Errorf("%s: %s", f.name, d)
				}
			}
		})
	}

	t.Run("unsupported", func(t *testing.T) {
		bad := writePcap(t, filepath.Join(dir, "wifi-105.pcap"), ltEthernet, v4[:1])
		patchLinkType(t, bad, ltIEEE80211)
		r := replay(t, "--json", "--config", cfg, bad)
		if r.code != 1 {
			t.Errorf("link type 105: exit %d, want 1\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
		if !strings.Contains(r.stderr, bad) || !strings.Contains(r.stderr, "105") {
			t.Errorf("link type 105: the error must name the file and the link type: %q", r.stderr)
		}
		if strings.TrimSpace(r.stdout) != "" {
			t.Errorf("link type 105: printed a report anyway: %s", r.stdout)
		}
	})
}

func diffReports(a, b *report) string {
	var d []string
	if a.Packets != b.Packets {
		d = append(d, fmt.Sprintf("packets %d vs %d", a.Packets, b.Packets))
	}
	if !sameCounts(a.Actions, b.Actions) || !sameCounts(a.Reasons, b.Reasons) || !sameCounts(a.Rules, b.Rules) ||
		!sameCounts(a.Lists, b.Lists) {
		d = append(d, fmt.Sprintf("counts {%s} {%s} vs {%s} {%s}", fmtMap(a.Actions), fmtMap(a.Reasons),
			fmtMap(b.Actions), fmtMap(b.Reasons)))
	}
	if len(a.Sources) != len(b.Sources) {
		d = append(d, fmt.Sprintf("%d sources vs %d", len(a.Sources), len(b.Sources)))
	} else {
		for i := range a.Sources {
			x, y := a.Sources[i], b.Sources[i]
			if x.Source != y.Source || x.Packets != y.Packets || x.Passed != y.Passed || x.Dropped != y.Dropped ||
				!sameCounts(x.Reasons, y.Reasons) {
				d = append(d, fmt.Sprintf("source %d: %+v vs %+v", i, x, y))
			}
		}
	}
	return strings.Join(d, "; ")
}

func patchLinkType(t *testing.T, path string, lt uint32) {
	t.Helper()
	b := readAll(t, path)
	b[20], b[21], b[22], b[23] = byte(lt), byte(lt>>8), byte(lt>>16), byte(lt>>24)
	writeFile(t, path, string(b))
}

// TestReplayWriteDropped: --write-dropped holds exactly the dropped frames,
// in order, with their original (nanosecond) timestamps; raw IPv4 frames
// with the Ethernet header replay gave them.
func TestReplayWriteDropped(t *testing.T) {
	cfg := handCfg(t)
	dir := t.TempDir()
	pkts := append(series(10, captureStart, time.Millisecond, udpFrom(t, "198.18.1.1")),
		series(3, captureStart.Add(time.Second), time.Second, udpFrom(t, "198.19.9.9"))...)
	// Frames 3..9 (over the limit) and the three block-listed ones.
	want := append(append([]pkt(nil), pkts[3:10]...), pkts[10:]...)

	for _, lt := range []uint32{ltEthernet, ltIPv4} {
		t.Run(fmt.Sprint("linktype-", lt), func(t *testing.T) {
			in := writePcap(t, filepath.Join(dir, fmt.Sprintf("in-%d.pcap", lt)), lt, pkts)
			out := filepath.Join(dir, fmt.Sprintf("dropped-%d.pcap", lt))
			r := replay(t, "--json", "--config", cfg, "--write-dropped", out, in)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			got := readPcap(t, out)
			if len(got) != len(want) {
				t.Fatalf("%d frames in %s, want %d", len(got), out, len(want))
			}
			for i := range want {
				if !got[i].ts.Equal(want[i].ts) {
					t.Errorf("frame %d: timestamp %s, want %s", i, got[i].ts.Format(time.RFC3339Nano), want[i].ts.Format(time.RFC3339Nano))
				}
				wf := want[i].frame
				if lt == ltIPv4 {
					wf = append([]byte{0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00}, wf[14:]...)
				}
				if !bytes.Equal(got[i].frame, wf) {
					t.Errorf("frame %d: %x, want %x", i, got[i].frame, wf)
				}
			}
		})
	}
}

// TestReplayTopAndOrder: --top 2 cuts the text table; the JSON lists every
// source, sorted by dropped then packets.
func TestReplayTopAndOrder(t *testing.T) {
	cfg := handCfg(t)
	var pkts []pkt
	add := func(src string, n int, start time.Duration, step time.Duration) {
		pkts = append(pkts, series(n, captureStart.Add(start), step, udpFrom(t, src))...)
	}
	add("198.18.1.1", 10, 0, time.Millisecond)                     // 10 packets, 7 dropped
	add("198.18.1.2", 6, 0, time.Millisecond)                      // 6 packets, 3 dropped
	add("198.18.1.3", 6, 0, time.Millisecond)                      // 10 packets, 3 dropped:
	add("198.18.1.3", 4, time.Second, time.Second)                 //   after the same 6, 4 slow ones
	add("198.18.1.4", 8, 0, 100*time.Millisecond)                  // 8 packets, none dropped
	add("198.18.1.5", 2, 50*time.Millisecond, 40*time.Millisecond) // 2 packets, none dropped
	sortPkts(pkts)
	capPath := writePcap(t, filepath.Join(t.TempDir(), "top.pcap"), ltEthernet, pkts)

	rep := replayJSON(t, cfg, capPath)
	var order []string
	for _, s := range rep.Sources {
		order = append(order, fmt.Sprintf("%s:%d/%d", s.Source, s.Dropped, s.Packets))
	}
	want := []string{"198.18.1.1:7/10", "198.18.1.3:3/10", "198.18.1.2:3/6", "198.18.1.4:0/8", "198.18.1.5:0/2"}
	if strings.Join(order, " ") != strings.Join(want, " ") {
		t.Errorf("JSON sources (dropped/packets) %v, want %v", order, want)
	}

	r := replay(t, "--config", cfg, "--top", "2", capPath)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	rows := regexp.MustCompile(`(?m)^198\.18\.1\.\d+\s`).FindAllString(r.stdout, -1)
	if len(rows) != 2 || strings.TrimSpace(rows[0]) != "198.18.1.1" || strings.TrimSpace(rows[1]) != "198.18.1.3" {
		t.Errorf("--top 2: table rows %q, want 198.18.1.1 and 198.18.1.3\n%s", rows, r.stdout)
	}
	if !strings.Contains(r.stdout, "3 more sources") {
		t.Errorf("--top 2: no note of the 3 sources left out:\n%s", r.stdout)
	}
	if !strings.Contains(r.stdout, "36 packets") && !strings.Contains(r.stdout, fmt.Sprint(len(pkts), " packets")) {
		t.Errorf("text report has no packet total:\n%s", r.stdout)
	}
}

// TestReplayConfigError: a bad config is exit 1 with file:line:col, and no
// report.
func TestReplayConfigError(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, filepath.Join(dir, "bad.hcl"), "interface \"eth0\" {}\nlimits {\n  default {\n    pps = \"lots\"\n  }\n}\n")
	capPath := writePcap(t, filepath.Join(dir, "c.pcap"), ltEthernet, series(2, captureStart, time.Millisecond, udpFrom(t, "198.18.1.1")))
	r := replay(t, "--json", "--config", cfg, capPath)
	if r.code != 1 {
		t.Errorf("exit %d, want 1\nstderr: %s", r.code, r.stderr)
	}
	if !regexp.MustCompile(regexp.QuoteMeta(cfg) + `:4:\d+`).MatchString(r.stderr) {
		t.Errorf("the error must say %s:4:COL: %q", cfg, r.stderr)
	}
	if strings.TrimSpace(r.stdout) != "" {
		t.Errorf("printed a report for a bad config: %s", r.stdout)
	}
}
