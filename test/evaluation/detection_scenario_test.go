package evaluation_test

import (
	"bufio"
	"container/heap"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/bulwark-filter/bulwark/test/netns"
)

// The detection scenario: the hard evaluation of issue 16, written as one
// capture on a fixed timeline (seeded, so every run replays the same
// frames) and replayed through the real datapath and scorer (`bulwark
// replay`) once per point of a grid of throttle and block scores. Rates are
// multiples of the median well-behaved rate, medianPPS.
//
// Well-behaved classes (sending from 0 s to the end):
//
//	population    198.18.20.1-50      the live scenario's 50 clients: log-normal 2-60 pps, median 10, TCP and UDP
//	ipv6-clients  2001:2:0:100-109::1 10 IPv6 clients drawn the same way (each its own /64)
//	nat-gateway   198.18.21.1         50x: a gateway for some hundred hosts: TCP connections from thousands of
//	                                  source ports to 80/443/8080, DNS queries; sizes vary
//	bursty        198.18.22.1-5       a page load every 15 s: 30 parallel connections within 100 ms (SYN, ACK,
//	                                  request, 3-8 ACKs each), 1 pps between loads
//	prober        198.18.23.1         a monitoring prober: 20 TCP ports every minute (SYN, ACK, FIN each)
//	cdn           198.18.24.1         100x: 8 keep-alive connections to 443 fetching steadily (a request every
//	                                  ~10 ms, the rest ACKs), a new connection every 30 s
//	quic-upload   198.18.25.1         50x: a QUIC upload to UDP 443: 1252-byte packets of one connection ID and
//	                                  encrypted (random) content, one in ten a short one
//
// Attackers (one source each; floods one after another, 20 s each, from
// 60 s, 30 s apart; scanners from 60 s to the end):
//
//	udp-flood-Nx   198.18.40.N   N x median, one 64-byte datagram to UDP 9000 (random source ports), N = 10, 20, 50, 100
//	syn-flood-Nx   198.18.41.N   N x median, SYNs to 443 from random source ports
//	udp-varied-50x 198.18.44.50  50 x median, UDP to 9000 of random length (64-512) and content
//	scan-R         198.18.43.x   one SYN to a new port every 1/R s, R = 0.1, 0.5, 1, 5 ports/s
const (
	medianPPS   = 10
	detDuration = 600 * time.Second
	detWarmup   = 60 * time.Second
	floodFor    = 20 * time.Second
	floodEvery  = 30 * time.Second
	detSeed     = 16
)

var (
	detServer4 = netip.MustParseAddr("198.18.0.1")
	detServer6 = netip.MustParseAddr("2001:2::1")
	detMAC1    = net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	detMAC2    = net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
	detEpoch   = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

// detClass is one class of the scenario.
type detClass struct {
	Name   string
	Attack bool
	Times  float64 // rate as a multiple of the median (attackers: 0 for scanners)
	What   string
	// Apart says whether the scorer is expected to tell the class from
	// the well-behaved ones; when false, Why says what they share.
	Apart bool
	Why   string
	// Sources are the verdict names of its sources (an address, or an
	// IPv6 /64).
	Sources []string
	start   time.Duration // attackers: the first packet
	gens    []*gen
}

// gen produces one source's frames in time order; next returns false when
// it is done.
type gen struct {
	at    time.Duration
	frame []byte
	next  func(g *gen) bool
}

// genHeap orders generators by their next frame's time (then by creation,
// for determinism).
type genHeap []*gen

func (h genHeap) Len() int           { return len(h) }
func (h genHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h genHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *genHeap) Push(x any)        { *h = append(*h, x.(*gen)) }
func (h *genHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// paced is a generator of frames at pps (spacing jittered +-50 %) from
// start to end, each made by frame(i).
func paced(rng *rand.Rand, start, end time.Duration, pps float64, frame func(i int) []byte) *gen {
	i := 0
	g := &gen{at: start + time.Duration(rng.Float64()*float64(time.Second)/pps)}
	g.next = func(g *gen) bool {
		if i > 0 {
			g.at += time.Duration((0.5 + rng.Float64()) / pps * float64(time.Second))
		}
		if g.at >= end {
			return false
		}
		g.frame = frame(i)
		i++
		return true
	}
	return g
}

// script is a generator of frames at given offsets (sorted) from start.
type step struct {
	at    time.Duration
	frame []byte
}

// scripted plays the steps that fn appends for each round, rounds every
// period from start until end.
func scripted(start, end, period time.Duration, round func(n int) []step) *gen {
	var queue []step
	n := 0
	g := &gen{}
	g.next = func(g *gen) bool {
		for len(queue) == 0 {
			t := start + time.Duration(n)*period
			if t >= end {
				return false
			}
			for _, s := range round(n) {
				queue = append(queue, step{t + s.at, s.frame})
			}
			n++
		}
		g.at, g.frame, queue = queue[0].at, queue[0].frame, queue[1:]
		return true
	}
	return g
}

// tcpFrame is an Ethernet/IP/TCP frame of either family with valid
// checksums.
func tcpFrame(src, dst netip.Addr, sport, dport uint16, flags uint8, seq uint32, payload []byte) []byte {
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		return netns.IPv4(detMAC1, detMAC2, src, dst, 6, tcpSegment(s[:], d[:], sport, dport, flags, seq, payload))
	}
	s, d := src.As16(), dst.As16()
	tcp := tcpSegment(s[:], d[:], sport, dport, flags, seq, payload)
	ip := make([]byte, 40)
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(len(tcp)))
	ip[6], ip[7] = 6, 64
	copy(ip[8:24], s[:])
	copy(ip[24:40], d[:])
	f := make([]byte, 14, 14+40+len(tcp))
	copy(f[0:6], detMAC1)
	copy(f[6:12], detMAC2)
	binary.BigEndian.PutUint16(f[12:], 0x86dd)
	f = append(f, ip...)
	return append(f, tcp...)
}

func udpFrame(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	if src.Is4() {
		return netns.UDP4(detMAC1, detMAC2, src, dst, sport, dport, payload)
	}
	return netns.UDP6(detMAC1, detMAC2, src, dst, sport, dport, payload)
}

func serverOf(a netip.Addr) netip.Addr {
	if a.Is4() {
		return detServer4
	}
	return detServer6
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// client is a well-behaved source's traffic: TCP connections (one SYN,
// then 5-40 ACK or data segments of 16-600 bytes) to its TCP ports and
// UDP queries of 40-500 random bytes to its UDP ports, at pps.
func client(rng *rand.Rand, addr netip.Addr, pps float64, tcpPorts, udpPorts []uint16, end time.Duration) *gen {
	left, sport, dport, seq := 0, uint16(0), uint16(0), uint32(0)
	dst := serverOf(addr)
	return paced(rng, 0, end, pps, func(int) []byte {
		useTCP := len(tcpPorts) > 0 && (len(udpPorts) == 0 || left > 0 || rng.Float64() < 0.6)
		if !useTCP {
			return udpFrame(addr, dst, uint16(30000+rng.IntN(30000)), udpPorts[rng.IntN(len(udpPorts))], randBytes(rng, 40+rng.IntN(461)))
		}
		if left == 0 {
			left, sport, dport, seq = 5+rng.IntN(36), uint16(30000+rng.IntN(30000)), tcpPorts[rng.IntN(len(tcpPorts))], rng.Uint32()
			return tcpFrame(addr, dst, sport, dport, tcpSYN, seq, nil)
		}
		left--
		var pl []byte
		if rng.Float64() < 0.5 {
			pl = randBytes(rng, 16+rng.IntN(585))
		}
		seq += uint32(len(pl))
		return tcpFrame(addr, dst, sport, dport, tcpACK|tcpPSH, seq, pl)
	})
}

// detScenario builds the classes and their generators.
func detScenario() []*detClass {
	rng := rand.New(rand.NewPCG(detSeed, 0xde7))
	var cs []*detClass
	add := func(c *detClass) *detClass { cs = append(cs, c); return c }

	// Well-behaved.
	pop := add(&detClass{Name: "population", What: "50 clients, log-normal 2-60 pps (median 10), TCP and UDP"})
	for _, g := range population(populationN, popSeed) {
		pop.Sources = append(pop.Sources, g.addr.String())
		pop.gens = append(pop.gens, client(rng, g.addr, g.pps, g.tcp, g.udp, detDuration))
	}
	v6 := add(&detClass{Name: "ipv6-clients", What: "10 IPv6 clients drawn like the population, each its own /64"})
	for i, g := range population(10, popSeed+6) {
		a := netip.MustParseAddr(fmt.Sprintf("2001:2:0:%x::1", 0x100+i))
		v6.Sources = append(v6.Sources, fmt.Sprintf("2001:2:0:%x::/64", 0x100+i))
		v6.gens = append(v6.gens, client(rng, a, g.pps, g.tcp, g.udp, detDuration))
	}
	nat := add(&detClass{Name: "nat-gateway", Times: 50, What: "some hundred hosts' TCP (80, 443, 8080) from thousands of source ports, and DNS"})
	natAddr := netip.MustParseAddr("198.18.21.1")
	nat.Sources = []string{natAddr.String()}
	nat.gens = []*gen{client(rng, natAddr, 0.3*50*medianPPS, nil, []uint16{53, 123}, detDuration)}
	for i := 0; i < 7; i++ { // seven interleaved TCP streams: many connections at once
		nat.gens = append(nat.gens, client(rng, natAddr, 0.1*50*medianPPS, []uint16{80, 443, 443, 8080}, nil, detDuration))
	}
	bursty := add(&detClass{Name: "bursty", What: "a page load every 15 s: 30 parallel connections in 100 ms; 1 pps between"})
	for i := 0; i < 5; i++ {
		a := netip.AddrFrom4([4]byte{198, 18, 22, byte(i + 1)})
		bursty.Sources = append(bursty.Sources, a.String())
		bursty.gens = append(bursty.gens, client(rng, a, 1, []uint16{443}, nil, detDuration))
		r := rand.New(rand.NewPCG(detSeed, uint64(100+i)))
		bursty.gens = append(bursty.gens, scripted(time.Duration(i)*3*time.Second+time.Second, detDuration, 15*time.Second, func(int) []step {
			var ss []step
			for c := 0; c < 30; c++ {
				t0 := time.Duration(r.IntN(100)) * time.Millisecond
				sport, seq := uint16(32768+r.IntN(28000)), r.Uint32()
				ss = append(ss, step{t0, tcpFrame(a, detServer4, sport, 443, tcpSYN, seq, nil)},
					step{t0 + time.Millisecond, tcpFrame(a, detServer4, sport, 443, tcpACK, seq+1, nil)},
					step{t0 + 2*time.Millisecond, tcpFrame(a, detServer4, sport, 443, tcpACK|tcpPSH, seq+1, randBytes(r, 200+r.IntN(400)))})
				for k := 0; k < 3+r.IntN(6); k++ {
					ss = append(ss, step{t0 + time.Duration(20+r.IntN(480))*time.Millisecond, tcpFrame(a, detServer4, sport, 443, tcpACK, seq+2, nil)})
				}
			}
			sortSteps(ss)
			return ss
		}))
	}
	prober := add(&detClass{Name: "prober", What: "a monitoring prober: the same 20 TCP ports every minute (SYN, ACK, FIN)"})
	probeAddr := netip.MustParseAddr("198.18.23.1")
	prober.Sources = []string{probeAddr.String()}
	probePorts := []uint16{22, 25, 53, 80, 110, 143, 443, 465, 587, 993, 995, 3306, 5432, 6379, 8080, 8443, 9000, 9090, 9100, 11211}
	prober.gens = []*gen{scripted(5*time.Second, detDuration, time.Minute, func(n int) []step {
		var ss []step
		for i, p := range probePorts {
			t0 := time.Duration(i) * 50 * time.Millisecond
			sport := uint16(40000 + (n*20+i)%20000)
			ss = append(ss, step{t0, tcpFrame(probeAddr, detServer4, sport, p, tcpSYN, 1, nil)},
				step{t0 + time.Millisecond, tcpFrame(probeAddr, detServer4, sport, p, tcpACK, 2, nil)},
				step{t0 + 2*time.Millisecond, tcpFrame(probeAddr, detServer4, sport, p, tcpACK|0x01, 2, nil)})
		}
		return ss
	})}
	cdn := add(&detClass{Name: "cdn", Times: 100, What: "8 keep-alive connections to 443 fetching steadily (requests and ACKs)"})
	cdnAddr := netip.MustParseAddr("198.18.24.1")
	cdn.Sources = []string{cdnAddr.String()}
	for c := 0; c < 8; c++ {
		sport, seq, k := uint16(50000+c), rng.Uint32(), 0
		conn := 0
		cdn.gens = append(cdn.gens, paced(rng, 0, detDuration, 100*medianPPS/8, func(i int) []byte {
			// A new connection every 30 s (3750 packets at 125 pps).
			if n := i / 3750; n != conn || i == 0 {
				conn, sport, seq = n, uint16(50000+c+8*n%10000), rng.Uint32()
				return tcpFrame(cdnAddr, detServer4, sport, 443, tcpSYN, seq, nil)
			}
			k++
			if k%10 == 0 {
				pl := randBytes(rng, 150+rng.IntN(350))
				seq += uint32(len(pl))
				return tcpFrame(cdnAddr, detServer4, sport, 443, tcpACK|tcpPSH, seq, pl)
			}
			return tcpFrame(cdnAddr, detServer4, sport, 443, tcpACK, seq, nil)
		}))
	}

	quic := add(&detClass{Name: "quic-upload", Times: 50, What: "a QUIC upload to UDP 443: full 1252-byte packets (one connection ID, encrypted content), some short ones"})
	quicAddr := netip.MustParseAddr("198.18.25.1")
	quic.Sources = []string{quicAddr.String()}
	dcid := randBytes(rng, 8)
	quic.gens = []*gen{paced(rng, 0, detDuration, 50*medianPPS, func(int) []byte {
		n := 1252
		if rng.IntN(10) == 0 {
			n = 40 + rng.IntN(30)
		}
		pl := randBytes(rng, n)
		pl[0] = 0x40 | pl[0]&0x3f // a short header, its low bits protected
		copy(pl[1:], dcid)
		return udpFrame(quicAddr, detServer4, 51000, 443, pl)
	})}

	// Attackers.
	floods := 0
	flood := func(name string, addr netip.Addr, times float64, what string, apart bool, why string, frame func(r *rand.Rand, i int) []byte) {
		start := detWarmup + time.Duration(floods)*floodEvery
		floods++
		r := rand.New(rand.NewPCG(detSeed, uint64(200+floods)))
		c := add(&detClass{Name: name, Attack: true, Times: times, What: what, Apart: apart, Why: why,
			Sources: []string{addr.String()}, start: start})
		g := paced(r, start, start+floodFor, times*medianPPS, func(i int) []byte { return frame(r, i) })
		g.at = start
		c.gens = []*gen{g}
	}
	one := randBytes(rng, 64)
	for _, n := range []int{10, 20, 50, 100} {
		a := netip.AddrFrom4([4]byte{198, 18, 40, byte(n)})
		flood(fmt.Sprintf("udp-flood-%dx", n), a, float64(n), "one 64-byte datagram to UDP 9000, random source ports", true, "",
			func(r *rand.Rand, _ int) []byte {
				return udpFrame(a, detServer4, uint16(1024+r.IntN(64000)), 9000, one)
			})
	}
	for _, n := range []int{10, 20, 50, 100} {
		a := netip.AddrFrom4([4]byte{198, 18, 41, byte(n)})
		flood(fmt.Sprintf("syn-flood-%dx", n), a, float64(n), "SYNs to 443 from random source ports", true, "",
			func(r *rand.Rand, _ int) []byte {
				return tcpFrame(a, detServer4, uint16(1024+r.IntN(64000)), 443, tcpSYN, r.Uint32(), nil)
			})
	}
	va := netip.MustParseAddr("198.18.44.50")
	flood("udp-varied-50x", va, 50, "UDP to 9000 of random length (64-512) and content", false,
		"one UDP port, content that differs from packet to packet, at 50x: so does the well-behaved quic-upload (its lengths vary less), and the nat-gateway sends as much; the counters held per source (rate, ports, SYNs, repeated datagrams) do not separate them, and rate alone reaches the throttle score only at 128x",
		func(r *rand.Rand, _ int) []byte {
			return udpFrame(va, detServer4, uint16(1024+r.IntN(64000)), 9000, randBytes(r, 64+r.IntN(449)))
		})
	for i, rate := range []float64{0.1, 0.5, 1, 5} {
		a := netip.AddrFrom4([4]byte{198, 18, 43, byte(i + 1)})
		c := add(&detClass{Name: fmt.Sprintf("scan-%gps", rate), Attack: true, What: fmt.Sprintf("one SYN to a new port every %gs", 1/rate),
			Apart: true, Sources: []string{a.String()}, start: detWarmup})
		r := rand.New(rand.NewPCG(detSeed, uint64(300+i)))
		ports := r.Perm(60000)
		g := &gen{at: detWarmup}
		k := 0
		g.next = func(g *gen) bool {
			if g.at >= detDuration || k >= len(ports) {
				return false
			}
			g.frame = tcpFrame(a, detServer4, 44000, uint16(1025+ports[k]), tcpSYN, uint32(k), nil)
			if k > 0 {
				g.at += time.Duration(float64(time.Second) / rate)
			}
			k++
			return g.at < detDuration
		}
		c.gens = []*gen{g}
	}
	return cs
}

func sortSteps(ss []step) {
	for i := 1; i < len(ss); i++ {
		for j := i; j > 0 && ss[j].at < ss[j-1].at; j-- {
			ss[j], ss[j-1] = ss[j-1], ss[j]
		}
	}
}

// writeScenario writes every class's frames, merged in time order, to a
// pcap file at path; it returns the frame count.
func writeScenario(path string, cs []*detClass) (int, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	w := pcapgo.NewWriter(bw)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		return 0, err
	}
	h := &genHeap{}
	for _, c := range cs {
		for _, g := range c.gens {
			if g.next(g) {
				heap.Push(h, g)
			}
		}
	}
	n := 0
	for h.Len() > 0 {
		g := (*h)[0]
		ts := detEpoch.Add(g.at)
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(g.frame), Length: len(g.frame)}, g.frame); err != nil {
			return n, err
		}
		n++
		if g.next(g) {
			heap.Fix(h, 0)
		} else {
			heap.Pop(h)
		}
	}
	if err := bw.Flush(); err != nil {
		return n, err
	}
	return n, f.Close()
}
