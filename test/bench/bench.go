// Package bench measures the datapath with BPF_PROG_TEST_RUN
// (Program.Benchmark): ns per packet for each case, beside a floor program
// measured alternately with it in the same run: a bare XDP_DROP, or for the
// block-list cases, which cycle through many distinct sources by way of
// bpf/rotate.c, the same rotation then XDP_DROP. Every round is kept; a
// case whose rounds spread too much is measured again.
//
// Run it with `go run ./test/bench/cmd` (prints a table) or
// `go test -run '^$' -bench . -benchtime 1x ./test/bench/` (as root).
package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bulwark-filter/bulwark/bpf"
	"github.com/bulwark-filter/bulwark/loader"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/netns"
)

// Case is one program and frame to measure.
type Case struct {
	Name  string
	Note  string
	Prog  *ebpf.Program
	Frame []byte
	Want  uint32 // the XDP verdict the case must return
	Floor string // the case whose median is this one's floor; "" is "floor"
	// Runs is how many times the run's repeat one measurement of this
	// case runs (0 is once): the -wide cases, whose cost is memory
	// latency, need longer measurements to pass the stability check.
	Runs int
	// Warm is how many untimed runs go before each measurement: a
	// rotated case's addresses, once through, so that it is measured
	// from its steady state, not from the cache state the cases measured
	// before it left (a -wide case evicts every other source from the
	// list cache).
	Warm int
}

// Result is a case's rounds and their median, beside its floor's.
type Result struct {
	Name        string      `json:"case"`
	Note        string      `json:"note"`
	NsPerPkt    float64     `json:"ns_per_packet"` // median of Rounds
	Min         float64     `json:"min_ns"`
	Max         float64     `json:"max_ns"`
	Q1          float64     `json:"q1_ns"` // first quartile of Rounds
	Q3          float64     `json:"q3_ns"` // third quartile of Rounds
	Floor       string      `json:"floor"`
	FloorNs     float64     `json:"floor_ns"` // median of FloorRounds
	XFloor      float64     `json:"x_floor"`  // NsPerPkt / FloorNs
	Rounds      []float64   `json:"rounds_ns"`
	FloorRounds []float64   `json:"floor_rounds_ns"`
	Attempts    int         `json:"attempts"`
	Stable      bool        `json:"stable"` // the last attempt, case and floor, passed the MaxSpread check
	Rejected    [][]float64 `json:"rejected_rounds_ns,omitempty"`
}

// XDP verdicts.
const (
	xdpDrop = 1
	xdpPass = 2
)

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
	dst4 = netip.MustParseAddr("198.18.1.1")
	dst6 = netip.MustParseAddr("2001:2:0:1::1")
)

func udp4(src netip.Addr) []byte {
	return netns.UDP4(macB, macA, src, dst4, 40000, 9000, netns.Payload(1, 18))
}

func udp6(src netip.Addr) []byte {
	return netns.UDP6(macB, macA, src, dst6, 40000, 9000, netns.Payload(1, 18))
}

// Bench holds the loaded datapaths; Close releases them.
type Bench struct {
	Cases   []Case
	closers []io.Closer
}

// Close releases every program and map.
func (b *Bench) Close() {
	for _, c := range b.closers {
		c.Close()
	}
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

func sizes(blockHosts, blockPrefixes, sources uint32) loader.Sizes {
	return loader.Sizes{
		Sources: sources, RuleBuckets: 4096, Verdicts: 1024,
		AllowHosts: 1024, AllowPrefixes: 1024, BlockHosts: blockHosts, BlockPrefixes: blockPrefixes,
		Classes: 256, Lists: 64, Aggregates: 1024, EventsBytes: 1 << 16,
	}
}

func (b *Bench) load(s loader.Sizes, p maps.Policy) (*loader.Datapath, error) {
	d, err := loader.Load(loader.Options{Sizes: s})
	if err != nil {
		return nil, err
	}
	b.closers = append(b.closers, closerFunc(d.Close))
	if err := d.Maps.ApplyPolicy(&p); err != nil {
		return nil, err
	}
	return d, nil
}

// hits are addresses a block list made by feed matches: for each family, a
// host entry and an address covered by a prefix and by no host entry.
type hits struct {
	host4, net4, host6, net6 netip.Addr
}

// feed makes n block entries like a real feed of both families, random but
// seeded: runs of ten entries alternately IPv4 and IPv6, each run nine
// single hosts and one prefix, so either family is 90 % hosts and 10 %
// prefixes. IPv4 entries lie anywhere in the IPv4 space, prefixes /16-/31;
// IPv6 entries inside 2001:2::/48, prefixes /64-/123.
func feed(n int, seed int64) ([]maps.Entry, hits) {
	rng := rand.New(rand.NewSource(seed))
	base6 := netip.MustParseAddr("2001:2::").As16()
	hosts := map[netip.Addr]bool{}
	var out []maps.Entry
	var nets []netip.Prefix
	for len(out) < n {
		var addr netip.Addr
		minBits, spread := 16, 16
		if len(out)/10%2 == 1 {
			a := base6
			rng.Read(a[6:])
			addr, minBits, spread = netip.AddrFrom16(a), 64, 60
		} else {
			var a [4]byte
			rng.Read(a[:])
			addr = netip.AddrFrom4(a)
		}
		if len(out)%10 == 9 {
			p := netip.PrefixFrom(addr, minBits+rng.Intn(spread)).Masked()
			nets = append(nets, p)
			out = append(out, maps.Entry{Prefix: p, ListID: 1})
			continue
		}
		if hosts[addr] {
			continue
		}
		hosts[addr] = true
		out = append(out, maps.Entry{Prefix: netip.PrefixFrom(addr, addr.BitLen()), ListID: 1})
	}
	var h hits
	// Hosts from the middle of the list.
	for _, e := range out[len(out)/2:] {
		a := e.Prefix.Addr()
		switch {
		case !e.Prefix.IsSingleIP():
		case a.Is4() && !h.host4.IsValid():
			h.host4 = a
		case a.Is6() && !h.host6.IsValid():
			h.host6 = a
		}
	}
	// Addresses inside a prefix that are no host entry.
	for _, p := range nets {
		a := p.Addr().Next()
		if !p.Contains(a) || hosts[a] {
			continue
		}
		if a.Is4() && !h.net4.IsValid() {
			h.net4 = a
		} else if a.Is6() && !h.net6.IsValid() {
			h.net6 = a
		}
	}
	if !h.host4.IsValid() || !h.host6.IsValid() || !h.net4.IsValid() || !h.net6.IsValid() {
		panic(fmt.Sprintf("feed of %d entries lacks a hit of some kind: %+v", n, h))
	}
	return out, h
}

// sourceAddr is the i-th of the distinct sources writeSources makes: the
// 65536 addresses of 198.19.0.0/16, then hosts of 2001:2:0:ffff::/64 (as
// distinct sources only where IPv6 is tracked at /128).
func sourceAddr(i int) netip.Addr {
	if i < 1<<16 {
		return netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)})
	}
	a := netip.MustParseAddr("2001:2:0:ffff::").As16()
	binary.BigEndian.PutUint64(a[8:], uint64(i-1<<16))
	return netip.AddrFrom16(a)
}

// writeSources writes n distinct sources (sourceAddr 0..n-1, keyed as by a
// datapath tracking IPv6 at /128) into a sources map with batch updates.
// Their counters are those of round: source i has sent round*(1+i%50)
// packets of 200 bytes, so rewriting with the next round looks, to the
// scorer, like every source kept sending at its own steady rate.
func writeSources(m *ebpf.Map, n int, round uint64) error {
	const batch = 65536
	keys := make([]bpf.BulwarkSrcKey, 0, batch)
	vals := make([]bpf.BulwarkSrcState, 0, batch)
	now := monotonicNow()
	for i := 0; i < n; i += batch {
		keys, vals = keys[:0], vals[:0]
		for j := i; j < min(i+batch, n); j++ {
			pk := round * uint64(1+j%50)
			keys = append(keys, bpf.BulwarkSrcKey{Addr: maps.SourceKey(sourceAddr(j), 128)})
			vals = append(vals, bpf.BulwarkSrcState{FirstSeenNs: now, LastSeenNs: now, Packets: pk, Bytes: 200 * pk})
		}
		if _, err := m.BatchUpdate(keys, vals, nil); err != nil {
			return fmt.Errorf("write sources %d-%d: %w", i, i+len(keys)-1, err)
		}
	}
	return nil
}

// countSources is how many entries a sources map holds, read in batches.
func countSources(m *ebpf.Map) (int, error) {
	n, err := countEntries[bpf.BulwarkSrcKey, bpf.BulwarkSrcState](m)
	if err != nil {
		return n, fmt.Errorf("count sources: %w", err)
	}
	return n, nil
}

// countEntries is how many entries m (keys K, values V) holds, read in
// batches.
func countEntries[K, V any](m *ebpf.Map) (int, error) {
	keys := make([]K, 4096)
	vals := make([]V, 4096)
	var cursor ebpf.MapBatchCursor
	count := 0
	for {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		count += n
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return count, nil
		}
		if err != nil {
			return count, err
		}
	}
}

// fillSources puts n distinct sources into the datapath's sources map
// (found through the program's map ids) and returns how many it holds.
func fillSources(d *loader.Datapath, n int) (int, error) {
	m, err := programMap(d, maps.MapSources)
	if err != nil {
		return 0, err
	}
	defer m.Close()
	if err := writeSources(m, n, 1); err != nil {
		return 0, err
	}
	return countSources(m)
}

// programMap opens the map called name of d's program (found through the
// program's map ids); the caller closes it.
func programMap(d *loader.Datapath, name string) (*ebpf.Map, error) {
	info, err := d.Program().Info()
	if err != nil {
		return nil, fmt.Errorf("program info: %w", err)
	}
	ids, _ := info.MapIDs()
	for _, id := range ids {
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			return nil, fmt.Errorf("map %d: %w", id, err)
		}
		if mi, err := m.Info(); err == nil && mi.Name == name {
			return m, nil
		}
		m.Close()
	}
	return nil, fmt.Errorf("%s map not found", name)
}

// monotonicNow is CLOCK_MONOTONIC in ns, the datapath's clock.
func monotonicNow() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

// Options says what Setup loads.
type Options struct {
	Logf      func(string, ...any) // progress; may be nil
	Slots     int                  // addresses a rotated case cycles through, a power of two; 0 is DefaultSlots
	WideSlots int                  // addresses the -wide cases cycle through, a power of two; 0 is DefaultWideSlots, -1 none
	ListSizes []int                // block list fills; nil is 1k, 100k and 1M
	Sources   int                  // sources tracked in the ratelimited case; 0 is 1M
}

// sizeLabel names a list fill: 1k, 100k, 1M.
func sizeLabel(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return strconv.Itoa(n)
}

// Setup loads every case.
func Setup(o Options) (*Bench, error) {
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if o.Slots == 0 {
		o.Slots = DefaultSlots
	}
	if o.WideSlots == 0 {
		o.WideSlots = DefaultWideSlots
	}
	if o.ListSizes == nil {
		o.ListSizes = []int{1_000, 100_000, 1_000_000}
	}
	if o.Sources == 0 {
		o.Sources = 1_000_000
	}
	b := &Bench{}
	ok := false
	defer func() {
		if !ok {
			b.Close()
		}
	}()

	var floor bpf.FloorObjects
	if err := bpf.LoadFloorObjects(&floor, nil); err != nil {
		return nil, fmt.Errorf("load floor: %w", err)
	}
	b.closers = append(b.closers, &floor)
	b.Cases = append(b.Cases, Case{Name: "floor", Note: "bare XDP_DROP", Prog: floor.FloorDrop, Frame: udp4(netip.MustParseAddr("198.18.3.3")), Want: xdpDrop})
	// The floors of the rotated cases: the same rotation, then XDP_DROP.
	rng := rand.New(rand.NewSource(1))
	type floorCase struct {
		name  string
		frame func(netip.Addr) []byte
		addr  func(int) netip.Addr
		slots int
	}
	floors := []floorCase{
		{"floor-rotate4", udp4, func(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18 + byte(i>>16), byte(i >> 8), byte(i)}) }, o.Slots},
		{"floor-rotate6", udp6, func(i int) netip.Addr { return sourceAddr(1<<16 + i) }, o.Slots},
	}
	if o.WideSlots > 0 {
		for _, f := range floors[:2] {
			f.name, f.slots = f.name+"-wide", o.WideSlots
			floors = append(floors, f)
		}
	}
	for _, f := range floors {
		addrs := make([]netip.Addr, f.slots)
		for i := range addrs {
			addrs[i] = f.addr(i)
		}
		rng.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
		rot, err := loadRotator(addrs, floor.FloorDrop)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.name, err)
		}
		b.closers = append(b.closers, rot)
		runs := 0
		if f.slots == o.WideSlots {
			runs = wideRuns
		}
		b.Cases = append(b.Cases, Case{Name: f.name, Note: fmt.Sprintf("%d source addresses in turn, then XDP_DROP", f.slots),
			Prog: rot.Rotate, Frame: f.frame(addrs[0]), Want: xdpDrop, Runs: runs, Warm: len(addrs)})
	}

	high := maps.Limit{PPS: 1_000_000_000, Burst: 1_000_000_000}

	// Pass path: every list holds entries, none matches; a high default
	// limit, so the source's bucket and observations are updated and the
	// packet passes.
	d, err := b.load(sizes(1024, 1024, 1<<16), maps.Policy{Default: high})
	if err != nil {
		return nil, err
	}
	some := []maps.Entry{
		{Prefix: netip.MustParsePrefix("203.0.113.7/32"), ListID: 1},
		{Prefix: netip.MustParsePrefix("192.0.2.0/24"), ListID: 1},
		{Prefix: netip.MustParsePrefix("2001:db8::7/128"), ListID: 1},
		{Prefix: netip.MustParsePrefix("2001:db8:1::/48"), ListID: 1},
	}
	if err := d.Maps.Allow.Add(some); err != nil {
		return nil, err
	}
	if err := d.Maps.Block.Add(some); err != nil {
		return nil, err
	}
	allowed := netip.MustParseAddr("198.18.5.5")
	if err := d.Maps.Allow.Add([]maps.Entry{{Prefix: netip.PrefixFrom(allowed, 32), ListID: 2}}); err != nil {
		return nil, fmt.Errorf("allow-host: %w", err)
	}
	b.Cases = append(b.Cases,
		Case{Name: "pass", Note: "all lookups miss, bucket+observe", Prog: d.Program(), Frame: udp4(netip.MustParseAddr("198.18.3.3")), Want: xdpPass},
		Case{Name: "allow-host", Note: "source on the allow list (/32); pass", Prog: d.Program(), Frame: udp4(allowed), Want: xdpPass},
		Case{Name: "vlan2", Note: "802.1ad + 802.1Q tags, lookups miss; pass", Prog: d.Program(), Want: xdpPass,
			Frame: netns.Tagged(udp4(netip.MustParseAddr("198.18.7.7")), netns.TPID8021AD, netns.TPID8021Q)},
		Case{Name: "ipv6-3ext", Note: "hop-by-hop, routing, dest opts; pass", Prog: d.Program(), Want: xdpPass,
			Frame: netns.UDP6(macB, macA, netip.MustParseAddr("2001:2:0:3::3"), dst6, 40000, 9000, netns.Payload(1, 18),
				netns.ExtHopByHop, netns.ExtRouting, netns.ExtDestOpts)},
		// An IPv4 packet whose TCP header is cut to 10 of its 20 bytes.
		Case{Name: "malformed", Note: "IPv4, TCP header cut to 10 bytes; drop", Prog: d.Program(), Want: xdpDrop,
			Frame: netns.IPv4(macB, macA, netip.MustParseAddr("198.18.6.6"), dst4, 6, make([]byte, 10))})

	// A dynamic block verdict, behind list lookups that miss.
	d, err = b.load(sizes(1024, 1024, 1<<16), maps.Policy{Default: high})
	if err != nil {
		return nil, fmt.Errorf("verdict-block: %w", err)
	}
	if err := d.Maps.Allow.Add(some); err != nil {
		return nil, fmt.Errorf("verdict-block: %w", err)
	}
	if err := d.Maps.Block.Add(some); err != nil {
		return nil, fmt.Errorf("verdict-block: %w", err)
	}
	judged := netip.MustParseAddr("198.18.8.8")
	if err := d.Maps.PutVerdict(judged, maps.VerdictBlock, monotonicNow()+uint64(time.Hour), maps.OriginScorer, 90); err != nil {
		return nil, fmt.Errorf("verdict-block: %w", err)
	}
	b.Cases = append(b.Cases, Case{Name: "verdict-block", Note: "block verdict in the verdicts map; drop", Prog: d.Program(), Frame: udp4(judged), Want: xdpDrop})

	// Block-list hits, the same map sizes for every fill; one list holds
	// both families. Each kind of hit twice: rotated through o.Slots
	// addresses in random order (beside its rotation floor), and one
	// address repeated, the cache-hot best case.
	largest := slices.Max(o.ListSizes)
	for _, n := range o.ListSizes {
		t0 := time.Now()
		d, err := b.load(sizes(1<<20, 1<<17, 1<<16), maps.Policy{Default: high})
		if err != nil {
			return nil, err
		}
		entries, h := feed(n, int64(n))
		if err := d.Maps.Block.Add(entries); err != nil {
			return nil, fmt.Errorf("block list of %d entries: %w", n, err)
		}
		// The largest list again with its cache off, for the -wide
		// cases' baseline: the maps' own lookup, in the same run.
		var off *loader.Datapath
		if n == largest && o.WideSlots > 0 {
			if off, err = b.load(sizes(1<<20, 1<<17, 1<<16), maps.Policy{Default: high}); err != nil {
				return nil, err
			}
			if err := off.Maps.Block.Add(entries); err != nil {
				return nil, fmt.Errorf("block list of %d entries, cache off: %w", n, err)
			}
			if err := blockCacheOff(off); err != nil {
				return nil, err
			}
		}
		label := sizeLabel(n)
		for _, c := range []struct {
			name, what, floor string
			kind              hitKind
			hot               netip.Addr
			frame             func(netip.Addr) []byte
		}{
			{"block-host-", "IPv4 /32 hit", "floor-rotate4", hitHost4, h.host4, udp4},
			{"block-prefix-", "IPv4 prefix hit", "floor-rotate4", hitNet4, h.net4, udp4},
			{"block6-host-", "IPv6 /128 hit", "floor-rotate6", hitHost6, h.host6, udp6},
			{"block6-prefix-", "IPv6 prefix hit", "floor-rotate6", hitNet6, h.net6, udp6},
		} {
			addrs, distinct, err := distinctHits(entries, c.kind, o.Slots, rng)
			if err != nil {
				return nil, fmt.Errorf("%s%s: %w", c.name, label, err)
			}
			if err := checkHits(d, c.frame, addrs[:distinct]); err != nil {
				return nil, fmt.Errorf("%s%s: %w", c.name, label, err)
			}
			rot, err := loadRotator(addrs, d.Program())
			if err != nil {
				return nil, fmt.Errorf("%s%s: %w", c.name, label, err)
			}
			b.closers = append(b.closers, rot)
			b.Cases = append(b.Cases,
				Case{Name: c.name + label, Note: fmt.Sprintf("%d entries (v4+v6), %s, %d distinct sources in random order", n, c.what, distinct),
					Prog: rot.Rotate, Frame: c.frame(addrs[0]), Want: xdpDrop, Floor: c.floor, Warm: len(addrs)},
				Case{Name: c.name + label + "-hot", Note: fmt.Sprintf("%d entries (v4+v6), %s, one source: cache-hot best case", n, c.what),
					Prog: d.Program(), Frame: c.frame(c.hot), Want: xdpDrop})
			if n != largest {
				continue
			}
			// The same hits from few sources, whose cache lines stay
			// in the CPU's own caches: what the many sources' memory
			// adds.
			few, _, err := distinctHits(entries, c.kind, FewSlots, rng)
			if err != nil {
				return nil, fmt.Errorf("%s%s-%d: %w", c.name, label, FewSlots, err)
			}
			if rot, err = loadRotator(few, d.Program()); err != nil {
				return nil, fmt.Errorf("%s%s-%d: %w", c.name, label, FewSlots, err)
			}
			b.closers = append(b.closers, rot)
			b.Cases = append(b.Cases, Case{Name: fmt.Sprintf("%s%s-%d", c.name, label, FewSlots),
				Note: fmt.Sprintf("%d entries (v4+v6), %s, %d distinct sources in random order: their cache lines fit the CPU's caches", n, c.what, FewSlots),
				Prog: rot.Rotate, Frame: c.frame(few[0]), Want: xdpDrop, Floor: c.floor, Warm: len(few)})
			if off == nil {
				continue
			}
			// The same hits from more sources than the per-CPU list
			// cache holds: the cost where the cache mostly misses,
			// beside the same rotation through the list with its
			// cache off.
			addrs, distinct, err = distinctHits(entries, c.kind, o.WideSlots, rng)
			if err != nil {
				return nil, fmt.Errorf("%s%s-wide: %w", c.name, label, err)
			}
			if err := checkHits(off, c.frame, addrs[:min(distinct, 1024)]); err != nil {
				return nil, fmt.Errorf("%s%s-wide-nocache: %w", c.name, label, err)
			}
			for _, w := range []struct {
				suffix, note string
				d            *loader.Datapath
			}{
				{"-wide", "more than the list cache holds", d},
				{"-wide-nocache", "the same list with its cache off (the maps' own lookup)", off},
			} {
				rot, err = loadRotator(addrs, w.d.Program())
				if err != nil {
					return nil, fmt.Errorf("%s%s%s: %w", c.name, label, w.suffix, err)
				}
				b.closers = append(b.closers, rot)
				b.Cases = append(b.Cases, Case{Name: c.name + label + w.suffix,
					Note: fmt.Sprintf("%d entries (v4+v6), %s, %d distinct sources in random order: %s", n, c.what, distinct, w.note),
					Prog: rot.Rotate, Frame: c.frame(addrs[0]), Want: xdpDrop, Floor: c.floor + "-wide", Runs: wideRuns,
					Warm: len(addrs)})
			}
		}
		logf("block list of %d entries loaded and checked in %v", n, time.Since(t0).Round(time.Millisecond))
	}

	// A source over its limit among 1M tracked sources.
	t0 := time.Now()
	// IPv6 tracked at /128, as fillSources keys its sources.
	d, err = b.load(sizes(1024, 1024, 1<<20), maps.Policy{Default: maps.Limit{PPS: 10, Burst: 1}, IPv6Prefix: 128})
	if err != nil {
		return nil, err
	}
	tracked, err := fillSources(d, o.Sources)
	if err != nil {
		return nil, err
	}
	src := netip.MustParseAddr("198.18.4.4")
	fr := udp4(src)
	if _, err := d.Run(fr); err != nil { // spends the one-packet burst
		return nil, err
	}
	b.Cases = append(b.Cases, Case{Name: "ratelimited-" + sizeLabel(o.Sources), Note: fmt.Sprintf("%d sources tracked, over limit", tracked), Prog: d.Program(), Frame: fr, Want: xdpDrop})
	logf("%d sources tracked in %v", tracked, time.Since(t0).Round(time.Millisecond))

	ok = true
	return b, nil
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// MaxSpread is the stability check of a case's rounds: their
// interquartile range at most this fraction of their median, plus the 1 ns
// the kernel rounds each figure to.
const MaxSpread = 0.10

// quartiles is the first and third quartile of v (the medians of its lower
// and upper halves).
func quartiles(v []float64) (q1, q3 float64) {
	s := slices.Clone(v)
	slices.Sort(s)
	h := len(s) / 2
	if len(s) < 2 {
		return s[0], s[0]
	}
	return median(s[:h]), median(s[len(s)-h:])
}

// stable tells whether rounds pass the MaxSpread check.
func stable(rounds []float64) bool {
	q1, q3 := quartiles(rounds)
	return q3-q1 <= MaxSpread*median(rounds)+1
}

// measureRounds runs rounds rounds over the cases idx, in each one
// Program.Benchmark of every case in turn; ns per packet by case index.
func (b *Bench) measureRounds(idx []int, rounds, repeat int) (map[int][]float64, error) {
	per := map[int][]float64{}
	for r := 0; r < rounds; r++ {
		for _, i := range idx {
			c := b.Cases[i]
			if c.Warm > 0 {
				if _, _, err := c.Prog.Benchmark(c.Frame, c.Warm, nil); err != nil {
					return nil, fmt.Errorf("%s: warm-up: %w", c.Name, err)
				}
			}
			ret, dur, err := c.Prog.Benchmark(c.Frame, repeat*max(1, c.Runs), nil)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", c.Name, err)
			}
			if ret != c.Want {
				return nil, fmt.Errorf("%s: XDP verdict %d, want %d", c.Name, ret, c.Want)
			}
			per[i] = append(per[i], float64(dur.Nanoseconds()))
		}
	}
	return per, nil
}

// pinCPU keeps the calling goroutine on one CPU (the highest it may run
// on) until the returned function is called. BPF_PROG_TEST_RUN runs on the
// caller's CPU, and the datapath's list cache is per CPU: a measurement
// that ran on another CPU than the one before it, or than its warm-up,
// would start from that CPU's cold cache.
func pinCPU() (func(), error) {
	runtime.LockOSThread()
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("CPU affinity: %w", err)
	}
	cpu := -1
	for c := 0; c < len(old)*64; c++ {
		if old.IsSet(c) {
			cpu = c
		}
	}
	var one unix.CPUSet
	one.Set(cpu)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("pin to CPU %d: %w", cpu, err)
	}
	return func() {
		_ = unix.SchedSetaffinity(0, &old)
		runtime.UnlockOSThread()
	}, nil
}

// Measure runs rounds rounds; in each, the floors and every case, each
// repeat times in the kernel. A case whose rounds (or whose floor's) fail
// the MaxSpread check is measured again with its floor, at most retries
// times; the rejected attempts are kept, and a case that never passes is
// marked unstable. A case's ratio is of its median to its floor's median in the
// same attempt.
func (b *Bench) Measure(rounds, repeat, retries int) ([]Result, error) {
	unpin, err := pinCPU()
	if err != nil {
		return nil, err
	}
	defer unpin()
	floorOf := make([]int, len(b.Cases))
	byName := map[string]int{}
	for i, c := range b.Cases {
		byName[c.Name] = i
	}
	for i, c := range b.Cases {
		f := c.Floor
		if f == "" {
			f = b.Cases[0].Name
		}
		j, ok := byName[f]
		if !ok {
			return nil, fmt.Errorf("%s: no floor case %q", c.Name, f)
		}
		floorOf[i] = j
	}
	all := make([]int, len(b.Cases))
	for i := range all {
		all[i] = i
	}
	per, err := b.measureRounds(all, rounds, repeat)
	if err != nil {
		return nil, err
	}
	out := make([]Result, len(b.Cases))
	for i, c := range b.Cases {
		out[i] = Result{Name: c.Name, Note: c.Note, Floor: b.Cases[floorOf[i]].Name, Rounds: per[i], FloorRounds: per[floorOf[i]], Attempts: 1}
	}
	for try := 0; try < retries; try++ {
		// The unstable cases are measured again, each beside its floor;
		// a case keeps the floor rounds of its own attempt.
		unstable := map[int]bool{}
		run := map[int]bool{}
		for i := range b.Cases {
			if !stable(out[i].Rounds) || !stable(out[i].FloorRounds) {
				unstable[i], run[i], run[floorOf[i]] = true, true, true
			}
		}
		if len(unstable) == 0 {
			break
		}
		var idx []int
		for i := range b.Cases {
			if run[i] {
				idx = append(idx, i)
			}
		}
		per, err := b.measureRounds(idx, rounds, repeat)
		if err != nil {
			return nil, err
		}
		for i := range unstable {
			r := &out[i]
			r.Rejected = append(r.Rejected, r.Rounds)
			r.Rounds, r.FloorRounds = per[i], per[floorOf[i]]
			r.Attempts++
		}
	}
	for i := range out {
		r := &out[i]
		r.NsPerPkt = median(r.Rounds)
		r.FloorNs = median(r.FloorRounds)
		r.XFloor = r.NsPerPkt / r.FloorNs
		r.Min, r.Max = slices.Min(r.Rounds), slices.Max(r.Rounds)
		r.Q1, r.Q3 = quartiles(r.Rounds)
		r.Stable = stable(r.Rounds) && stable(r.FloorRounds)
	}
	return out, nil
}

// PrintTable writes the results as a table.
func PrintTable(w io.Writer, res []Result, rounds, repeat int) {
	fmt.Fprintf(w, "Program.Benchmark, repeat %d, median of %d rounds (floors and cases alternate); x floor is of the case's floor\n\n", repeat, rounds)
	fmt.Fprintf(w, "%-22s | %8s | %17s | %8s | %-13s | %s\n", "case", "ns/pkt", "min-max", "x floor", "floor", "")
	fmt.Fprintf(w, "%s\n", strings.Repeat("-", 100))
	for _, r := range res {
		flag := ""
		if !r.Stable {
			flag = fmt.Sprintf(" [UNSTABLE after %d attempts]", r.Attempts)
		}
		fmt.Fprintf(w, "%-22s | %8.1f | %8.1f-%-8.1f | %8.2f | %-13s | %s%s\n", r.Name, r.NsPerPkt, r.Min, r.Max, r.XFloor, r.Floor, r.Note, flag)
	}
	get := func(name string) float64 {
		for _, r := range res {
			if r.Name == name {
				return r.NsPerPkt
			}
		}
		return 0
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "targets: block hit <= 8x floor, block hit 1k -> 1M within 25%% (rotated cases, IPv4 and IPv6)\n")
	for _, k := range []string{"block-host", "block-prefix", "block6-host", "block6-prefix"} {
		lo, hi := get(k+"-1k"), get(k+"-1M")
		if lo > 0 && hi > 0 {
			fmt.Fprintf(w, "%s 1M vs 1k: %+.1f%%\n", k, 100*(hi-lo)/lo)
		}
	}
}
