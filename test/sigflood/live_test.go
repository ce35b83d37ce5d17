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
	floodChunk   = 200_000
	floodMaxDur  = 40 * time.Second
	benignEvery  = 50 * time.Millisecond
	calmBefore   = 4 * time.Second
	serverPort   = 80
)

// LiveResult is what TestLiveSYNFlood measured; BULWARK_SIGLIVE_OUT names
// a file to write it to (make bench).
type LiveResult struct {
	FloodPackets      uint64  `json:"flood_packets"`
	FloodSeconds      float64 `json:"flood_seconds"`
	FloodMpps         float64 `json:"flood_mpps"`           // over the whole flood
	FloodMppsAfter    float64 `json:"flood_mpps_after_sig"` // once the signature drops it
	SignatureSeconds  float64 `json:"time_to_signature_s"`  // from the flood's start to the signature's write
	Signature         string  `json:"signature"`
	SentAfter         float64 `json:"attack_sent_after_sig"`
	DroppedAfter      uint64  `json:"attack_dropped_after_sig"` // the signature's drop counter
	DroppedPct        float64 `json:"attack_dropped_pct"`
	StackSegsAfter    uint64  `json:"stack_tcp_segments_after_sig"` // the server stack's TCP InSegs
	StackDroppedPct   float64 `json:"attack_dropped_pct_by_stack"`  // 1 - InSegs / sent after the signature: not in the server's stack
	BenignTried       int     `json:"benign_connects"`
	BenignOK          int     `json:"benign_connects_ok"`
	BenignAfter       int     `json:"benign_connects_after_sig"`
	BenignAfterOK     int     `json:"benign_connects_after_sig_ok"`
	BenignDuringFlood int     `json:"benign_connects_during_flood"`
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
// 50 ms. Detection must write a signature for tcp/80 during the flood;
// from the moment it is written, at least 95 % of the flood's packets are
// dropped (by the server stack's TCP segment counter, an independent
// count; the signature's own counter against the frames the generator sent
// is a lower bound, below), and every benign connection started after it
// succeeds. The time to the signature and the flood's rate are measured and
// reported (make bench compares them with the 3 s and 1 Mpps targets): a
// test under CI load asserts no timings.
func TestLiveSYNFlood(t *testing.T) {
	res := liveFlood(t, "", floodPackets)
	if path := os.Getenv("BULWARK_SIGLIVE_OUT"); path != "" {
		out, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(path, append(out, '\n'), 0o644); err != nil {
			t.Error(err)
		}
	}
	if res.SentAfter < floodChunk {
		t.Errorf("only %.0f flood packets sent after the signature: the flood ended before it was written", res.SentAfter)
	}
	// The signature's own counter sees only the frames that reached XDP:
	// at the 5-9 Mpps the generator reaches on a quiet 2-CPU machine the
	// veth's ring drops some before XDP runs (92-96 % counted by the
	// signature while the stack saw under 1 % of the flood), so it is a
	// lower bound, checked loosely; the stack's count below, which every
	// frame not dropped must pass, is the 95 % check.
	if res.DroppedPct < 90 {
		t.Errorf("signature dropped %d of %.0f flood packets sent after it was written (%.2f %%), want >= 90 %% by its own counter",
			res.DroppedAfter, res.SentAfter, res.DroppedPct)
	}
	if res.StackDroppedPct < 95 {
		t.Errorf("the server stack saw %d TCP segments after the signature (%.2f %% of the flood dropped), want >= 95 %% dropped",
			res.StackSegsAfter, res.StackDroppedPct)
	}
}

// TestLiveSYNFloodShadow is the live flood with the reputation engine in
// shadow mode: detection writes the signature as count only, which counts
// the flood and drops none of it.
func TestLiveSYNFloodShadow(t *testing.T) {
	res := liveFlood(t, "\nreputation {\n  mode         = \"shadow\"\n  max_verdicts = 100\n}\n", floodPackets)
	// The flood reaches the server's stack: far more of it than the 5 %
	// an enforcing signature may let through (the rest the veth's ring
	// drops, full while the stack works through SYNs).
	if res.DroppedAfter != 0 || res.StackDroppedPct > 95 {
		t.Errorf("shadow: the signature dropped %d packets; %.2f %% of the flood never reached the server's stack; want none dropped, and more than 5 %% reaching it",
			res.DroppedAfter, res.StackDroppedPct)
	}
}

// metricsAddr is the agent's metrics listener, inside the server namespace.
const metricsAddr = "127.0.0.1:9741"

// liveFlood runs the live flood of maxPkts frames against an agent with
// detection on and extra in its config, checks what every mode shares
// (the signature, its audit record, explanation and metrics, the benign
// connections after it) and returns the figures.
func liveFlood(t *testing.T, extra string, maxPkts uint64) LiveResult {
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
	progress, err := sigflood.LiveSYN(e.TB, serverPort, 0, maxPkts, floodChunk, floodMaxDur, func() bool {
		at := foundAt.Load()
		return at != 0 && time.Since(time.Unix(0, at)) > floodAfter
	})
	if err != nil {
		t.Fatal(err)
	}
	segsEnd, err := inSegs(e.TB)
	if err != nil {
		t.Fatal(err)
	}
	start, end := progress[0].At, progress[len(progress)-1].At
	sent := progress[len(progress)-1].Sent
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

	res := LiveResult{FloodPackets: sent, FloodSeconds: end.Sub(start).Seconds(), Signature: sn.sig.Match,
		SignatureSeconds: sn.sig.Added.Sub(start).Seconds()}
	res.FloodMpps = float64(sent) / res.FloodSeconds / 1e6
	// Everything sent after the write is what the signature should drop;
	// the stack's count starts when the watcher saw it (later, so more of
	// the flood is left out of both sides of that ratio).
	res.SentAfter = float64(sent) - sigflood.SentBy(progress, sn.sig.Added)
	res.DroppedAfter = final.Dropped
	if res.SentAfter > 0 {
		res.DroppedPct = 100 * float64(res.DroppedAfter) / res.SentAfter
		res.FloodMppsAfter = res.SentAfter / end.Sub(sn.sig.Added).Seconds() / 1e6
	}
	sentSeen := float64(sent) - sigflood.SentBy(progress, sn.at)
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
	if v := m.Get("bulwark_signature_matched_packets_total", "signature", sig.Name, "origin", "detect"); v < floodChunk {
		t.Errorf("bulwark_signature_matched_packets_total{%s} = %v, want at least %d", sig.Name, v, floodChunk)
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
