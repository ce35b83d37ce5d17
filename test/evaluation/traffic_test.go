package evaluation_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bulwark-filter/bulwark/test/netns"
)

// Service ports of the well-behaved population.
var (
	tcpServices = []uint16{80, 443, 8080, 22}
	udpServices = []uint16{53, 123, 9000}
)

// rxPort is where the server counts UDP datagrams (netns.Receiver).
const rxPort = 9000

// goodSource is one well-behaved client.
type goodSource struct {
	addr  netip.Addr
	pps   float64
	tcp   []uint16 // TCP service ports it connects to
	udp   []uint16 // UDP service ports it queries
	sent  atomic.Int64
	next  time.Time
	left  int    // packets left in the current TCP connection; 0: next is a SYN
	sport uint16 // source port of the current connection
	dport uint16
	seq   uint32
}

// population draws n well-behaved sources 198.18.20.1.. with a fixed seed:
// rates log-normal around a median of 10 pps (sigma 0.8 in log space),
// clamped to [2, 60] pps; each source uses 1-3 service ports, TCP, UDP or
// both (about 60 % TCP).
func population(n int, seed uint64) []*goodSource {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	srcs := make([]*goodSource, n)
	for i := range srcs {
		pps := math.Exp(math.Log(10) + 0.8*rng.NormFloat64())
		pps = math.Min(60, math.Max(2, pps))
		g := &goodSource{addr: netip.AddrFrom4([4]byte{198, 18, 20, byte(i + 1)}), pps: math.Round(pps*10) / 10}
		k := 1 + rng.IntN(3)
		for j := 0; j < k; j++ {
			if rng.Float64() < 0.6 {
				p := tcpServices[rng.IntN(len(tcpServices))]
				if !contains(g.tcp, p) {
					g.tcp = append(g.tcp, p)
				}
			} else {
				p := udpServices[rng.IntN(len(udpServices))]
				if !contains(g.udp, p) {
					g.udp = append(g.udp, p)
				}
			}
		}
		srcs[i] = g
	}
	return srcs
}

func contains(l []uint16, p uint16) bool {
	for _, x := range l {
		if x == p {
			return true
		}
	}
	return false
}

// playGood sends the population's traffic from one goroutine until ctx
// ends or limit passes: each source's packets are spaced 1/pps apart with
// +-50 % jitter; a TCP source opens a connection with one SYN and then sends
// 5-40 ACK/data segments (0-600 bytes) on it before the next SYN; a UDP
// source sends 64-512 byte datagrams. A mixed source alternates at random.
func (e *env) playGood(ctx context.Context, srcs []*goodSource, limit time.Duration, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x600d))
	start := time.Now()
	end := start.Add(limit)
	for _, g := range srcs {
		g.next = start.Add(time.Duration(rng.Float64() * float64(time.Second) / g.pps))
	}
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		if now.After(end) {
			return
		}
		for _, g := range srcs {
			for n := 0; !g.next.After(now) && n < 10; n++ { // n bounds catch-up after a stall
				e.sendFrame(e.goodFrame(g, rng), end)
				g.sent.Add(1)
				gap := (0.5 + rng.Float64()) / g.pps
				g.next = g.next.Add(time.Duration(gap * float64(time.Second)))
			}
			if !g.next.After(now) {
				g.next = now // too far behind: do not burst
			}
		}
	}
}

func (e *env) goodFrame(g *goodSource, rng *rand.Rand) []byte {
	useTCP := len(g.tcp) > 0 && (len(g.udp) == 0 || g.left > 0 || rng.Float64() < 0.6)
	if !useTCP {
		p := g.udp[rng.IntN(len(g.udp))]
		return netns.UDP4(e.TB.ServerMAC, e.TB.ClientMAC, g.addr, netns.ServerAddr4,
			uint16(30000+rng.IntN(30000)), p, netns.Payload(uint64(g.sent.Load()), 64+rng.IntN(449)))
	}
	if g.left == 0 {
		g.left = 5 + rng.IntN(36)
		g.sport = uint16(30000 + rng.IntN(30000))
		g.dport = g.tcp[rng.IntN(len(g.tcp))]
		g.seq = rng.Uint32()
		return tcp4(e.TB.ServerMAC, e.TB.ClientMAC, g.addr, netns.ServerAddr4, g.sport, g.dport, tcpSYN, g.seq, 0)
	}
	g.left--
	n := 0
	if rng.Float64() < 0.5 {
		n = 16 + rng.IntN(585)
	}
	g.seq += uint32(n)
	return tcp4(e.TB.ServerMAC, e.TB.ClientMAC, g.addr, netns.ServerAddr4, g.sport, g.dport, tcpACK|tcpPSH, g.seq, n)
}

// sendFrame sends one frame (retrying a full queue until deadline).
func (e *env) sendFrame(f []byte, deadline time.Time) bool {
	sent, _, err := e.Snd.Send([][]byte{f}, 1, deadline, 0)
	return err == nil && sent[0] == 1
}

// attacker is one labelled malicious source of the scenario.
type attacker struct {
	name    string
	addr    netip.Addr   // a source address it uses (explain is asked about it)
	prefix  netip.Prefix // how verdicts name it (/32, or the /64 of the rotator)
	startAt time.Duration
	dur     time.Duration // how long it sends at most
	pps     float64
	frame   func(i int) []byte
	fast    bool     // target: verdict within 3 s; otherwise within 60 s
	feed    bool     // caught by the feed's block list, not by a verdict
	top     []string // acceptable top contributors of its verdict's score
	what    string   // one line for the report

	stop      chan struct{} // closed to stop it early (slow scanner caught)
	stopOnce  sync.Once
	firstAt   atomic.Int64 // unix ns of the first packet
	lastAt    atomic.Int64
	sentCount atomic.Int64
}

func (a *attacker) halt() { a.stopOnce.Do(func() { close(a.stop) }) }

// play sends a's frames, paced in 1 ms steps, from t0+startAt for dur
// (bounded: at most pps*dur frames).
func (e *env) play(ctx context.Context, a *attacker, t0 time.Time) {
	select {
	case <-ctx.Done():
		return
	case <-a.stop:
		return
	case <-time.After(time.Until(t0.Add(a.startAt))):
	}
	max := int(a.pps * a.dur.Seconds())
	start := time.Now()
	end := start.Add(a.dur)
	a.firstAt.Store(start.UnixNano())
	i := 0
	for i < max {
		select {
		case <-ctx.Done():
			return
		case <-a.stop:
			return
		default:
		}
		now := time.Now()
		if now.After(end) {
			break
		}
		due := min(max, int(now.Sub(start).Seconds()*a.pps)+1)
		for ; i < due; i++ {
			if !e.sendFrame(a.frame(i), end) {
				break
			}
			a.sentCount.Add(1)
			a.lastAt.Store(time.Now().UnixNano())
		}
		sleep := time.Millisecond
		if a.pps < 1000 {
			sleep = time.Duration(float64(time.Second) / a.pps / 2)
			sleep = min(sleep, 100*time.Millisecond)
		}
		time.Sleep(sleep)
	}
}

// rateStats summarises the population's rates for the log.
func rateStats(srcs []*goodSource) string {
	r := make([]float64, len(srcs))
	sum := 0.0
	tcp, udp, mixed := 0, 0, 0
	for i, g := range srcs {
		r[i] = g.pps
		sum += g.pps
		switch {
		case len(g.tcp) > 0 && len(g.udp) > 0:
			mixed++
		case len(g.tcp) > 0:
			tcp++
		default:
			udp++
		}
	}
	sort.Float64s(r)
	return fmt.Sprintf("%d sources, pps min %.1f p25 %.1f median %.1f p75 %.1f p90 %.1f max %.1f, total %.0f pps; %d TCP, %d UDP, %d mixed",
		len(r), r[0], r[len(r)/4], r[len(r)/2], r[3*len(r)/4], r[9*len(r)/10], r[len(r)-1], sum, tcp, udp, mixed)
}
