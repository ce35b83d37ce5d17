package evaluation_test

import (
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/bulwark-filter/bulwark/test/agenttest"
	"github.com/bulwark-filter/bulwark/test/netns"
)

// TestScansLive runs scans against the real agent on the veth testbed,
// with well-behaved traffic (20 sources of the evaluation's population)
// throughout:
//
//   - a horizontal scan: 198.18.44.1 sends one TCP SYN to port 22 of each
//     of 240 addresses of 198.18.5.0/24, which the server owns (a local
//     route in its namespace), 4 per second for 60 s;
//   - a slow vertical scan, time compressed: the scan window is shortened
//     with reputation.scan_window = "16s" (2^33 ns: 8.6 s, 64 times shorter
//     than the default's 9m10s), and 198.18.45.1 tries a new port every
//     5/64 s, 60 ports: 1 port per 5 s at the default window, twice the
//     pace of the slowest scan caught, as a margin for a busy machine's
//     timers (TestReplaySlowScans has 1 per 10 s on capture time). The
//     weight of port_scan is 0, so only port_scan_long can catch it (at
//     this speed the 60 s port horizon would, which a real slow scan never
//     reaches);
//   - a UDP scan of 1000 ports in 10 s from 198.18.46.1: a block, not a
//     throttle (which scales rate limits a scanner never reaches).
//
// Both must be blocked (not throttled) within their scan by their
// component, with the explanation in explain's detail; no well-behaved
// source may be judged.
func TestScansLive(t *testing.T) {
	e := newEnv(t)
	sweep := netip.MustParsePrefix("198.18.5.0/24")
	err := e.TB.InServer(func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		_, dst, _ := net.ParseCIDR(sweep.String())
		return netlink.RouteAdd(&netlink.Route{LinkIndex: lo.Attrs().Index, Dst: dst, Type: unix.RTN_LOCAL,
			Table: unix.RT_TABLE_LOCAL, Scope: netlink.SCOPE_HOST})
	})
	if err != nil {
		t.Fatalf("local route for %s in the server namespace: %v", sweep, err)
	}
	const epoch = 1 << 33 // scan_window 16s, rounded down
	cfg := strings.Replace(e.config("enforce", ""), "reputation {\n",
		"reputation {\n  scan_window = \"16s\"\n  weights     = { port_scan = 0 }\n", 1)
	e.start(cfg)

	dmac, smac := e.TB.ServerMAC, e.TB.ClientMAC
	horizontal, vertical := netip.MustParseAddr("198.18.44.1"), netip.MustParseAddr("198.18.45.1")
	udpScan := netip.MustParseAddr("198.18.46.1")
	type scan struct {
		src    netip.Addr
		n      int
		every  time.Duration
		frame  func(i int) []byte
		comp   string
		detail string
	}
	scans := []scan{
		{horizontal, 240, 250 * time.Millisecond, func(i int) []byte {
			dst := netip.AddrFrom4([4]byte{198, 18, 5, byte(i + 1)})
			return tcp4(dmac, smac, horizontal, dst, 47000, 22, tcpSYN, uint32(i), 0)
		}, "horizontal_scan", "addresses on port 22 in"},
		{vertical, 60, 5 * time.Second / 64, func(i int) []byte {
			return tcp4(dmac, smac, vertical, netns.ServerAddr4, 47001, uint16(1024+i*7919%40000), tcpSYN, uint32(i), 0)
		}, "port_scan_long", "ports in"},
		{udpScan, 1000, 10 * time.Millisecond, func(i int) []byte {
			return netns.UDP4(dmac, smac, udpScan, netns.ServerAddr4, 47002, uint16(1+i), netns.Payload(uint64(i), 32))
		}, "port_scan_long", "ports in"},
	}

	good := population(20, popSeed)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	goodCtx, stopGood := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); e.playGood(goodCtx, good, 100*time.Second, popSeed) }()
	time.Sleep(warmup) // the baseline learns

	for _, s := range scans {
		t.Run(s.src.String(), func(t *testing.T) {
			// The sender keeps its pace whatever the poller's CLI calls
			// cost; the poller watches until the block, or until the
			// sketches of the scan's last attempts are gone (two epochs
			// after it ends).
			start := time.Now()
			var sent atomic.Int64
			stop, done := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(done)
				for i := 0; i < s.n; i++ {
					select {
					case <-stop:
						return
					case <-time.After(time.Until(start.Add(time.Duration(i) * s.every))):
					}
					e.sendFrame(s.frame(i), time.Now().Add(time.Second))
					sent.Store(int64(i + 1))
				}
			}()
			blocked := int64(-1)
			var gone time.Time
			for blocked < 0 && (gone.IsZero() || time.Now().Before(gone)) {
				select {
				case <-done:
					if gone.IsZero() {
						gone = time.Now().Add(2 * epoch)
					}
				case <-time.After(pollEvery):
				}
				vs, err := e.verdicts()
				if err != nil {
					t.Fatal(err)
				}
				for _, v := range vs {
					if v.Source == s.src.String()+"/32" && v.Action == "block" {
						blocked = sent.Load()
					}
				}
			}
			close(stop)
			<-done
			if blocked < 0 {
				t.Fatalf("%s: no block after all %d attempts", s.src, s.n)
			}
			raw := e.cli("explain", s.src.String(), "--json")
			var x struct {
				Components []struct {
					Name         string  `json:"name"`
					Contribution float64 `json:"contribution"`
					Detail       string  `json:"detail"`
				} `json:"components"`
			}
			if err := json.Unmarshal([]byte(raw.Stdout), &x); err != nil || len(x.Components) == 0 {
				t.Fatalf("explain %s: %v: %s", s.src, err, raw)
			}
			top := x.Components[0]
			t.Logf("%s blocked after %d attempts (%s): %s %.1f: %s", s.src, blocked, time.Since(start).Round(time.Millisecond),
				top.Name, top.Contribution, top.Detail)
			if top.Name != s.comp || !strings.Contains(top.Detail, s.detail) {
				t.Errorf("top component %s (%q), want %s saying %q", top.Name, top.Detail, s.comp, s.detail)
			}
		})
	}
	stopGood()
	wg.Wait()
	vs, err := e.verdicts()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		if p, err := netip.ParsePrefix(v.Source); err != nil || goodNet.Overlaps(p) {
			t.Errorf("verdict on a well-behaved source: %+v", v)
		}
	}
	// The audit log keeps the explanation of each block.
	type record struct {
		What   string   `json:"what"`
		Target []string `json:"target"`
		Detail string   `json:"detail"`
	}
	for _, s := range scans {
		found := ""
		for _, r := range agenttest.AuditLog[record](e.Env) {
			if r.What == "verdict.block" && len(r.Target) == 1 && r.Target[0] == s.src.String()+"/32" {
				found = r.Detail
			}
		}
		if !strings.Contains(found, s.comp+": ") || !strings.Contains(found, s.detail) {
			t.Errorf("%s: audit detail of its block %q, want %s's", s.src, found, s.comp)
		}
	}
}
