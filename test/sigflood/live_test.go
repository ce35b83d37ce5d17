package sigflood_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/agent/api"
	"github.com/bulwark-filter/bulwark/test/agenttest"
	"github.com/bulwark-filter/bulwark/test/netns"
	"github.com/bulwark-filter/bulwark/test/sigflood"
)

func TestMain(m *testing.M) { os.Exit(agenttest.Main(m, "bwk-sigflood-")) }

// The live flood's bounds: packets, chunk (the progress log's grain) and
// seconds; the benign clients' pace and the calm seconds before the flood.
const (
	floodPackets = 40_000_000
	floodAfter   = 2500 * time.Millisecond
	floodChunk   = 20_000    // 2.5-20 ms of flood: the grain of the figures at the signature's write
	pacedPPS     = 2_000_000 // TestLiveSYNFloodPaced's rate
	minAfter     = 200_000   // flood packets after the signature, at least, to judge
	floodMaxDur  = 40 * time.Second
	benignEvery  = 50 * time.Millisecond
	calmBefore   = 4 * time.Second
	serverPort   = 80
)

// LiveResult is what TestLiveSYNFlood (TestLiveSYNFloodPaced) measured;
// BULWARK_SIGLIVE_OUT (BULWARK_SIGLIVE_PACED_OUT) names a file to write it
// to (make bench). The veth figures are the kernel's own counts (ethtool
// -S of the two veth ends), independent of Bulwark's.
type LiveResult struct {
	PacedMpps         float64            `json:"flood_paced_mpps"`      // the generator's pace; 0: as fast as it goes
	FloodPackets      uint64             `json:"flood_packets"`         // sent: reached XDP and lost before it, by the veth's counts
	FloodRuns         uint64             `json:"flood_generator_runs"`  // the generator's count: runs a signal interrupted and it ran again are not in it
	FloodReached      uint64             `json:"flood_reached_xdp"`     // put into the server veth's ring: reached its XDP program
	FloodLost         uint64             `json:"flood_lost_before_xdp"` // the ring had no room: lost before XDP
	FloodSeconds      float64            `json:"flood_seconds"`
	FloodMpps         float64            `json:"flood_mpps"`           // sent, over the whole flood
	FloodMppsAfter    float64            `json:"flood_mpps_after_sig"` // sent, once the signature drops it
	SignatureSeconds  float64            `json:"time_to_signature_s"`  // from the flood's start to the signature's write
	Signature         string             `json:"signature"`
	SentAfter         float64            `json:"attack_sent_after_sig"`
	LostAfter         float64            `json:"attack_lost_before_xdp_after_sig"` // of SentAfter, lost in the veth before XDP
	ReachedAfter      float64            `json:"attack_reached_xdp_after_sig"`     // of SentAfter, reached the server's XDP program
	DroppedAfter      uint64             `json:"attack_dropped_after_sig"`         // the signature's drop counter
	DroppedPct        float64            `json:"attack_dropped_pct"`               // DroppedAfter / SentAfter: a lower bound when frames are lost before XDP
	DroppedPctReached float64            `json:"attack_dropped_pct_of_reached"`    // DroppedAfter / ReachedAfter
	XDPSeenAfter      float64            `json:"xdp_seen_after_sig"`               // the server veth's XDP runs (flood and benign)
	XDPDropsAfter     float64            `json:"xdp_drops_after_sig"`              // the server veth's XDP_DROP count
	XDPDroppedPct     float64            `json:"xdp_dropped_pct"`                  // XDPDropsAfter / XDPSeenAfter
	AgentDrops        map[string]float64 `json:"agent_drops_by_reason"`            // the agent's drop counts over the run: before the signature the new-source ceiling drops most of the flood
	StackSegsAfter    uint64             `json:"stack_tcp_segments_after_sig"`     // the server stack's TCP InSegs
	StackDroppedPct   float64            `json:"attack_dropped_pct_by_stack"`      // 1 - InSegs / sent after the signature: not in the server's stack
	BenignTried       int                `json:"benign_connects"`
	BenignOK          int                `json:"benign_connects_ok"`
	BenignAfter       int                `json:"benign_connects_after_sig"`
	BenignAfterOK     int                `json:"benign_connects_after_sig_ok"`
	BenignDuringFlood int                `json:"benign_connects_during_flood"`
}

// attempt is one benign connection.
type attempt struct {
	at  time.Time
	err error
}

// TestLiveSYNFlood runs the agent with signature detection on a server
// veth and sends it a spoofed SYN flood from the in-kernel generator
// (bounded: floodPackets frames and floodMaxDur, and it stops floodAfter
// after the signature is seen; random sources over 198.18.0.0/16, random
// source ports, TTL 57, window 1024, no options, to port 80) while a
// benign client opens real TCP connections to a server on that port every
// 50 ms, as fast as the generator goes (5-9 Mpps on a quiet 2-CPU
// machine). Detection must write a signature for tcp/80 during the flood.
// From the moment it is written, at least 95 % of the flood's frames that
// reached the server's XDP program are dropped by the signature's counter,
// and at least 95 % of the frames sent never reach the server's stack (its
// TCP segment counter, an independent count); every benign connection
// started after it succeeds. At such rates the server veth's ring has no
// room for some frames, which are lost before XDP: the kernel's veth
// counters (ethtool -S) say how many, and must account for every frame
// sent. The time to the signature and the flood's rate are measured and
// reported (make bench compares them with the 3 s and 1 Mpps targets): a
// test under CI load asserts no timings.
func TestLiveSYNFlood(t *testing.T) {
	checkEnforced(t, liveFlood(t, "", sigflood.LiveFlood{MaxPkts: floodPackets, Chunk: floodChunk}), "BULWARK_SIGLIVE_OUT")
}

// TestLiveSYNFloodPaced is TestLiveSYNFlood with the generator paced at
// 2 Mpps, a rate the veth delivers on a quiet machine (so nearly every
// frame sent reaches XDP and the signature's counter over the frames sent
// is the whole story); the checks are the same.
func TestLiveSYNFloodPaced(t *testing.T) {
	checkEnforced(t, liveFlood(t, "", sigflood.LiveFlood{MaxPkts: floodPackets, Chunk: floodChunk, PPS: pacedPPS}),
		"BULWARK_SIGLIVE_PACED_OUT")
}

// checkEnforced writes res to the file the environment variable env names
// (if set) and checks an enforcing signature's figures.
func checkEnforced(t *testing.T, res LiveResult, env string) {
	t.Helper()
	if path := os.Getenv(env); path != "" {
		out, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(path, append(out, '\n'), 0o644); err != nil {
			t.Error(err)
		}
	}
	if res.SentAfter < minAfter {
		t.Errorf("only %.0f flood packets sent after the signature: the flood ended before it was written", res.SentAfter)
	}
	if res.DroppedPctReached < 95 {
		t.Errorf("signature dropped %d of %.0f flood packets that reached XDP after it was written (%.2f %%; %.0f sent, %.0f lost before XDP), want >= 95 %%",
			res.DroppedAfter, res.ReachedAfter, res.DroppedPctReached, res.SentAfter, res.LostAfter)
	}
	if res.StackDroppedPct < 95 {
		t.Errorf("the server stack saw %d TCP segments after the signature (%.2f %% of the flood dropped), want >= 95 %% dropped",
			res.StackSegsAfter, res.StackDroppedPct)
	}
}

// TestLiveSYNFloodShadow is the live flood with the reputation engine in
// shadow mode: detection writes the signature as count only, which counts
// the flood (checkExplained: its matched packets) and drops none of it.
// What else drops the flood goes on as in enforce mode: the new-source
// ceiling (limits.new_sources, 50,000 packets/s by default) drops most of
// it, by the agent's ratelimit count and the kernel's XDP_DROP count.
func TestLiveSYNFloodShadow(t *testing.T) {
	res := liveFlood(t, "\nreputation {\n  mode         = \"shadow\"\n  max_verdicts = 100\n}\n",
		sigflood.LiveFlood{MaxPkts: floodPackets, Chunk: floodChunk})
	if res.DroppedAfter != 0 || res.AgentDrops["signature"] != 0 {
		t.Errorf("shadow: the signature dropped %d packets (the agent's signature drops: %.0f), want none",
			res.DroppedAfter, res.AgentDrops["signature"])
	}
}

// metricsAddr is the agent's metrics listener, inside the server namespace.
const metricsAddr = "127.0.0.1:9741"

// liveFlood runs the live flood f (its port, CPU, time bound and end are
// set here) against an agent with detection on and extra in its config,
// checks what every mode shares (the signature, its audit record,
// explanation and metrics, the benign connections after it, the veth's
// account of every frame sent) and returns the figures.
func liveFlood(t *testing.T, extra string, f sigflood.LiveFlood) LiveResult {
	e := agenttest.NewEnv(t, agenttest.Options{DirPrefix: "bwk-slf-", MetricsAddr: metricsAddr})
	e.WriteConfig("", agenttest.Config{Extra: "\nsignatures {\n  detect = \"enforce\"\n  ttl    = \"1m\"\n}\n" + extra})
	e.Start()

	var ln net.Listener
	if err := e.TB.InServer(func() (err error) {
		ln, err = net.Listen("tcp", fmt.Sprintf("%s:%d", netns.ServerAddr4, serverPort))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go serve(ln)

	// The benign client: a connection every 50 ms, each one a request and
	// its answer, from the client namespace, until stop.
	var (
		mu       sync.Mutex
		attempts []attempt
		stop     = make(chan struct{})
		clientWG sync.WaitGroup
	)
	clientWG.Add(1)
	go func() {
		defer clientWG.Done()
		tick := time.NewTicker(benignEvery)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			at := time.Now()
			err := e.TB.InClient(func() error { return connect(fmt.Sprintf("%s:%d", netns.ServerAddr4, serverPort)) })
			mu.Lock()
			attempts = append(attempts, attempt{at, err})
			mu.Unlock()
		}
	}()
	defer func() { close(stop); clientWG.Wait() }()
	time.Sleep(calmBefore) // calm seconds: detection learns the port's baseline and counter-sample

	// The watcher: the first detected signature, when it is seen, and the
	// server stack's TCP segments then.
	type seen struct {
		sig  api.Signature
		at   time.Time
		segs uint64
	}
	found := make(chan seen, 1)
	var foundAt atomic.Int64 // unix ns of the signature seen; 0 until then
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if s, ok := detected(e); ok {
				at := time.Now()
				segs, err := inSegs(e.TB)
				if err != nil {
					t.Error(err)
				}
				found <- seen{s, at, segs}
				foundAt.Store(at.UnixNano())
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	segs0, err := inSegs(e.TB)
	if err != nil {
		t.Fatal(err)
	}
	// The flood goes on floodAfter past the signature (what the checks
	// below judge), within its bounds in frames and time: a fast machine
	// would send a fixed count before detection has had its second.
	f.Port, f.CPU, f.MaxDur = serverPort, 0, floodMaxDur
	f.Done = func() bool {
		at := foundAt.Load()
		return at != 0 && time.Since(time.Unix(0, at)) > floodAfter
	}
	progress, err := sigflood.LiveSYN(e.TB, f)
	if err != nil {
		t.Fatal(err)
	}
	segsEnd, err := inSegs(e.TB)
	if err != nil {
		t.Fatal(err)
	}
	start, last := progress[0].At, progress[len(progress)-1]
	end, sent := last.At, last.Sent
	// Every frame of the generator's runs is in the veth's account: into
	// the server veth's ring or refused by it (a run a signal interrupted
	// and the generator ran again adds frames only the veth counted).
	if sent < last.Runs {
		t.Errorf("veth accounted %d frames into the server's ring and %d refused, want at least the %d of the generator's runs",
			last.Delivered, last.Refused, last.Runs)
	}
	time.Sleep(time.Second) // benign connections after the flood too

	var sn seen
	select {
	case sn = <-found:
	default:
		t.Fatalf("no signature detected during a flood of %d packets in %s; signatures: %s",
			sent, end.Sub(start), e.MustCLI("signatures", "list"))
	}
	<-watchDone
	if !strings.Contains(sn.sig.Match, fmt.Sprintf("protocol=tcp dst_port=%d", serverPort)) {
		t.Errorf("signature %s matches %q, want protocol=tcp dst_port=%d", sn.sig.Name, sn.sig.Match, serverPort)
	}
	// The signature's counters at the end of the flood.
	var final api.Signature
	for _, s := range signatures(e) {
		if s.Name == sn.sig.Name {
			final = s
		}
	}

	res := LiveResult{PacedMpps: f.PPS / 1e6, FloodPackets: sent, FloodReached: last.Delivered, FloodLost: last.Refused,
		FloodRuns:    last.Runs,
		FloodSeconds: end.Sub(start).Seconds(), Signature: sn.sig.Match, SignatureSeconds: sn.sig.Added.Sub(start).Seconds()}
	res.FloodMpps = float64(sent) / res.FloodSeconds / 1e6
	// Everything sent (reaching XDP) after the write is what the signature
	// should drop; the stack's count starts when the watcher saw it
	// (later, so more of the flood is left out of both sides of that ratio).
	after := func(field func(sigflood.Progress) uint64) float64 {
		return float64(field(last)) - sigflood.At(progress, sn.sig.Added, field)
	}
	res.SentAfter = after(func(p sigflood.Progress) uint64 { return p.Sent })
	res.LostAfter = after(func(p sigflood.Progress) uint64 { return p.Refused })
	res.ReachedAfter = after(func(p sigflood.Progress) uint64 { return p.Delivered })
	res.XDPSeenAfter = after(func(p sigflood.Progress) uint64 { return p.XDPSeen })
	res.XDPDropsAfter = after(func(p sigflood.Progress) uint64 { return p.XDPDrops })
	res.DroppedAfter = final.Dropped
	res.AgentDrops = map[string]float64{}
	for _, m := range e.Metrics() {
		if m.Name == "bulwark_packets_total" && m.Labels["action"] == "drop" && m.Value > 0 {
			res.AgentDrops[m.Labels["reason"]] += m.Value
		}
	}
	if res.SentAfter > 0 {
		res.DroppedPct = 100 * float64(res.DroppedAfter) / res.SentAfter
		res.FloodMppsAfter = res.SentAfter / end.Sub(sn.sig.Added).Seconds() / 1e6
	}
	if res.ReachedAfter > 0 {
		res.DroppedPctReached = 100 * float64(res.DroppedAfter) / res.ReachedAfter
	}
	if res.XDPSeenAfter > 0 {
		res.XDPDroppedPct = 100 * res.XDPDropsAfter / res.XDPSeenAfter
	}
	sentSeen := float64(sent) - sigflood.At(progress, sn.at, func(p sigflood.Progress) uint64 { return p.Sent })
	res.StackSegsAfter = segsEnd - sn.segs
	if sentSeen > 0 {
		res.StackDroppedPct = 100 * (1 - float64(res.StackSegsAfter)/sentSeen)
	}

	mu.Lock()
	for _, a := range attempts {
		res.BenignTried++
		after := a.at.After(sn.sig.Added)
		if a.err == nil {
			res.BenignOK++
		}
		if after {
			res.BenignAfter++
			if a.err == nil {
				res.BenignAfterOK++
			} else {
				t.Errorf("benign connection at %s (%.2f s after the signature): %v",
					a.at.Format("15:04:05.000"), a.at.Sub(sn.sig.Added).Seconds(), a.err)
			}
		}
		if !a.at.Before(start) && !a.at.After(end) {
			res.BenignDuringFlood++
		}
	}
	mu.Unlock()

	out, _ := json.MarshalIndent(res, "", "  ")
	t.Logf("live SYN flood: %s", out)
	t.Logf("signature %s: %s (%s)", sn.sig.Name, sn.sig.Match, sn.sig.Why)
	t.Logf("server stack TCP segments: %d before the flood, %d during it", segs0, segsEnd-segs0)
	if res.BenignAfter < 10 {
		t.Errorf("%d benign connections started after the signature, want at least 10 to judge", res.BenignAfter)
	}
	checkExplained(t, e, sn.sig, extra != "")
	return res
}

// checkExplained checks what the agent says of a detected signature: its
// action (count when shadow), its explanation, its audit record and its
// metrics.
func checkExplained(t *testing.T, e *agenttest.Env, sig api.Signature, shadow bool) {
	t.Helper()
	want := "drop"
	if shadow {
		want = "count"
	}
	if sig.Action != want || sig.Coverage == nil || sig.Collateral == nil || sig.Expires == nil || sig.Why == "" {
		t.Errorf("signature %+v: want action %s with coverage, collateral, expiry and why", sig, want)
	}
	explain := e.MustCLI("signatures", "explain", sig.Name)
	t.Logf("bulwark signatures list:\n%s\nbulwark signatures explain %s:\n%s", e.MustCLI("signatures", "list"), sig.Name, explain)
	for _, w := range []string{"(from detect)", "coverage:", "why:", "expires:"} {
		if !strings.Contains(explain, w) {
			t.Errorf("signatures explain %s says no %q:\n%s", sig.Name, w, explain)
		}
	}
	type rec struct {
		Who, What, Result, Detail string
		Target                    []string
	}
	n := 0
	for _, r := range agenttest.AuditLog[rec](e) {
		if r.What == "signature.add" && r.Who == "detect" && len(r.Target) == 1 && r.Target[0] == sig.Name && r.Result == "ok" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d audit records of detect adding %s, want 1 (renewals are not audited)", n, sig.Name)
	}
	m := e.Metrics()
	if v := m.Get("bulwark_signature_detections_total", "result", "written"); v != 1 {
		t.Errorf("bulwark_signature_detections_total{written} = %v, want 1", v)
	}
	if v := m.Get("bulwark_signature_detections_total", "result", "renewed"); v < 1 {
		t.Errorf("bulwark_signature_detections_total{renewed} = %v, want at least 1 (the flood lasted over a second)", v)
	}
	if v := m.Get("bulwark_signature_matched_packets_total", "signature", sig.Name, "origin", "detect"); v < minAfter {
		t.Errorf("bulwark_signature_matched_packets_total{%s} = %v, want at least %d", sig.Name, v, minAfter)
	}
	if v := m.Get("bulwark_signature_samples_total"); v < 200 {
		t.Errorf("bulwark_signature_samples_total = %v, want at least the 200 a search needs", v)
	}
}

// serve answers every connection with one line, until ln is closed.
func serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := bufio.NewReader(c).ReadString('\n'); err == nil {
				_, _ = io.WriteString(c, "ok\n")
			}
		}()
	}
}

// connect opens a connection to addr, sends a line and reads the answer.
func connect(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return err
	}
	if _, err := io.WriteString(c, "hello\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "ok\n" {
		return fmt.Errorf("answer %q", line)
	}
	return nil
}

// signatures lists the agent's signatures.
func signatures(e *agenttest.Env) []api.Signature {
	resp, err := agenttest.SocketClient(e.Sock, 5*time.Second).Get("http://bulwark/v1/signatures")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var ss []api.Signature
	if json.NewDecoder(resp.Body).Decode(&ss) != nil {
		return nil
	}
	return ss
}

// detected is the first signature of origin detect.
func detected(e *agenttest.Env) (api.Signature, bool) {
	for _, s := range signatures(e) {
		if s.Origin == "detect" {
			return s, true
		}
	}
	return api.Signature{}, false
}

// inSegs is the server namespace's TCP InSegs (/proc/net/snmp): every TCP
// segment its stack received.
func inSegs(tb *netns.Testbed) (uint64, error) {
	var n uint64
	err := tb.InServer(func() error {
		b, err := os.ReadFile("/proc/thread-self/net/snmp")
		if err != nil {
			return err
		}
		var names []string
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.HasPrefix(line, "Tcp:") {
				continue
			}
			f := strings.Fields(line)
			if names == nil {
				names = f
				continue
			}
			for i, name := range names {
				if name == "InSegs" && i < len(f) {
					n, err = strconv.ParseUint(f[i], 10, 64)
					return err
				}
			}
		}
		return fmt.Errorf("no Tcp InSegs in /proc/net/snmp")
	})
	return n, err
}
