// Package replay_test runs `bulwark replay` as an operator would (the built
// binary, a config file, capture files) and checks its JSON report against
// results worked out independently: by the Go model of the datapath
// (bpf/model) for the shared captures, and by hand for small generated ones.
package replay_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/bulwark-filter/bulwark/test/testutil"
)

// bin is the bulwark binary TestMain builds.
var bin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "bulwark-replay-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if bin, err = testutil.BuildBulwark("../..", dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// report is the JSON document of `bulwark replay --json`, decoded
// independently of the agent's types (the fields of the example).
type report struct {
	Packets  uint64            `json:"packets"`
	Actions  map[string]uint64 `json:"actions"`
	Reasons  map[string]uint64 `json:"reasons"`
	Rules    map[string]uint64 `json:"rules"`
	Lists    map[string]uint64 `json:"lists"`
	Sources  []source          `json:"sources"`
	Verdicts []verdict         `json:"verdicts"`
}

type source struct {
	Source  string            `json:"source"`
	Packets uint64            `json:"packets"`
	Passed  uint64            `json:"passed"`
	Dropped uint64            `json:"dropped"`
	Reasons map[string]uint64 `json:"reasons"`
}

type verdict struct {
	Source     string             `json:"source"`
	Action     string             `json:"action"`
	Score      float64            `json:"score"`
	At         string             `json:"at"`
	Components map[string]float64 `json:"components"`
}

func (r *report) source(s string) (source, bool) {
	for _, x := range r.Sources {
		if x.Source == s {
			return x, true
		}
	}
	return source{}, false
}

// result is one run of the binary.
type result struct {
	code           int
	stdout, stderr string
	took           time.Duration
}

// replay runs `bulwark replay ARGS...` and returns what it printed.
func replay(t *testing.T, args ...string) result {
	t.Helper()
	testutil.RequireRoot(t)
	cmd := exec.Command(bin, append([]string{"replay"}, args...)...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: so.String(), stderr: se.String(), took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run bulwark replay: %v", err)
	}
	return r
}

// replayJSON runs `bulwark replay --json --config cfg captures...`, requires
// success and decodes the report.
func replayJSON(t *testing.T, cfg string, captures ...string) *report {
	t.Helper()
	r := replay(t, append([]string{"--json", "--config", cfg}, captures...)...)
	if r.code != 0 {
		t.Fatalf("bulwark replay %v: exit %d\nstderr: %s", captures, r.code, r.stderr)
	}
	var rep report
	// Unknown fields are fine: the report may say more than the issue asks.
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("decode the report: %v\n%s", err, r.stdout)
	}
	for _, k := range []string{"pass", "drop", "would_drop"} {
		if _, ok := rep.Actions[k]; !ok {
			t.Errorf("report: actions has no %q: %v", k, rep.Actions)
		}
	}
	for _, k := range []string{"passed", "allowlist", "blocklist", "verdict", "ratelimit", "malformed", "non_ip"} {
		if _, ok := rep.Reasons[k]; !ok {
			t.Errorf("report: reasons has no %q: %v", k, rep.Reasons)
		}
	}
	if rep.Sources == nil || rep.Verdicts == nil || rep.Rules == nil || rep.Lists == nil {
		t.Errorf("report: sources, verdicts, rules and lists must be present (even empty):\n%s", r.stdout)
	}
	return &rep
}

func writeFile(t *testing.T, path, text string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// pkt is a frame (Ethernet) and its capture time.
type pkt struct {
	ts    time.Time
	frame []byte
}

// captureStart is where generated captures begin.
var captureStart = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

// Link types written by hand (the pcap header holds 32 bits; gopacket's
// LinkType is one byte and cannot say SLL2's 276).
const (
	ltEthernet  = 1
	ltRawBSD    = 12
	ltRaw       = 101
	ltIEEE80211 = 105
	ltSLL       = 113
	ltIPv4      = 228
	ltIPv6      = 229
	ltSLL2      = 276
)

// record turns an Ethernet frame into a record of link type lt.
func record(lt uint32, frame []byte) []byte {
	ethertype := binary.BigEndian.Uint16(frame[12:14])
	ip := frame[14:]
	switch lt {
	case ltEthernet:
		return frame
	case ltRaw, ltRawBSD, ltIPv4, ltIPv6:
		return ip
	case ltSLL:
		h := make([]byte, 16)
		binary.BigEndian.PutUint16(h[0:2], 0) // to us
		binary.BigEndian.PutUint16(h[2:4], 1) // ARPHRD_ETHER
		binary.BigEndian.PutUint16(h[4:6], 6)
		copy(h[6:12], frame[6:12])
		binary.BigEndian.PutUint16(h[14:16], ethertype)
		return append(h, ip...)
	case ltSLL2:
		h := make([]byte, 20)
		binary.BigEndian.PutUint16(h[0:2], ethertype)
		binary.BigEndian.PutUint32(h[4:8], 2) // ifindex
		binary.BigEndian.PutUint16(h[8:10], 1)
		h[10] = 0 // to us
		h[11] = 6
		copy(h[12:18], frame[6:12])
		return append(h, ip...)
	}
	panic(fmt.Sprintf("link type %d", lt))
}

// writePcap writes a classic pcap (nanosecond timestamps) of link type lt
// by hand.
func writePcap(t testing.TB, path string, lt uint32, pkts []pkt) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	var h [24]byte
	binary.LittleEndian.PutUint32(h[0:4], 0xa1b23c4d) // nanosecond pcap
	binary.LittleEndian.PutUint16(h[4:6], 2)
	binary.LittleEndian.PutUint16(h[6:8], 4)
	binary.LittleEndian.PutUint32(h[16:20], 262144)
	binary.LittleEndian.PutUint32(h[20:24], lt)
	w.Write(h[:])
	for _, p := range pkts {
		rec := p.frame
		if lt != ltEthernet {
			rec = record(lt, p.frame)
		}
		var rh [16]byte
		binary.LittleEndian.PutUint32(rh[0:4], uint32(p.ts.Unix()))
		binary.LittleEndian.PutUint32(rh[4:8], uint32(p.ts.Nanosecond()))
		binary.LittleEndian.PutUint32(rh[8:12], uint32(len(rec)))
		binary.LittleEndian.PutUint32(rh[12:16], uint32(len(rec)))
		w.Write(rh[:])
		w.Write(rec)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// writePcapgo writes an Ethernet pcap with gopacket's writer (microsecond
// timestamps, the common format).
func writePcapgo(t testing.TB, path string, pkts []pkt) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for _, p := range pkts {
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: p.ts, CaptureLength: len(p.frame), Length: len(p.frame)}, p.frame); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// writePcapng writes an Ethernet pcapng with gopacket's writer.
func writePcapng(t testing.TB, path string, pkts []pkt) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := pcapgo.NewNgWriter(f, layers.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pkts {
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: p.ts, CaptureLength: len(p.frame), Length: len(p.frame),
			InterfaceIndex: 0}, p.frame); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return path
}

// readPcap reads every record of a pcap file.
func readPcap(t *testing.T, path string) []pkt {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if r.LinkType() != layers.LinkTypeEthernet {
		t.Errorf("%s: link type %v, want Ethernet", path, r.LinkType())
	}
	var out []pkt
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, pkt{ci.Timestamp, append([]byte(nil), data...)})
	}
	return out
}

func readAll(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
