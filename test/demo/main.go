// Command demo is `make demo`: it builds a network-namespace testbed, runs
// the Bulwark agent on the server side with configs/demo.hcl, plays a
// scripted mix of traffic for about 20 seconds, and prints what each source
// sent and what reached the server, against what was expected. It removes
// everything it made (namespaces, pins, processes) and exits 0 only if every
// expected outcome held.
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
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
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
	bin      = flag.String("bin", "bin/bulwark", "the bulwark binary")
	cfgPath  = flag.String("config", "configs/demo.hcl", "the demo config (interface, socket and pin_dir are set by the demo)")
	duration = flag.Duration("duration", 20*time.Second, "how long the traffic plays")
)

// source is one scripted sender.
type source struct {
	name     string
	addr     func(i int) netip.Addr // the source address of the i-th frame
	key      string                 // how it is shown and counted (IPv6: the /64)
	pps      int
	syn      bool // TCP SYN instead of UDP
	start    time.Duration
	expected string

	sent      atomic.Int64
	delivered atomic.Int64
	// for the runtime block: what arrived after the block took effect
	sentAfter, deliveredAfter atomic.Int64
	check                     func(s *source, elapsed time.Duration) bool
}

const (
	serverAddr4 = "198.18.1.1"
	clientAddr4 = "198.18.1.2"
	serverAddr6 = "2001:2:0:1::1"
	clientAddr6 = "2001:2:0:1::2"
	dstPort     = 7000
)

func main() {
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "demo: run as root (it creates network namespaces and loads BPF)")
		os.Exit(1)
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

	// Count what the server receives, per source: an AF_PACKET socket on
	// the server veth sees frames after XDP let them through.
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var recvWG sync.WaitGroup
	var blockAt atomic.Int64 // unix ns when the runtime block took effect
	if err := receive(ctx, &recvWG, srvNS, srvIf, byKey, &blockAt); err != nil {
		return false, err
	}

	fmt.Printf("== traffic for %s\n", *duration)
	start := time.Now()
	var sendWG sync.WaitGroup
	sendErr := make(chan error, len(srcs))
	for _, s := range srcs {
		sendWG.Add(1)
		go func(s *source) {
			defer sendWG.Done()
			if err := send(ctx, cliNS, cliIf, srvMAC, cliMAC, s, start, &blockAt); err != nil {
				sendErr <- fmt.Errorf("%s: %w", s.name, err)
			}
		}(s)
	}

	// The runtime block, a third of the way in.
	runtimeBlock := byKey["198.18.5.5"]
	go func() {
		time.Sleep(*duration / 3)
		out, err := exec.Command(*bin, "--socket", sock, "block", "add", "198.18.5.5", "--ttl", "5m",
			"--reason", "demo: operator blocks a source by hand").CombinedOutput()
		blockAt.Store(time.Now().Add(50 * time.Millisecond).UnixNano())
		fmt.Printf("   t=%4.1fs  bulwark block add 198.18.5.5 --ttl 5m: %s", time.Since(start).Seconds(), out)
		if err != nil {
			sendErr <- fmt.Errorf("block add: %w", err)
		}
		_ = runtimeBlock
	}()

	tick := time.NewTicker(2 * time.Second)
	for done := false; !done; {
		select {
		case <-tick.C:
			st, _ := status(sock)
			var sent, got int64
			for _, s := range srcs {
				sent += s.sent.Load()
				got += s.delivered.Load()
			}
			fmt.Printf("   t=%4.1fs  sent %6d  delivered %6d  datapath drops: %s\n",
				time.Since(start).Seconds(), sent, got, dropSummary(st))
			if time.Since(start) > *duration+time.Second {
				done = true
			}
		case err := <-agentDoneOrNil(agentDone):
			return false, fmt.Errorf("agent exited early: %v", err)
		}
	}
	tick.Stop()
	sendWG.Wait()
	time.Sleep(300 * time.Millisecond) // let the last frames arrive
	stop()
	recvWG.Wait()
	elapsed := *duration
	select {
	case err := <-sendErr:
		return false, err
	default:
	}

	st, err := status(sock)
	if err != nil {
		return false, err
	}
	return report(srcs, st, elapsed), nil
}

func agentDoneOrNil(c chan error) chan error { return c }

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
	Packets map[string]map[string]uint64 `json:"packets"`
}

func status(sock string) (*statusReply, error) {
	out, err := exec.Command(*bin, "--socket", sock, "status", "--json").Output()
	if err != nil {
		return nil, err
	}
	var st statusReply
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, err
	}
	return &st, nil
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

// scenario is the scripted mix; the limits are those of configs/demo.hcl:
// default 200 pps (burst 200), SYN rule 20 pps (burst 40), class partners
// x10, block list 198.18.66.0/24, IPv6 sources tracked per /64.
func scenario() []*source {
	host := func(s string) func(int) netip.Addr {
		a := netip.MustParseAddr(s)
		return func(int) netip.Addr { return a }
	}
	all := func(s *source, _ time.Duration) bool { return s.delivered.Load() == s.sent.Load() && s.sent.Load() > 0 }
	limited := func(rate, burst float64) func(*source, time.Duration) bool {
		return func(s *source, el time.Duration) bool {
			want := rate*el.Seconds() + burst
			got := float64(s.delivered.Load())
			return math.Abs(got-want) <= 0.1*want && s.delivered.Load() < s.sent.Load()
		}
	}
	var srcs []*source
	for i := 0; i < 5; i++ {
		a := fmt.Sprintf("198.18.2.%d", 10+i)
		srcs = append(srcs, &source{name: "client", addr: host(a), key: a, pps: 40 + 10*i,
			expected: "all delivered", check: all})
	}
	srcs = append(srcs,
		&source{name: "partner (x10)", addr: host("198.18.10.7"), key: "198.18.10.7", pps: 600,
			expected: "all delivered (class x10)", check: all},
		&source{name: "UDP flooder", addr: host("198.18.3.66"), key: "198.18.3.66", pps: 2000,
			expected: "held to 200 pps + 200", check: limited(200, 200)},
		&source{name: "block-listed", addr: host("198.18.66.7"), key: "198.18.66.7", pps: 100,
			expected: "none delivered", check: func(s *source, _ time.Duration) bool {
				return s.delivered.Load() == 0 && s.sent.Load() > 0
			}},
		&source{name: "SYN flooder", addr: host("198.18.4.4"), key: "198.18.4.4", pps: 500, syn: true,
			expected: "held to 20 SYN/s + 40", check: limited(20, 40)},
		&source{name: "IPv6 /64 rotator", addr: func(i int) netip.Addr {
			b := netip.MustParseAddr("2001:2:0:66::").As16()
			binary.BigEndian.PutUint64(b[8:], uint64(i)*0x9e3779b97f4a7c15|1)
			return netip.AddrFrom16(b)
		}, key: "2001:2:0:66::/64", pps: 1000, expected: "the /64 held to 200 pps + 200", check: limited(200, 200)},
		&source{name: "blocked at run time", addr: host("198.18.5.5"), key: "198.18.5.5", pps: 100,
			expected: "delivered until `block add`, none after", check: func(s *source, _ time.Duration) bool {
				before := s.delivered.Load() - s.deliveredAfter.Load()
				return before > 0 && s.deliveredAfter.Load() == 0 && s.sentAfter.Load() > 0
			}},
	)
	return srcs
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

func send(ctx context.Context, ns, ifname string, dst, src net.HardwareAddr, s *source, start time.Time, blockAt *atomic.Int64) error {
	fd, err := packetSocket(ns, ifname, unix.ETH_P_ALL)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	gap := time.Second / time.Duration(s.pps)
	next := start.Add(s.start)
	end := start.Add(*duration)
	max := s.pps * int((*duration).Seconds()+1)
	for i := 0; i < max; i++ {
		if ctx.Err() != nil {
			return nil
		}
		now := time.Now()
		if now.After(end) {
			return nil
		}
		if d := next.Sub(now); d > 0 {
			time.Sleep(d)
		}
		next = next.Add(gap)
		frame, err := build(dst, src, s.addr(i), s.syn, i)
		if err != nil {
			return err
		}
		if _, err := unix.Write(fd, frame); err != nil {
			if errors.Is(err, unix.ENOBUFS) {
				continue
			}
			return fmt.Errorf("send: %w", err)
		}
		s.sent.Add(1)
		if at := blockAt.Load(); at != 0 && time.Now().UnixNano() > at {
			s.sentAfter.Add(1)
		}
	}
	return nil
}

func build(dst, src net.HardwareAddr, from netip.Addr, syn bool, seq int) ([]byte, error) {
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
	payload := gopacket.Payload(fmt.Appendf(nil, "bulwark-demo %08d", seq))
	if syn {
		tcp := &layers.TCP{SrcPort: layers.TCPPort(40000 + seq%20000), DstPort: 443, SYN: true, Seq: uint32(seq), Window: 65535}
		tcp.SetNetworkLayerForChecksum(net)
		setProto(net, layers.IPProtocolTCP)
		ls = append(ls, tcp)
	} else {
		udp := &layers.UDP{SrcPort: layers.UDPPort(40000 + seq%20000), DstPort: dstPort}
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

// receive counts, per source key, the frames that reach the server veth
// past XDP.
func receive(ctx context.Context, wg *sync.WaitGroup, ns, ifname string, byKey map[string]*source, blockAt *atomic.Int64) error {
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
			if s := byKey[key]; s != nil {
				s.delivered.Add(1)
				if at := blockAt.Load(); at != 0 && time.Now().UnixNano() > at {
					s.deliveredAfter.Add(1)
				}
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

func report(srcs []*source, st *statusReply, elapsed time.Duration) bool {
	fmt.Println("\n== summary")
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tROLE\tSENT\tDELIVERED\tDROPPED\tEXPECTED\tRESULT")
	ok := true
	for _, s := range srcs {
		res := "OK"
		if !s.check(s, elapsed) {
			res, ok = "FAIL", false
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\n", s.key, s.name, s.sent.Load(), s.delivered.Load(),
			s.sent.Load()-s.delivered.Load(), s.expected, res)
	}
	tw.Flush()
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

	// The per-reason drops must account for the sources' drops.
	var wantBlock, wantLimit int64
	for _, s := range srcs {
		d := s.sent.Load() - s.delivered.Load()
		switch s.key {
		case "198.18.66.7", "198.18.5.5":
			wantBlock += d
		default:
			wantLimit += d
		}
	}
	gotBlock, gotLimit := int64(st.Packets["drop"]["blocklist"]), int64(st.Packets["drop"]["ratelimit"])
	match := gotBlock == wantBlock && gotLimit == wantLimit
	fmt.Printf("\ndrops seen by the sources: blocklist %d, ratelimit %d; counted by the datapath: blocklist %d, ratelimit %d: %s\n",
		wantBlock, wantLimit, gotBlock, gotLimit, map[bool]string{true: "OK", false: "FAIL"}[match])
	return ok && match
}
