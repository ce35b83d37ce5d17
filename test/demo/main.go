// Command demo is `make demo`: it builds a network-namespace testbed, runs
// the Bulwark agent on the server side with configs/demo.hcl, and plays a
// scripted mix of traffic: ordinary clients and a partner, a block-listed
// source, a source the operator blocks by hand, three floods and a port
// scan. Lists and limits act from the first packet; the reputation engine
// then scores the floods and the scan and throttles or blocks them, and the
// demo shows each verdict as it appears and `bulwark explain` for one.
//
// At the end it prints what each source sent and what reached the server,
// counted by the demo itself (the senders, and a packet socket on the
// server past XDP), against what was expected: in particular that nothing a
// blocked source sent once its verdict was in force got through, and that
// no ordinary source got a verdict. It removes everything it made
// (namespaces, pins, processes) and exits 0 only if every expected outcome
// held.
//
// Traffic stays inside the two namespaces it creates (198.18.0.0/15 and
// 2001:2::/48, no default route), bounded in packets and seconds.
package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

var (
	bin         = flag.String("bin", "bin/bulwark", "the bulwark binary")
	cfgPath     = flag.String("config", "configs/demo.hcl", "the demo config (interface, socket and pin_dir are set by the demo)")
	duration    = flag.Duration("duration", 24*time.Second, "how long the traffic plays at least")
	maxDuration = flag.Duration("max-duration", 90*time.Second, "how long the traffic plays at most, waiting for the engine's verdicts on a slow machine")
)

// The schedule (from the start of the traffic) and the figures of
// configs/demo.hcl the expected outcomes are computed from.
const (
	floodAt   = 3 * time.Second  // the floods start (the engine has seen ordinary traffic first)
	handAt    = 8 * time.Second  // the operator blocks 198.18.5.5 by hand
	scanAt    = 12 * time.Second // the port scan starts
	holdFor   = 5 * time.Second  // each verdict is watched this long before the traffic stops
	throttleX = 0.1              // limits.throttle_multiplier
)

// Phases of a source, as the demo saw them: the phase is written into every
// frame sent (its last byte), so the receiver counts what got through in
// each phase independently of arrival times.
const (
	phaseOpen      = iota // no verdict, not blocked
	phaseThrottled        // the engine's throttle verdict is in force
	phaseBlocked          // the engine's block verdict (or the operator's block) is in force
	numPhases
)

var phaseAction = [numPhases]string{"", "throttle", "block"}

// limit is a source's token bucket (rate per second and burst, packets).
type limit struct{ rate, burst float64 }

// seenVerdict is a verdict of the engine as the demo saw it appear.
type seenVerdict struct {
	action string
	at     time.Duration // since the start of the traffic
	score  float64
	why    string
}

// source is one scripted sender.
type source struct {
	name     string
	addr     func(i int) netip.Addr // the source address of the i-th frame
	key      string                 // how it is shown and counted (IPv6: the /64)
	pps      int
	syn      bool // TCP SYN instead of UDP
	scan     bool // a new destination port in every frame
	start    time.Duration
	listed   bool   // dropped by the block list (config or operator), never by limits
	verdict  string // the engine's verdict expected in the end: "", "throttle" or "block"
	lim      *limit // the limit it is held to before a verdict
	explain  bool   // print `bulwark explain` when its first verdict appears
	expected string // what the summary says is expected
	check    func(s *source) bool

	phase               atomic.Int32
	phaseAt             [numPhases]atomic.Int64 // unix ns the phase began (0: never)
	sent, delivered     [numPhases]atomic.Int64
	firstSend, lastSend atomic.Int64 // unix ns
	sentBeforeHand      atomic.Int64 // frames sent before the operator's `block add` began

	mu       sync.Mutex
	verdicts []seenVerdict
}

func (s *source) total(c *[numPhases]atomic.Int64) int64 {
	var n int64
	for i := range c {
		n += c[i].Load()
	}
	return n
}

// enter moves the source to phase p (never back), from now on.
func (s *source) enter(p int32) {
	if s.phase.Load() >= p {
		return
	}
	s.phaseAt[p].Store(time.Now().UnixNano())
	s.phase.Store(p)
}

// secondsIn is how long the source sent in phase p.
func (s *source) secondsIn(p int) float64 {
	from := s.phaseAt[p].Load()
	if p == phaseOpen {
		from = s.firstSend.Load()
	}
	to := s.lastSend.Load()
	for q := p + 1; q < numPhases; q++ {
		if at := s.phaseAt[q].Load(); at != 0 {
			to = at
			break
		}
	}
	if from == 0 || to < from {
		return 0
	}
	return float64(to-from) / 1e9
}

func (s *source) seen() []seenVerdict {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seenVerdict(nil), s.verdicts...)
}

const (
	serverAddr4 = "198.18.1.1"
	clientAddr4 = "198.18.1.2"
	serverAddr6 = "2001:2:0:1::1"
	clientAddr6 = "2001:2:0:1::2"
	dstPort     = 7000
)

var (
	outMu sync.Mutex
	t0    time.Time // the start of the traffic
)

// say prints one timeline line, in order with the others.
func say(format string, args ...any) {
	outMu.Lock()
	defer outMu.Unlock()
	printAt(time.Since(t0), format, args...)
}

// printAt prints one timeline line about what happened at t, for a caller
// that holds outMu.
func printAt(t time.Duration, format string, args ...any) {
	fmt.Printf("   t=%4.1fs  "+format+"\n", append([]any{t.Seconds()}, args...)...)
}

func main() {
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "demo: run as root (it creates network namespaces and loads BPF)")
		os.Exit(1)
	}
	if *maxDuration < *duration {
		fmt.Fprintln(os.Stderr, "demo: --max-duration must be at least --duration")
		os.Exit(2)
	}
	ok, err := run()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
	if !ok {
		fmt.Println("\nDEMO FAILED: an expected outcome did not hold")
		os.Exit(1)
	}
	fmt.Println("\nDEMO OK: every expected outcome held")
}

// cleanup runs registered steps in reverse order, once.
type cleanup struct {
	mu    sync.Mutex
	steps []func()
}

func (c *cleanup) add(f func()) { c.mu.Lock(); c.steps = append(c.steps, f); c.mu.Unlock() }
func (c *cleanup) run() {
	c.mu.Lock()
	steps := c.steps
	c.steps = nil
	c.mu.Unlock()
	for i := len(steps) - 1; i >= 0; i-- {
		steps[i]()
	}
}

func sh(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func run() (bool, error) {
	var cl cleanup
	defer cl.run()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sigs
		fmt.Fprintln(os.Stderr, "\ndemo: interrupted, cleaning up")
		cl.run()
		os.Exit(1)
	}()

	id := randHex(3)
	srvNS, cliNS := "bwk-demo-s-"+id, "bwk-demo-c-"+id
	srvIf, cliIf := "bwkd"+id+"s", "bwkd"+id+"c"
	tmp, err := os.MkdirTemp("", "bulwark-demo-")
	if err != nil {
		return false, err
	}
	cl.add(func() { os.RemoveAll(tmp) })
	pinRoot := "/sys/fs/bpf/bulwark-demo-" + id

	fmt.Println("== testbed: namespaces", cliNS, "->", srvNS, "(veth, 198.18.1.0/24, 2001:2:0:1::/64)")
	for _, ns := range []string{srvNS, cliNS} {
		if err := sh("ip", "netns", "add", ns); err != nil {
			return false, err
		}
		ns := ns
		cl.add(func() { _ = sh("ip", "netns", "del", ns) })
	}
	steps := [][]string{
		{"ip", "link", "add", srvIf, "netns", srvNS, "type", "veth", "peer", "name", cliIf, "netns", cliNS},
		{"ip", "-n", srvNS, "link", "set", "lo", "up"},
		{"ip", "-n", cliNS, "link", "set", "lo", "up"},
		{"ip", "-n", srvNS, "addr", "add", serverAddr4 + "/24", "dev", srvIf},
		{"ip", "-n", cliNS, "addr", "add", clientAddr4 + "/24", "dev", cliIf},
		{"ip", "-n", srvNS, "addr", "add", serverAddr6 + "/64", "dev", srvIf, "nodad"},
		{"ip", "-n", cliNS, "addr", "add", clientAddr6 + "/64", "dev", cliIf, "nodad"},
		{"ip", "-n", srvNS, "link", "set", srvIf, "up"},
		{"ip", "-n", cliNS, "link", "set", cliIf, "up"},
	}
	for _, s := range steps {
		if err := sh(s...); err != nil {
			return false, err
		}
	}
	srvMAC, err := macIn(srvNS, srvIf)
	if err != nil {
		return false, err
	}
	cliMAC, err := macIn(cliNS, cliIf)
	if err != nil {
		return false, err
	}

	// The demo config, pointed at this testbed.
	base, err := os.ReadFile(*cfgPath)
	if err != nil {
		return false, err
	}
	sock := filepath.Join(tmp, "bulwark.sock")
	cfg := strings.NewReplacer("@IFACE@", srvIf, "@SOCKET@", sock, "@PINDIR@", pinRoot,
		"@AUDIT@", filepath.Join(tmp, "audit.jsonl"), "@EVENTS@", filepath.Join(tmp, "drops")).Replace(string(base))
	cfgFile := filepath.Join(tmp, "demo.hcl")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		return false, err
	}

	// The agent, in the server namespace (nsenter: only the network
	// namespace changes, so the host's bpffs holds the pins).
	fmt.Println("== agent: bulwark run --config", *cfgPath, "on", srvIf)
	agentLog, err := os.Create(filepath.Join(tmp, "agent.log"))
	if err != nil {
		return false, err
	}
	agent := exec.Command("nsenter", "--net=/var/run/netns/"+srvNS, *bin, "run", "--config", cfgFile)
	agent.Stdout, agent.Stderr = agentLog, agentLog
	if err := agent.Start(); err != nil {
		return false, fmt.Errorf("start agent: %w", err)
	}
	agentDone := make(chan error, 1)
	go func() { agentDone <- agent.Wait() }()
	cl.add(func() {
		_ = sh(*bin, "detach", "--interface", srvIf, "--pin-dir", pinRoot)
		os.Remove(pinRoot)
	})
	cl.add(func() {
		agent.Process.Signal(syscall.SIGTERM)
		select {
		case <-agentDone:
		case <-time.After(10 * time.Second):
			agent.Process.Kill()
		}
	})
	if err := waitReady(sock, agentDone); err != nil {
		out, _ := os.ReadFile(agentLog.Name())
		return false, fmt.Errorf("%w\nagent log:\n%s", err, out)
	}

	srcs := scenario()
	byKey := map[string]*source{}
	for _, s := range srcs {
		byKey[s.key] = s
	}

	// Count what the server receives, per source and phase: an AF_PACKET
	// socket on the server veth sees frames after XDP let them through.
	recvCtx, stopRecv := context.WithCancel(context.Background())
	defer stopRecv()
	var recvWG sync.WaitGroup
	if err := receive(recvCtx, &recvWG, srvNS, srvIf, byKey); err != nil {
		return false, err
	}

	fmt.Printf("== traffic: ordinary clients, a partner and listed sources from t=0, floods from t=%s,\n"+
		"   a block by hand at t=%s, a port scan from t=%s; at least %s, until each verdict has held %s\n",
		floodAt, handAt, scanAt, *duration, holdFor)
	t0 = time.Now()
	sendCtx, stopSend := context.WithTimeout(context.Background(), *maxDuration)
	defer stopSend()
	var sendWG sync.WaitGroup
	fail := make(chan error, len(srcs)+2)
	for _, s := range srcs {
		sendWG.Add(1)
		go func(s *source) {
			defer sendWG.Done()
			if err := send(sendCtx, cliNS, cliIf, srvMAC, cliMAC, s); err != nil {
				fail <- fmt.Errorf("%s: %w", s.name, err)
			}
		}(s)
	}

	// The operator's block, by hand, with the CLI.
	go func() {
		if !sleepCtx(sendCtx, handAt-time.Since(t0)) {
			return
		}
		s := byKey["198.18.5.5"]
		// What it sent so far has reached the server before the block
		// (bounded wait: a frame can sit in the veth queue a moment).
		before := s.total(&s.sent)
		s.sentBeforeHand.Store(before)
		for deadline := time.Now().Add(2 * time.Second); s.delivered[phaseOpen].Load() < before && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		out, err := exec.Command(*bin, "--socket", sock, "block", "add", s.key, "--ttl", "5m",
			"--reason", "demo: operator blocks a source by hand").CombinedOutput()
		if err != nil {
			fail <- fmt.Errorf("block add: %v: %s", err, out)
			return
		}
		s.enter(phaseBlocked) // in the map: the CLI returns once the agent wrote it
		say("$ bulwark block add %s --ttl 5m   (the operator, by hand): %s", s.key, strings.TrimSpace(string(out)))
	}()

	// The engine's verdicts, as they appear in the kernel's verdict map.
	var unexpected sync.Map // verdicts on sources outside the scenario
	pollCtx, stopPoll := context.WithCancel(context.Background())
	defer stopPoll()
	var pollWG sync.WaitGroup
	pollWG.Add(1)
	go func() {
		defer pollWG.Done()
		var failing time.Time // since when every poll failed
		for {
			if err := pollVerdicts(sock, byKey, &unexpected); err == nil {
				failing = time.Time{}
			} else if failing.IsZero() {
				failing = time.Now()
			} else if time.Since(failing) > 10*time.Second {
				fail <- err
				return
			}
			if !sleepCtx(pollCtx, 200*time.Millisecond) {
				return
			}
		}
	}()

	// Until every expected verdict has held long enough, within the bounds.
	done := func() bool {
		if time.Since(t0) < *duration {
			return false
		}
		for _, s := range srcs {
			if s.verdict == "" {
				continue
			}
			at := s.phaseAt[phaseOf(s.verdict)].Load()
			if at == 0 || time.Since(time.Unix(0, at)) < holdFor {
				return false
			}
		}
		return true
	}
	tick := time.NewTicker(250 * time.Millisecond)
	lastLine := t0
	for !done() {
		select {
		case <-tick.C:
		case err := <-agentDone:
			return false, fmt.Errorf("agent exited early: %v", err)
		case err := <-fail:
			return false, err
		}
		if time.Since(t0) >= *maxDuration {
			say("stopping at --max-duration %s: some verdict did not appear or did not hold %s", *maxDuration, holdFor)
			break
		}
		if time.Since(lastLine) >= 2*time.Second {
			lastLine = time.Now()
			st, _ := status(sock)
			var sent, got int64
			for _, s := range srcs {
				sent += s.total(&s.sent)
				got += s.total(&s.delivered)
			}
			say("sent %6d  delivered %6d  datapath drops: %s", sent, got, dropSummary(st))
		}
	}
	tick.Stop()
	stopSend()
	sendWG.Wait()
	elapsed := time.Since(t0)
	settle(srcs)
	stopRecv()
	recvWG.Wait()
	stopPoll()
	pollWG.Wait()
	select {
	case err := <-fail:
		return false, err
	default:
	}
	// A last look, so a verdict issued at the very end is not missed.
	if err := pollVerdicts(sock, byKey, &unexpected); err != nil {
		return false, err
	}
	fmt.Printf("== traffic stopped after %.1fs\n", elapsed.Seconds())

	st, err := status(sock)
	if err != nil {
		return false, err
	}
	var others []string
	unexpected.Range(func(k, _ any) bool { others = append(others, k.(string)); return true })
	return report(srcs, st, others), nil
}

// sleepCtx sleeps d, or less if ctx ends first (then it returns false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// settle waits until the frames in flight have arrived: the receiver's
// counts stop moving (bounded).
func settle(srcs []*source) {
	count := func() int64 {
		var n int64
		for _, s := range srcs {
			n += s.total(&s.delivered)
		}
		return n
	}
	last, still := count(), 0
	for deadline := time.Now().Add(5 * time.Second); still < 3 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		if n := count(); n == last {
			still++
		} else {
			last, still = n, 0
		}
	}
}

func phaseOf(action string) int {
	for p, a := range phaseAction {
		if a == action && p != phaseOpen {
			return p
		}
	}
	return phaseOpen
}

func macIn(ns, ifname string) (net.HardwareAddr, error) {
	out, err := exec.Command("ip", "-n", ns, "-j", "link", "show", ifname).Output()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ifname, err)
	}
	var links []struct {
		Address string `json:"address"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) == 0 {
		return nil, fmt.Errorf("read %s: %v", ifname, err)
	}
	return net.ParseMAC(links[0].Address)
}

func waitReady(sock string, agentDone chan error) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-agentDone:
			return fmt.Errorf("agent exited: %v", err)
		default:
		}
		if _, err := status(sock); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("agent not ready after 30 s")
}

// statusReply is the part of `bulwark status --json` the demo reads.
type statusReply struct {
	Packets  map[string]map[string]uint64 `json:"packets"`
	Verdicts map[string]int               `json:"verdicts_active"`
}

func status(sock string) (*statusReply, error) {
	var st statusReply
	if err := cliJSON(sock, &st, "status", "--json"); err != nil {
		return nil, err
	}
	return &st, nil
}

// cliJSON runs `bulwark --socket sock args...` and decodes its JSON output
// into v.
func cliJSON(sock string, v any, args ...string) error {
	out, err := exec.Command(*bin, append([]string{"--socket", sock}, args...)...).Output()
	if err != nil {
		return fmt.Errorf("bulwark %s: %w", strings.Join(args, " "), err)
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("bulwark %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

func dropSummary(st *statusReply) string {
	if st == nil {
		return "?"
	}
	var parts []string
	for _, r := range []string{"blocklist", "verdict", "ratelimit", "malformed"} {
		parts = append(parts, fmt.Sprintf("%s %d", r, st.Packets["drop"][r]))
	}
	return strings.Join(parts, ", ")
}

// pollVerdicts reads the verdicts in force (`bulwark verdicts list`) and
// moves each source to the phase of its verdict; it prints each verdict
// the first time it is seen.
func pollVerdicts(sock string, byKey map[string]*source, unexpected *sync.Map) error {
	var vs []struct {
		Source string `json:"source"`
		Action string `json:"action"`
		Score  int    `json:"score"`
	}
	if err := cliJSON(sock, &vs, "verdicts", "list", "--json"); err != nil {
		return err
	}
	for _, v := range vs {
		p, err := netip.ParsePrefix(v.Source)
		if err != nil {
			return fmt.Errorf("bulwark verdicts list: source %q: %w", v.Source, err)
		}
		key := p.String()
		if p.IsSingleIP() {
			key = p.Addr().String()
		}
		s := byKey[key]
		if s == nil {
			if _, dup := unexpected.LoadOrStore(key+" ("+v.Action+")", true); !dup {
				say("engine: %s %s: a source outside the scenario!", v.Action, key)
			}
			continue
		}
		s.mu.Lock()
		known := len(s.verdicts) > 0 && s.verdicts[len(s.verdicts)-1].action == v.Action
		s.mu.Unlock()
		if known {
			continue
		}
		if err := showVerdict(sock, s, key, p.Addr(), v.Action, float64(v.Score)); err != nil {
			return err
		}
	}
	return nil
}

// showVerdict records a verdict the demo sees for the first time and
// prints it (with `bulwark explain` for the source chosen). It holds the
// output meanwhile, so the timeline stays in order.
func showVerdict(sock string, s *source, key string, a netip.Addr, action string, score float64) error {
	outMu.Lock()
	defer outMu.Unlock()
	if s.verdict != "" {
		// Frames sent from now on are counted in the verdict's phase.
		s.enter(int32(phaseOf(action)))
	}
	sv := seenVerdict{action: action, at: time.Since(t0), score: score}
	var x explainReply
	if err := cliJSON(sock, &x, "explain", "--json", a.String()); err == nil && x.Active != nil {
		sv.score, sv.why = x.Active.Score, components(x.Active.Components)
	}
	s.mu.Lock()
	first := len(s.verdicts) == 0
	s.verdicts = append(s.verdicts, sv)
	s.mu.Unlock()
	printAt(sv.at, "engine: %s %s (%s), score %.0f: %s", action, key, s.name, sv.score, sv.why)
	if !first || !s.explain {
		return nil
	}
	text, err := exec.Command(*bin, "--socket", sock, "explain", a.String()).CombinedOutput()
	if err != nil {
		return fmt.Errorf("bulwark explain: %v: %s", err, text)
	}
	fmt.Printf("\n   $ bulwark explain %s\n", a)
	for _, l := range strings.Split(strings.TrimRight(string(text), "\n"), "\n") {
		fmt.Println("   | " + l)
	}
	fmt.Println()
	return nil
}

// explainReply is the part of `bulwark explain --json` the demo reads.
type explainReply struct {
	Active *struct {
		Score      float64            `json:"score"`
		Components map[string]float64 `json:"components"`
	} `json:"active_verdict"`
}

// components lists a verdict's non-zero components, largest first.
func components(c map[string]float64) string {
	type kv struct {
		k string
		v float64
	}
	var l []kv
	for k, v := range c {
		if v >= 0.05 {
			l = append(l, kv{k, v})
		}
	}
	sort.Slice(l, func(i, j int) bool { return l[i].v > l[j].v || (l[i].v == l[j].v && l[i].k < l[j].k) })
	var parts []string
	for _, x := range l {
		parts = append(parts, fmt.Sprintf("%s %.1f", x.k, x.v))
	}
	return strings.Join(parts, ", ")
}

// scenario is the scripted mix. The figures are those of configs/demo.hcl:
// default limit 200 pps (burst 200), SYN rule 20 pps (burst 40), class
// partners x10, block list 198.18.66.0/24, IPv6 sources tracked per /64,
// throttle x0.1, throttle at score 50 and block at 85.
//
// The engine's baseline (the median source) is learnt from the first
// seconds. With more ordinary clients than other sources, every client
// under 10 packets/s, it stays at its floor of 10 packets/s, so each
// source's score follows from its own rates (docs/reputation.md, "Reputation:
// explainable risk scores"):
//   - the partner, 400 pps (40x): rate_anomaly 29 of 50, no verdict;
//   - the UDP and the IPv6 flood, 2000 and 1000 pps (200x, 100x):
//     rate_anomaly 50 and 45, plus ratelimit_drops 30: 80 and 75,
//     throttled, never blocked (those two components make 80 at most);
//   - the SYN flood, 1000 SYN/s, adds syn_ratio 40 to both: blocked, as
//     long as it reaches 184 SYN/s (rate_anomaly 15), as even a busy
//     machine does;
//   - the scan, 100 SYN/s each to a new port: syn_ratio 40 and port_scan
//     60, blocked.
func scenario() []*source {
	host := func(s string) func(int) netip.Addr {
		a := netip.MustParseAddr(s)
		return func(int) netip.Addr { return a }
	}
	var srcs []*source
	for i := 0; i < 8; i++ {
		a := fmt.Sprintf("198.18.2.%d", 10+i)
		srcs = append(srcs, &source{name: "client", addr: host(a), key: a, pps: 3 + i,
			expected: "all delivered", check: allDelivered})
	}
	srcs = append(srcs,
		&source{name: "partner (x10)", addr: host("198.18.10.7"), key: "198.18.10.7", pps: 400,
			expected: "all delivered (class x10)", check: allDelivered},
		&source{name: "block-listed", addr: host("198.18.66.7"), key: "198.18.66.7", pps: 100, listed: true,
			expected: "none delivered", check: func(s *source) bool {
				return s.total(&s.delivered) == 0 && s.total(&s.sent) > 0
			}},
		&source{name: "blocked by hand", addr: host("198.18.5.5"), key: "198.18.5.5", pps: 100, listed: true,
			expected: "all until `block add`, none after", check: func(s *source) bool {
				// Frames sent while the command ran may go either way.
				before, got := s.sentBeforeHand.Load(), s.delivered[phaseOpen].Load()
				return before > 0 && got >= before && got <= s.sent[phaseOpen].Load() &&
					s.sent[phaseBlocked].Load() > 0 && s.delivered[phaseBlocked].Load() == 0
			}},
		&source{name: "UDP flood", addr: host("198.18.3.66"), key: "198.18.3.66", pps: 2000, start: floodAt,
			verdict: "throttle", lim: &limit{200, 200}, explain: true,
			expected: "200 pps + 200, throttled: 20 pps + 20", check: heldThenVerdict},
		&source{name: "SYN flood", addr: host("198.18.4.4"), key: "198.18.4.4", pps: 1000, syn: true, start: floodAt,
			verdict: "block", lim: &limit{20, 40},
			expected: "20 SYN/s + 40, blocked: none", check: heldThenVerdict},
		&source{name: "IPv6 /64 rotator", addr: func(i int) netip.Addr {
			b := netip.MustParseAddr("2001:2:0:66::").As16()
			binary.BigEndian.PutUint64(b[8:], uint64(i)*0x9e3779b97f4a7c15|1)
			return netip.AddrFrom16(b)
		}, key: "2001:2:0:66::/64", pps: 1000, start: floodAt, verdict: "throttle", lim: &limit{200, 200},
			expected: "200 pps + 200, throttled: 20 pps + 20", check: heldThenVerdict},
		&source{name: "port scan (SYN)", addr: host("198.18.7.7"), key: "198.18.7.7", pps: 100, syn: true, scan: true,
			start: scanAt, verdict: "block",
			expected: "some, then blocked: none", check: heldThenVerdict},
	)
	return srcs
}

func allDelivered(s *source) bool {
	return s.total(&s.delivered) == s.total(&s.sent) && s.total(&s.sent) > 0
}

// within is the check of one phase against a limit scaled by mult: what
// got through is at most rate x seconds + burst (10 % and 5 frames of
// slack), at least lo, and less than what was sent.
func within(sent, got int64, secs float64, l limit, mult, lo float64) bool {
	hi := 1.1*(mult*l.rate*secs+mult*l.burst) + 5
	return float64(got) <= hi && float64(got) >= lo && got < sent
}

// heldThenVerdict checks a source until the engine's verdict, then
// throttled (limits x0.1) or blocked (nothing delivered). A flood is held
// to its limit before the verdict, and its whole burst got through (the
// bucket starts full, and the engine judges a flood only once it has gone
// over its limit or far over the baseline).
func heldThenVerdict(s *source) bool {
	want := phaseOf(s.verdict)
	if s.phase.Load() != int32(want) || s.sent[want].Load() < int64(s.pps) {
		return false // the verdict never came, or the source sent less than a second after it
	}
	sent0, got0 := s.sent[phaseOpen].Load(), s.delivered[phaseOpen].Load()
	if s.lim == nil {
		if got0 == 0 {
			return false
		}
	} else if !within(sent0, got0, s.secondsIn(phaseOpen), *s.lim, 1, 0.9*s.lim.burst) {
		return false
	}
	if want == phaseBlocked {
		return s.delivered[phaseBlocked].Load() == 0
	}
	secs := s.secondsIn(want)
	return within(s.sent[want].Load(), s.delivered[want].Load(), secs, *s.lim, throttleX, 0.5*throttleX*s.lim.rate*secs)
}

// inNS runs fn with the calling goroutine's thread in namespace ns.
func inNS(ns string, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	h, err := netns.GetFromName(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		return err
	}
	defer netns.Set(orig)
	return fn()
}

func packetSocket(ns, ifname string, proto uint16) (int, error) {
	var fd int
	err := inNS(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(proto)))
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(proto), Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind packet socket: %w", err)
		}
		return nil
	})
	return fd, err
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// send plays one source from its start until ctx ends: at most pps frames
// a second (a sender that fell behind skips ahead instead of bursting, so
// a slow machine does not turn a client into a flood) and at most pps x
// --max-duration frames.
func send(ctx context.Context, ns, ifname string, dst, src net.HardwareAddr, s *source) error {
	fd, err := packetSocket(ns, ifname, unix.ETH_P_ALL)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if !sleepCtx(ctx, s.start-time.Since(t0)) {
		return nil
	}
	if s.start > 0 {
		say("%s %s starts: %d %s/s", s.name, s.key, s.pps, map[bool]string{false: "packets", true: "SYN"}[s.syn])
	}
	gap := time.Second / time.Duration(s.pps)
	next := time.Now()
	max := s.pps * int(maxDuration.Seconds()+1)
	for i := 0; i < max && ctx.Err() == nil; i++ {
		now := time.Now()
		if d := next.Sub(now); d > 0 {
			time.Sleep(d)
		} else if d < -100*time.Millisecond {
			next = now
		}
		next = next.Add(gap)
		phase := s.phase.Load()
		dport := uint16(dstPort)
		if s.syn {
			dport = 443
		}
		if s.scan {
			dport = uint16(1 + i%65535)
		}
		frame, err := build(dst, src, s.addr(i), dport, s.syn, i, byte('0'+phase))
		if err != nil {
			return err
		}
		if _, err := unix.Write(fd, frame); err != nil {
			if errors.Is(err, unix.ENOBUFS) {
				continue
			}
			return fmt.Errorf("send: %w", err)
		}
		s.sent[phase].Add(1)
		sentAt := time.Now().UnixNano()
		s.firstSend.CompareAndSwap(0, sentAt)
		s.lastSend.Store(sentAt)
	}
	return nil
}

// build makes one frame; its last byte is the phase it was sent in.
func build(dst, src net.HardwareAddr, from netip.Addr, dport uint16, syn bool, seq int, phase byte) ([]byte, error) {
	eth := &layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: layers.EthernetTypeIPv4}
	var net gopacket.NetworkLayer
	var ls []gopacket.SerializableLayer
	if from.Is4() {
		ip := &layers.IPv4{Version: 4, TTL: 64, SrcIP: from.AsSlice(), DstIP: netip.MustParseAddr(serverAddr4).AsSlice()}
		net = ip
		ls = append(ls, eth, ip)
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip := &layers.IPv6{Version: 6, HopLimit: 64, SrcIP: from.AsSlice(), DstIP: netip.MustParseAddr(serverAddr6).AsSlice()}
		net = ip
		ls = append(ls, eth, ip)
	}
	// A word that differs from frame to frame leads the payload, as real
	// payloads differ: the scorer's uniform_flood judges a stream of one
	// repeated datagram, and the figures below are those of rate, drops,
	// SYNs and ports alone.
	payload := gopacket.Payload(fmt.Appendf(binary.BigEndian.AppendUint32(nil, uint32(seq)*2654435761+1), "bulwark-demo %08d %c", seq, phase))
	if syn {
		tcp := &layers.TCP{SrcPort: layers.TCPPort(40000 + seq%20000), DstPort: layers.TCPPort(dport), SYN: true, Seq: uint32(seq), Window: 65535}
		tcp.SetNetworkLayerForChecksum(net)
		setProto(net, layers.IPProtocolTCP)
		ls = append(ls, tcp, payload)
	} else {
		udp := &layers.UDP{SrcPort: layers.UDPPort(40000 + seq%20000), DstPort: layers.UDPPort(dport)}
		udp.SetNetworkLayerForChecksum(net)
		setProto(net, layers.IPProtocolUDP)
		ls = append(ls, udp, payload)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func setProto(l gopacket.NetworkLayer, p layers.IPProtocol) {
	switch ip := l.(type) {
	case *layers.IPv4:
		ip.Protocol = p
	case *layers.IPv6:
		ip.NextHeader = p
	}
}

// receive counts, per source key and phase, the frames that reach the
// server veth past XDP.
func receive(ctx context.Context, wg *sync.WaitGroup, ns, ifname string, byKey map[string]*source) error {
	fd, err := packetSocket(ns, ifname, unix.ETH_P_ALL)
	if err != nil {
		return err
	}
	tv := unix.Timeval{Usec: 100000}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return err
	}
	// A large receive buffer, so the socket itself does not drop.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer unix.Close(fd)
		buf := make([]byte, 2048)
		for ctx.Err() == nil {
			n, from, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				continue
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			key, ok := sourceKey(buf[:n])
			if !ok {
				continue
			}
			phase := int(buf[n-1]) - '0'
			if s := byKey[key]; s != nil && phase >= 0 && phase < numPhases {
				s.delivered[phase].Add(1)
			}
		}
	}()
	return nil
}

// sourceKey is the frame's source as the scenario names it: an IPv4
// address, or an IPv6 /64.
func sourceKey(f []byte) (string, bool) {
	if len(f) < 14 {
		return "", false
	}
	switch binary.BigEndian.Uint16(f[12:14]) {
	case 0x0800:
		if len(f) < 34 {
			return "", false
		}
		return netip.AddrFrom4([4]byte(f[26:30])).String(), true
	case 0x86dd:
		if len(f) < 54 {
			return "", false
		}
		p, _ := netip.AddrFrom16([16]byte(f[22:38])).Prefix(64)
		return p.String(), true
	}
	return "", false
}

var okFail = map[bool]string{true: "OK", false: "FAIL"}

func report(srcs []*source, st *statusReply, others []string) bool {
	fmt.Println("\n== summary: what each source sent, and what reached the server (counted by the demo)")
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tROLE\tSENT\tDELIVERED\tDROPPED\tEXPECTED\tRESULT")
	ok := true
	for _, s := range srcs {
		good := s.check(s)
		ok = ok && good
		sent, got := s.total(&s.sent), s.total(&s.delivered)
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\n", s.key, s.name, sent, got, sent-got, s.expected, okFail[good])
	}
	tw.Flush()

	fmt.Println("\n== the reputation engine's verdicts (as `bulwark verdicts list` showed them appear;")
	fmt.Println("   AFTER: frames sent once the demo saw the verdict in force, and how many of them got through)")
	tw = tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tROLE\tVERDICT\tSCORE\tSEEN AT\tSENT AFTER\tDELIVERED AFTER\tEXPECTED\tRESULT")
	var quiet []string
	for _, s := range srcs {
		vs := s.seen()
		if s.verdict == "" {
			if len(vs) == 0 {
				quiet = append(quiet, s.key)
				continue
			}
			ok = false
			for _, v := range vs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f\tt=%.1fs\t\t\tno verdict\tFAIL\n", s.key, s.name, v.action, v.score, v.at.Seconds())
			}
			continue
		}
		if len(vs) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t(none)\t\t\t\t\t%s\tFAIL\n", s.key, s.name, s.verdict)
			continue // heldThenVerdict failed it already
		}
		p := phaseOf(s.verdict)
		v := vs[len(vs)-1]
		want := "none"
		if p == phaseThrottled {
			want = fmt.Sprintf("<= %g pps + %g", throttleX*s.lim.rate, throttleX*s.lim.burst)
		}
		good := v.action == s.verdict && s.sent[p].Load() > 0 &&
			(p == phaseThrottled || s.delivered[p].Load() == 0)
		ok = ok && good
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f\tt=%.1fs\t%d\t%d\t%s\t%s\n", s.key, s.name, v.action, v.score, v.at.Seconds(),
			s.sent[p].Load(), s.delivered[p].Load(), s.verdict+", "+want, okFail[good])
	}
	tw.Flush()
	fmt.Printf("no verdict on the %d other sources (the clients, the partner, the listed ones): %s\n",
		len(quiet), okFail[len(quiet) == countIf(srcs, func(s *source) bool { return s.verdict == "" })])
	if len(others) > 0 {
		ok = false
		fmt.Printf("verdicts on sources outside the scenario: %s: FAIL\n", strings.Join(others, ", "))
	}

	fmt.Println("\n== datapath counters (bulwark status)")
	tw = tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACTION\tREASON\tPACKETS")
	for _, act := range []string{"pass", "drop"} {
		for _, r := range []string{"passed", "allowlist", "blocklist", "verdict", "ratelimit", "malformed", "non_ip"} {
			if n := st.Packets[act][r]; n > 0 {
				fmt.Fprintf(tw, "%s\t%s\t%d\n", act, r, n)
			}
		}
	}
	tw.Flush()

	// The per-reason drops must account for the sources' drops: the listed
	// sources' to the block list, the others' to the limits and verdicts;
	// what blocked sources sent once their block was seen, to the verdicts.
	var wantList, wantOther, afterBlock, blockedDrops int64
	for _, s := range srcs {
		d := s.total(&s.sent) - s.total(&s.delivered)
		if s.listed {
			wantList += d
			continue
		}
		wantOther += d
		if s.verdict == "block" {
			blockedDrops += d
			afterBlock += s.sent[phaseBlocked].Load() - s.delivered[phaseBlocked].Load()
		}
	}
	gotList := int64(st.Packets["drop"]["blocklist"])
	gotLimit, gotVerdict := int64(st.Packets["drop"]["ratelimit"]), int64(st.Packets["drop"]["verdict"])
	match := gotList == wantList && gotLimit+gotVerdict == wantOther && st.Packets["drop"]["malformed"] == 0
	fmt.Printf("\ndrops seen by the sources: listed %d, others %d; counted by the datapath: blocklist %d, ratelimit + verdict %d: %s\n",
		wantList, wantOther, gotList, gotLimit+gotVerdict, okFail[match])
	inRange := gotVerdict >= afterBlock && gotVerdict <= blockedDrops
	fmt.Printf("verdict drops %d: at least the blocked sources' frames sent after their block (%d), at most all their drops (%d): %s\n",
		gotVerdict, afterBlock, blockedDrops, okFail[inRange])
	if st.Verdicts["block"] != countIf(srcs, func(s *source) bool { return s.verdict == "block" }) ||
		st.Verdicts["throttle"] != countIf(srcs, func(s *source) bool { return s.verdict == "throttle" }) {
		fmt.Printf("verdicts in force (bulwark status): %d block, %d throttle: FAIL\n", st.Verdicts["block"], st.Verdicts["throttle"])
		ok = false
	}
	return ok && match && inRange
}

func countIf(srcs []*source, f func(*source) bool) int {
	n := 0
	for _, s := range srcs {
		if f(s) {
			n++
		}
	}
	return n
}
