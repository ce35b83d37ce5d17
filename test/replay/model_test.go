package replay_test

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/pcapgo"

	"github.com/bulwark-filter/bulwark/bpf/model"
	"github.com/bulwark-filter/bulwark/maps"
)

// pcapDir holds the shared captures (../shared/pcaps, copied).
const pcapDir = "../testdata/pcaps"

// replayBase is where capture time starts on the replayed datapath's clock
// (2^40 ns); the model runs on the same clock.
const replayBase = uint64(1) << 40

// maxLinear is the longest frame BPF_PROG_TEST_RUN puts in the linear
// buffer the (not frags-aware) program sees; the rest goes to fragments.
// As in the differential tests (bpf/model), the model gets what the program sees.
const maxLinear = 4096 - 256 - 320

// modelConfig is the candidate config of the model comparison, and
// modelPolicy below is the same policy written for the model: keep the two
// in step. Reputation is off (the model has no scorer).
const modelConfig = `
mode      = "enforce"
malformed = "drop"

interface "eth0" {}

allow {
  cidrs = ["141.142.0.0/16"]
  files = ["friends.txt"]
}

block {
  cidrs = ["208.80.152.0/24"]
  files = ["bad.txt"]
}

limits {
  ipv6_prefix = 64
  default {
    pps             = 200
    burst           = 50
    bandwidth       = "2Mbit"
    bandwidth_burst = "64000B"
  }
  rule "dns" {
    protocol = "udp"
    ports    = ["53"]
    pps      = 20
    burst    = 10
  }
  rule "syn" {
    protocol  = "tcp"
    tcp_flags = "syn"
    pps       = 10
    burst     = 5
  }
  rule "web" {
    protocol = "tcp"
    ports    = ["80", "443", "8000-8999"]
    pps      = 100
    burst    = 30
  }
  rule "ping6" {
    protocol = "icmpv6"
    pps      = 50
    burst    = 20
  }
  class "lab" {
    cidrs      = ["192.168.56.0/24"]
    multiplier = 2.5
  }
}

maps {
  sources        = 65536
  rule_buckets   = 65536
  verdicts       = 1024
  allow_hosts    = 1024
  allow_prefixes = 1024
  block_hosts    = 1024
  block_prefixes = 1024
  classes        = 1024
}

reputation {
  mode = "off"
}
`

const (
	friendsFile = "127.0.0.1\n# a comment\n"
	badFile     = "192.0.2.10 ; a host in the tcp syn flood capture\n2600:1f13::/32\n"
)

// List ids as agent/desired gives them: config allow 2, config block 3,
// list files from 4 (allow files first, then block files).
const (
	idAllow        = 2
	idBlock        = 3
	idAllowFriends = 4
	idBlockBad     = 5
)

var listNames = map[uint32]string{
	idAllow: "allow", idBlock: "block", idAllowFriends: "allow:friends.txt", idBlockBad: "block:bad.txt",
}

func pfx(s string) netip.Prefix {
	if !strings.Contains(s, "/") {
		a := netip.MustParseAddr(s)
		return netip.PrefixFrom(a, a.BitLen())
	}
	return netip.MustParsePrefix(s)
}

func modelPolicy() (maps.Policy, []maps.Entry, []maps.Entry) {
	p := maps.Policy{
		IPv6Prefix: 64,
		Default:    maps.Limit{PPS: 200, Burst: 50, BytesPerSec: 2_000_000 / 8, ByteBurst: 64000},
		Rules: []maps.Rule{
			{Name: "dns", Protocol: maps.ProtoUDP, Ports: []maps.PortRange{{Lo: 53, Hi: 53}}, Limit: maps.Limit{PPS: 20, Burst: 10}},
			{Name: "syn", Protocol: maps.ProtoTCP, SYN: true, Limit: maps.Limit{PPS: 10, Burst: 5}},
			{Name: "web", Protocol: maps.ProtoTCP, Ports: []maps.PortRange{{Lo: 80, Hi: 80}, {Lo: 443, Hi: 443}, {Lo: 8000, Hi: 8999}},
				Limit: maps.Limit{PPS: 100, Burst: 30}},
			{Name: "ping6", Protocol: maps.ProtoICMPv6, Limit: maps.Limit{PPS: 50, Burst: 20}},
		},
		Classes: []maps.Class{{Name: "lab", CIDRs: []netip.Prefix{pfx("192.168.56.0/24")}, Multiplier: 2.5}},
	}
	allow := []maps.Entry{{Prefix: pfx("141.142.0.0/16"), ListID: idAllow}, {Prefix: pfx("127.0.0.1"), ListID: idAllowFriends}}
	block := []maps.Entry{{Prefix: pfx("208.80.152.0/24"), ListID: idBlock},
		{Prefix: pfx("192.0.2.10"), ListID: idBlockBad}, {Prefix: pfx("2600:1f13::/32"), ListID: idBlockBad}}
	return p, allow, block
}

// writeModelConfig writes the config and its list files into a directory.
func writeModelConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "friends.txt"), friendsFile)
	writeFile(t, filepath.Join(dir, "bad.txt"), badFile)
	return writeFile(t, filepath.Join(dir, "bulwark.hcl"), modelConfig)
}

// capturePackets reads a capture the way replay must: Ethernet frames as
// they are; raw IPv4 (228) and IPv6 (229) and raw IP (101, 12) behind an
// Ethernet header dst 02:00:00:00:00:01 src 02:00:00:00:00:02.
func capturePackets(t *testing.T, path string) []pkt {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var next func() ([]byte, gopacket.CaptureInfo, error)
	var link uint32
	if binary.LittleEndian.Uint32(raw) == 0x0a0d0d0a {
		r, err := pcapgo.NewNgReader(strings.NewReader(string(raw)), pcapgo.DefaultNgReaderOptions)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		next, link = r.ReadPacketData, uint32(r.LinkType())
	} else {
		r, err := pcapgo.NewReader(bufio.NewReader(strings.NewReader(string(raw))))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		r.SetSnaplen(262144) // trust each record's own length (zeek_trunc-hdr.pcap)
		next = r.ReadPacketData
		switch binary.LittleEndian.Uint32(raw) {
		case 0xa1b2c3d4, 0xa1b23c4d:
			link = binary.LittleEndian.Uint32(raw[20:24])
		default:
			link = binary.BigEndian.Uint32(raw[20:24])
		}
	}
	wrap := func(et uint16, ip []byte) []byte {
		return append([]byte{0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02, byte(et >> 8), byte(et)}, ip...)
	}
	var out []pkt
	for {
		data, ci, err := next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: record %d: %v", path, len(out)+1, err)
		}
		var frame []byte
		switch link {
		case ltEthernet:
			frame = append([]byte(nil), data...)
		case ltIPv4:
			frame = wrap(0x0800, data)
		case ltIPv6:
			frame = wrap(0x86dd, data)
		case ltRaw, ltRawBSD:
			et := uint16(0x0800)
			if len(data) > 0 && data[0]>>4 == 6 {
				et = 0x86dd
			}
			frame = wrap(et, data)
		default:
			t.Fatalf("%s: link type %d: add it to the test", path, link)
		}
		out = append(out, pkt{ci.Timestamp, frame})
	}
	return out
}

// expect is what the model says replay must report.
type expect struct {
	packets                 uint64
	actions, reasons, rules map[string]uint64
	lists                   map[string]uint64
	sources                 map[string]*source
}

// modelReplay runs the frames through the model on capture time: now =
// 2^40 + (ts - first ts), never going backwards.
func modelReplay(t *testing.T, p maps.Policy, allow, block []maps.Entry, pkts []pkt) *expect {
	t.Helper()
	m, err := model.New(p, allow, block)
	if err != nil {
		t.Fatal(err)
	}
	e := &expect{actions: map[string]uint64{}, reasons: map[string]uint64{}, rules: map[string]uint64{},
		lists: map[string]uint64{}, sources: map[string]*source{}}
	var first, last time.Time
	for i, pk := range pkts {
		ts := pk.ts
		if i == 0 {
			first = ts
		}
		if ts.Before(last) {
			ts = last
		}
		last = ts
		now := replayBase + uint64(ts.Sub(first))
		seen := pk.frame
		if len(seen) > maxLinear {
			seen = seen[:maxLinear]
		}
		d := m.Decide(seen, now)
		e.packets++
		e.actions[d.Action.String()]++
		e.reasons[d.Reason.String()]++
		switch d.Reason {
		case maps.ReasonRatelimit:
			e.rules[p.RuleName(d.Rule)]++
		case maps.ReasonAllowlist, maps.ReasonBlocklist:
			e.lists[listNames[d.ListID]]++
		}
		pp, _ := model.Parse(pk.frame)
		var key string
		switch pp.Family {
		case 4:
			key = pp.Src.Unmap().String()
		case 6:
			key = netip.PrefixFrom(pp.Src, p.SourcePrefix()).Masked().String()
		default:
			continue
		}
		s := e.sources[key]
		if s == nil {
			s = &source{Source: key, Reasons: map[string]uint64{}}
			e.sources[key] = s
		}
		s.Packets++
		if d.Action == maps.ActionDrop {
			s.Dropped++
			s.Reasons[d.Reason.String()]++
		} else {
			s.Passed++
		}
	}
	return e
}

func nonZero(m map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

func fmtMap(m map[string]uint64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%d ", k, m[k])
	}
	return strings.TrimSpace(b.String())
}

func sameCounts(a, b map[string]uint64) bool {
	a, b = nonZero(a), nonZero(b)
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// compare checks a replay report against the model's expectation.
func compare(t *testing.T, rep *report, e *expect) {
	t.Helper()
	if rep.Packets != e.packets {
		t.Errorf("packets: replay %d, model %d", rep.Packets, e.packets)
	}
	for _, c := range []struct {
		what      string
		got, want map[string]uint64
	}{
		{"actions", rep.Actions, e.actions}, {"reasons", rep.Reasons, e.reasons},
		{"rules", rep.Rules, e.rules}, {"lists", rep.Lists, e.lists},
	} {
		if !sameCounts(c.got, c.want) {
			t.Errorf("%s: replay {%s}, model {%s}", c.what, fmtMap(nonZero(c.got)), fmtMap(nonZero(c.want)))
		}
	}
	if len(rep.Sources) != len(e.sources) {
		var got []string
		for _, s := range rep.Sources {
			got = append(got, s.Source)
		}
		var want []string
		for k := range e.sources {
			want = append(want, k)
		}
		sort.Strings(got)
		sort.Strings(want)
		t.Errorf("sources: replay has %d %v, model %d %v", len(got), got, len(want), want)
	}
	for _, s := range rep.Sources {
		w := e.sources[s.Source]
		if w == nil {
			t.Errorf("source %s: in the replay, not in the model", s.Source)
			continue
		}
		if s.Packets != w.Packets || s.Passed != w.Passed || s.Dropped != w.Dropped {
			t.Errorf("source %s: replay packets %d passed %d dropped %d; model %d %d %d",
				s.Source, s.Packets, s.Passed, s.Dropped, w.Packets, w.Passed, w.Dropped)
		}
		if !sameCounts(s.Reasons, w.Reasons) {
			t.Errorf("source %s: drop reasons: replay {%s}, model {%s}", s.Source, fmtMap(nonZero(s.Reasons)), fmtMap(w.Reasons))
		}
	}
	checkSorted(t, rep.Sources)
}

// checkSorted: by dropped, then packets, both descending.
func checkSorted(t *testing.T, ss []source) {
	t.Helper()
	if !slices.IsSortedFunc(ss, func(a, b source) int {
		if a.Dropped != b.Dropped {
			return -cmpU(a.Dropped, b.Dropped)
		}
		return -cmpU(a.Packets, b.Packets)
	}) {
		t.Errorf("sources are not sorted by dropped then packets (descending)")
	}
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func sharedCaptures(t *testing.T) []string {
	t.Helper()
	var names []string
	for _, g := range []string{"*.pcap", "*.pcapng"} {
		n, err := filepath.Glob(filepath.Join(pcapDir, g))
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, n...)
	}
	sort.Strings(names)
	if len(names) == 0 {
		t.Fatalf("no captures in %s", pcapDir)
	}
	return names
}

// TestReplaySharedCapturesMatchModel replays every shared capture (the raw
// IPv4 one included), one by one and all together, and requires the report
// to equal what the Go model of the datapath decides for the same policy,
// frames and capture times.
func TestReplaySharedCapturesMatchModel(t *testing.T) {
	cfg := writeModelConfig(t)
	p, allow, block := modelPolicy()
	names := sharedCaptures(t)
	// All together, the captures are laid on one timeline as replay does:
	// one that starts before the previous ended starts a second after it,
	// on its own time base (within a capture, time never goes backwards).
	var all []pkt
	var last time.Time
	var offset time.Duration
	for _, name := range names {
		pkts := capturePackets(t, name)
		if len(all) > 0 && len(pkts) > 0 && pkts[0].ts.Add(offset).Before(last) {
			offset = last.Add(time.Second).Sub(pkts[0].ts)
		}
		for _, pk := range pkts {
			ts := pk.ts.Add(offset)
			if ts.Before(last) {
				ts = last
			}
			last = ts
			all = append(all, pkt{ts, pk.frame})
		}
		t.Run(filepath.Base(name), func(t *testing.T) {
			rep := replayJSON(t, cfg, name)
			compare(t, rep, modelReplay(t, p, allow, block, pkts))
		})
	}
	t.Run("all", func(t *testing.T) {
		rep := replayJSON(t, cfg, names...)
		e := modelReplay(t, p, allow, block, all)
		compare(t, rep, e)
		// The policy is exercised: every kind of decision happens.
		for _, r := range []string{"passed", "allowlist", "blocklist", "ratelimit", "malformed", "non_ip"} {
			if e.reasons[r] == 0 {
				t.Errorf("the shared captures give no %s decision under this policy: strengthen it", r)
			}
		}
		for _, l := range []string{"allow", "block", "allow:friends.txt", "block:bad.txt"} {
			if e.lists[l] == 0 {
				t.Errorf("list %s has no hit in the shared captures", l)
			}
		}
		t.Logf("all: %d packets, actions {%s}, reasons {%s}, rules {%s}, lists {%s}, %d sources",
			rep.Packets, fmtMap(rep.Actions), fmtMap(rep.Reasons), fmtMap(rep.Rules), fmtMap(rep.Lists), len(rep.Sources))
	})
}
