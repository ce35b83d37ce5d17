package resilience_test

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/agenttest"
	"github.com/bulwark-filter/bulwark/test/netns"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

const (
	xdpDrop = 1
	xdpPass = 2
)

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
)

// ipv4Checksum rewrites the header checksum of the IPv4 header at h.
func ipv4Checksum(h []byte) {
	h[10], h[11] = 0, 0
	binary.BigEndian.PutUint16(h[10:], netns.ChecksumFold(netns.ChecksumAdd(0, h[:20])))
}

// TestFloodDistinctSources runs millions of distinct random sources
// (198.18.0.0/15 and 2001:2::/48, IPv6 tracked per /128 so every address is
// its own source) through the program with BPF_PROG_TEST_RUN, on both CPUs
// at once. The LRU sources map must stay at its configured size, no state
// update may fail, and a well-behaved source tracked before the flood that
// keeps sending one packet every 1000 flood packets must keep being served.
func TestFloodDistinctSources(t *testing.T) {
	total := pick(1_000_000, 10_000_000)
	const maxSources = 1 << 16
	sz := testutil.SmallSizes()
	sz.Sources = maxSources
	d := testutil.Load(t, testutil.Setup{
		Sizes: sz,
		Policy: maps.Policy{
			Mode:       maps.ModeEnforce,
			IPv6Prefix: 128,
			Default:    maps.Limit{PPS: 1000, Burst: 100},
		},
	})
	memBefore, err := d.Maps.Memory()
	if err != nil {
		t.Fatal(err)
	}

	good := netip.MustParseAddr("198.18.1.2")
	goodFrame := netns.UDP4(macA, macB, good, netns.ServerAddr4, 40000, agenttest.UDPPort, netns.Payload(1, 64))
	for i := 0; i < 10; i++ {
		if ret, err := d.Run(goodFrame); err != nil || ret != xdpPass {
			t.Fatalf("well-behaved source before the flood: verdict %d, %v; want pass", ret, err)
		}
	}
	if _, ok, err := d.Maps.LookupSource(good); err != nil || !ok {
		t.Fatalf("well-behaved source not tracked before the flood: %v", err)
	}

	const every = 1000
	workers := 2
	var wg sync.WaitGroup
	type res struct {
		sent, v4, goodSent, goodDropped int
		err                             error
	}
	results := make([]res, workers)
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := &results[w]
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(w)))
			f4 := netns.UDP4(macA, macB, netip.MustParseAddr("198.18.0.1"), netns.ServerAddr4, 40000, agenttest.UDPPort, netns.Payload(2, 64))
			f6 := netns.UDP6(macA, macB, netip.MustParseAddr("2001:2::1"), netns.ServerAddr6, 40000, agenttest.UDPPort, netns.Payload(3, 64))
			for i := w; i < total; i += workers {
				var f []byte
				if i%4 == 0 {
					// 198.18.0.0/15: 17 random host bits.
					v := 198<<24 | 18<<16 | rng.Uint32()&0x1ffff
					binary.BigEndian.PutUint32(f4[14+12:], v)
					ipv4Checksum(f4[14:34])
					f, r.v4 = f4, r.v4+1
				} else {
					// 2001:2::/48: the 80 bits after the prefix random.
					src := f6[14+8 : 14+24]
					binary.BigEndian.PutUint16(src[6:], uint16(rng.Uint32()))
					binary.BigEndian.PutUint64(src[8:], rng.Uint64())
					f = f6
				}
				if _, err := d.Run(f); err != nil {
					r.err = err
					return
				}
				r.sent++
				if w == 0 && i%(every*workers) == 0 {
					r.goodSent++
					ret, err := d.Run(goodFrame)
					if err != nil {
						r.err = err
						return
					}
					if ret != xdpPass {
						r.goodDropped++
					}
				}
			}
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	var sent, v4, goodSent, goodDropped int
	for _, r := range results {
		if r.err != nil {
			t.Fatalf("test run: %v", r.err)
		}
		sent, v4, goodSent, goodDropped = sent+r.sent, v4+r.v4, goodSent+r.goodSent, goodDropped+r.goodDropped
	}

	tracked := 0
	if err := d.Maps.IterateSources(func(b []maps.Source) bool { tracked += len(b); return true }); err != nil {
		t.Fatal(err)
	}
	misc, err := d.Maps.Misc()
	if err != nil {
		t.Fatal(err)
	}
	memAfter, err := d.Maps.Memory()
	if err != nil {
		t.Fatal(err)
	}
	st, err := d.Maps.Stats()
	if err != nil {
		t.Fatal(err)
	}
	_, goodTracked, err := d.Maps.LookupSource(good)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d frames (%d IPv4 over 2^17 addresses, %d IPv6 /128s) in %s (%.2f µs/frame on %d CPUs); "+
		"tracked %d of %d; misc %+v; sources map memlock %d -> %d bytes; well-behaved %d sent, %d dropped",
		sent, v4, sent-v4, elapsed.Round(time.Millisecond), float64(elapsed.Microseconds())/float64(sent)*float64(workers),
		workers, tracked, maxSources, misc, memBefore[maps.MapSources], memAfter[maps.MapSources], goodSent, goodDropped)
	summary(t, "%d distinct-source frames in %s; tracked %d <= %d; state_failed %d; sources memlock %d B before and %d B after; well-behaved %d/%d passed",
		sent, elapsed.Round(time.Second), tracked, maxSources, misc.StateFailed, memBefore[maps.MapSources], memAfter[maps.MapSources], goodSent-goodDropped, goodSent)

	if sent != total {
		t.Errorf("ran %d frames, want %d", sent, total)
	}
	if tracked > maxSources || tracked < maxSources/2 {
		t.Errorf("tracked sources %d, want at most the map size %d (and the map well used)", tracked, maxSources)
	}
	if misc.StateFailed != 0 {
		t.Errorf("state_failed = %d after the flood, want 0 (the LRU map evicts, an update never fails)", misc.StateFailed)
	}
	if goodDropped != 0 || goodSent < total/(every*workers)-1 {
		t.Errorf("well-behaved source: %d of %d packets dropped during the flood, want 0", goodDropped, goodSent)
	}
	// Without the new-source ceiling (off here) the kernel's LRU, which is
	// approximate and per CPU, may evict even a source that keeps sending;
	// that costs it its history, not its packets (checked above).
	// TestFloodAggregateAndCeiling shows the ceiling keeping it tracked.
	t.Logf("well-behaved source still tracked after the flood: %v", goodTracked)
	if memAfter[maps.MapSources] != memBefore[maps.MapSources] {
		t.Errorf("sources map memory %d -> %d bytes, want unchanged (preallocated)", memBefore[maps.MapSources], memAfter[maps.MapSources])
	}
	if got := st.Total().Packets; got < uint64(sent) {
		t.Errorf("datapath counted %d packets, want at least %d", got, sent)
	}
}
