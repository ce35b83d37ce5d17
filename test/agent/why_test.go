package agent_test

import (
	"encoding/json"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bulwark-filter/bulwark/agent/api"
	"github.com/bulwark-filter/bulwark/bpf"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/agenttest"
)

// why is `bulwark why ip args... --json`, which must succeed.
func (e *env) why(ip string, args ...string) api.Why {
	e.T.Helper()
	out := e.MustCLI(append([]string{"why", ip, "--json"}, args...)...)
	var w api.Why
	if err := json.Unmarshal([]byte(out), &w); err != nil {
		e.T.Fatalf("why %s --json: %v: %q", ip, err, out)
	}
	return w
}

// packets is the datapath's packet counter of action and reason (status --json).
func (e *env) packets(action, reason string) uint64 {
	e.T.Helper()
	var st api.Status
	if out := e.MustCLI("status", "--json"); json.Unmarshal([]byte(out), &st) != nil {
		e.T.Fatalf("status --json: %q", out)
	}
	return st.Packets[action][reason]
}

// putVerdict writes a verdict into the agent's pinned maps as the scorer
// would (the reputation engine is not asked to find one): the entry, then
// the present bit that has the datapath look verdicts up.
func (e *env) putVerdict(src netip.Addr, action maps.VerdictAction, score uint16) {
	e.T.Helper()
	dir := filepath.Join(e.PinRoot, e.TB.ServerIf)
	vm, err := ebpf.LoadPinnedMap(filepath.Join(dir, maps.MapVerdicts), nil)
	if err != nil {
		e.T.Fatal(err)
	}
	defer vm.Close()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		e.T.Fatal(err)
	}
	v := bpf.BulwarkVerdict{ExpiresNs: uint64(ts.Nano()) + 3600e9, Action: uint32(action), Origin: uint16(maps.OriginScorer), Score: score}
	if err := vm.Put(bpf.BulwarkSrcKey{Addr: maps.SourceKey(src, 64)}, v); err != nil {
		e.T.Fatal(err)
	}
	sm, err := ebpf.LoadPinnedMap(filepath.Join(dir, maps.MapSettings), nil)
	if err != nil {
		e.T.Fatal(err)
	}
	defer sm.Close()
	var st bpf.BulwarkDpSettings
	if err := sm.Lookup(uint32(0), &st); err != nil {
		e.T.Fatal(err)
	}
	st.Present |= uint32(bpf.BulwarkPresentBitsPRESENT_VERDICTS)
	if err := sm.Put(uint32(0), &st); err != nil {
		e.T.Fatal(err)
	}
}

// TestWhyAgreesWithDatapath asks `bulwark why` about sources at each step
// of the decision order, then sends frames from them and checks that the
// datapath did what why said: the frames that arrived and the packet
// counter of the reason why named. Byte limits of 1 B/s make the buckets'
// figures exact to the byte (1 byte of refill per second) whatever the
// machine's speed: bandwidth_burst 1514 B holds 14 frames of 106 bytes and
// 30 bytes over; in the class of multiplier 0.5 the burst is 757 bytes: 7
// frames and 15 bytes over.
func TestWhyAgreesWithDatapath(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	blockFile := filepath.Join(e.Dir, "scanners.txt")
	agenttest.WriteFile(t, blockFile, "198.18.201.0/24\n")
	text := e.Render(agenttest.Config{
		Allow: []string{"198.18.200.0/24"},
		Block: []string{"198.18.200.1/32", "198.18.202.0/24"},
		Limits: `  rule "udp9000" {
    protocol        = "udp"
    ports           = ["9000"]
    bandwidth       = "1B"
    bandwidth_burst = "1514B"
  }
  class "half" {
    cidrs      = ["198.18.206.0/24"]
    multiplier = 0.5
  }
`,
		Extra: "\nreputation {\n  mode         = \"shadow\"\n  max_verdicts = 100\n}\n",
	})
	// The block list also names a file (the harness renders cidrs only).
	const blockCIDRs = "block {\n  cidrs = [\"198.18.200.1/32\", \"198.18.202.0/24\"]\n"
	if !strings.Contains(text, blockCIDRs) {
		t.Fatalf("rendered config has no %q:\n%s", blockCIDRs, text)
	}
	text = strings.Replace(text, blockCIDRs, blockCIDRs+"  files = ["+strconv.Quote(blockFile)+"]\n", 1)
	agenttest.WriteFile(t, e.CfgPath, text)
	e.Start()

	var (
		allowed  = agenttest.Addr("198.18.200.1") // in the allow list and the block list: allow wins
		filed    = agenttest.Addr("198.18.201.9") // in the block file
		runtime  = agenttest.Addr("198.18.203.7") // blocked at run time
		verdict  = agenttest.Addr("198.18.204.5") // under a block verdict
		limited  = agenttest.Addr("198.18.205.6") // the rule's bucket
		halved   = agenttest.Addr("198.18.206.7") // the rule's bucket at multiplier 0.5
		frameLen = len(e.Frame(limited, 1))
	)
	if frameLen != 106 {
		t.Fatalf("test frames are %d bytes, the figures below are for 106", frameLen)
	}
	e.MustCLI("block", "add", runtime.String(), "--ttl", "1h")
	e.putVerdict(verdict, maps.VerdictBlock, 91)
	udp := []string{"--proto", "udp", "--port", "9000", "--bytes", "106"}

	// sendExpect sends n frames from src and checks that want of them
	// arrived and that the counter of action and reason grew by n-want
	// (drops) or want (passes).
	sendExpect := func(src netip.Addr, n, want int, action, reason string, counted int) {
		t.Helper()
		before := e.packets(action, reason)
		if got := e.Send(src, n); got != want {
			t.Errorf("%s: %d of %d frames arrived, want %d", src, got, n, want)
		}
		if d := e.packets(action, reason) - before; d != uint64(counted) {
			t.Errorf("%s: counter %s/%s grew by %d, want %d", src, action, reason, d, counted)
		}
	}

	// 1. allow list, though also in the block list
	w := e.why(allowed.String())
	if w.Decision.Action != "pass" || w.Decision.Reason != "allowlist" || w.Allow == nil ||
		w.Allow.CIDR != "198.18.200.0/24" || w.Allow.Origin != "config" || w.Allow.List != "allow" {
		t.Errorf("why %s: %+v allow %+v, want pass by the config's allow list 198.18.200.0/24", allowed, w.Decision, w.Allow)
	}
	sendExpect(allowed, 5, 5, "pass", "allowlist", 5)

	// 2. block list: a file's entry, then a run-time entry with its expiry
	w = e.why(filed.String())
	if w.Decision.Action != "drop" || w.Decision.Reason != "blocklist" || w.Block == nil ||
		w.Block.CIDR != "198.18.201.0/24" || w.Block.Origin != "file" || w.Block.List != "block:scanners.txt" {
		t.Errorf("why %s: %+v block %+v, want drop by the file block:scanners.txt", filed, w.Decision, w.Block)
	}
	sendExpect(filed, 5, 0, "drop", "blocklist", 5)
	w = e.why(runtime.String())
	if w.Decision.Reason != "blocklist" || w.Block == nil || w.Block.Origin != "runtime" ||
		w.Block.ExpiresIn <= 0 || w.Block.ExpiresIn > 3600 {
		t.Errorf("why %s: %+v block %+v, want a run-time entry expiring within the hour", runtime, w.Decision, w.Block)
	}
	sendExpect(runtime, 5, 0, "drop", "blocklist", 5)

	// 3. a block verdict; explain shows the score it was stored with
	w = e.why(verdict.String())
	if w.Decision.Action != "drop" || w.Decision.Reason != "verdict" || w.Verdict == nil ||
		w.Verdict.Action != "block" || w.Verdict.Score != 91 || w.Verdict.Origin != "scorer" {
		t.Errorf("why %s: %+v verdict %+v, want drop by a block verdict of score 91", verdict, w.Decision, w.Verdict)
	}
	sendExpect(verdict, 5, 0, "drop", "verdict", 5)
	var x api.Explanation
	if out := e.MustCLI("explain", verdict.String(), "--json"); json.Unmarshal([]byte(out), &x) != nil ||
		x.Score != 91 || x.ScoreFrom != api.ScoreVerdict || x.Note == "" {
		t.Errorf("explain %s: %q, want score 91 from the verdict, with a note", verdict, out)
	}
	if out := e.MustCLI("explain", filed.String()); !strings.Contains(out, `on the block list "block:scanners.txt" (file)`) {
		t.Errorf("explain %s: %q, want it to say the block list stops its packets", filed, out)
	}

	// 4. the rule's bucket: full, then 30 bytes (and the refill since) after 14 frames
	w = e.why(limited.String(), udp...)
	l, ok := limit(w, "udp9000")
	if w.Decision.Action != "pass" || w.Decision.Reason != "passed" || !ok || !l.Fresh || l.ByteTokens == nil ||
		*l.ByteTokens != 1514 || !l.Conforms || l.Bucket != "198.18.205.6/32" || w.Tracked {
		t.Errorf("why %s: %+v limit %+v, want pass with a full new bucket of 1514 bytes", limited, w.Decision, l)
	}
	sendExpect(limited, 15, 14, "drop", "ratelimit", 1)
	w = e.why(limited.String(), udp...)
	l, ok = limit(w, "udp9000")
	if w.Decision.Action != "drop" || w.Decision.Reason != "ratelimit" || w.Decision.Rule != "udp9000" || !ok ||
		l.ByteTokens == nil || *l.ByteTokens < 30 || *l.ByteTokens >= 106 || l.Conforms || !l.Reached || !w.Tracked {
		t.Errorf("why %s: %+v limit %+v, want drop by udp9000 with 30 to 105 bytes in its bucket", limited, w.Decision, l)
	}
	out := e.MustCLI(append([]string{"why", limited.String()}, udp...)...)
	if !strings.Contains(out, "would be dropped (reason ratelimit)") || !strings.Contains(out, "udp9000") {
		t.Errorf("why %s (text): %q, want the drop by udp9000", limited, out)
	}
	t.Logf("bulwark why %s %s:\n%s", limited, strings.Join(udp, " "), out)
	sendExpect(limited, 1, 0, "drop", "ratelimit", 1)
	// a packet no rule matches passes
	if w := e.why(limited.String()); w.Decision.Action != "pass" || len(w.Limits) != 0 {
		t.Errorf("why %s without a protocol: %+v, limits %+v, want pass with no limit", limited, w.Decision, w.Limits)
	}

	// the class halves the rate and the burst: 757 bytes, 7 frames
	w = e.why(halved.String(), udp...)
	l, ok = limit(w, "udp9000")
	if w.Decision.Action != "pass" || w.Class != "half" || w.ClassMult != 0.5 || !ok || l.Multiplier != 0.5 ||
		l.ByteTokens == nil || *l.ByteTokens != 757 {
		t.Errorf("why %s: %+v class %q x%g limit %+v, want pass in class half with 757 bytes", halved, w.Decision, w.Class, w.ClassMult, l)
	}
	sendExpect(halved, 8, 7, "drop", "ratelimit", 1)
	if w := e.why(halved.String(), udp...); w.Decision.Reason != "ratelimit" {
		t.Errorf("why %s after 8 frames: %+v, want ratelimit", halved, w.Decision)
	}

	// bad input: a precise error, exit 2, nothing asked
	for _, args := range [][]string{{"why", "198.18.0.300"}, {"why", "198.18.0.1", "--port", "22"},
		{"why", "198.18.0.1", "--proto", "sctp"}, {"why", "198.18.0.1", "--proto", "udp", "--no-syn"},
		{"why", "198.18.0.1", "--bytes", "70000"}} {
		if r := e.CLI(args...); r.Code != 2 || r.Stderr == "" {
			t.Errorf("bulwark %v: %s, want exit 2 with a message", args, r)
		}
	}
	if code, body := e.rawCall("GET", "/v1/why/198.18.0.1?port=22", ""); code != 400 || !strings.Contains(body, "needs proto tcp or udp") {
		t.Errorf("GET /v1/why with a port and no proto: HTTP %d %s, want 400", code, body)
	}
}

// limit is the limit named rule in a why reply.
func limit(w api.Why, rule string) (api.WhyLimit, bool) {
	for _, l := range w.Limits {
		if l.Rule == rule {
			return l, true
		}
	}
	return api.WhyLimit{}, false
}
