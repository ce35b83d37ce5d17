// Package bench measures the datapath with BPF_PROG_TEST_RUN
// (Program.Benchmark): ns per packet for each case, beside a bare XDP_DROP
// floor program measured alternately with it in the same run.
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
	"sort"
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
}

// Result is a case's median over the rounds.
type Result struct {
	Name     string    `json:"case"`
	Note     string    `json:"note"`
	NsPerPkt float64   `json:"ns_per_packet"`
	XFloor   float64   `json:"x_floor"`
	Rounds   []float64 `json:"rounds_ns"`
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
	info, err := d.Program().Info()
	if err != nil {
		return 0, fmt.Errorf("program info: %w", err)
	}
	ids, _ := info.MapIDs()
	var m *ebpf.Map
	for _, id := range ids {
		mm, err := ebpf.NewMapFromID(id)
		if err != nil {
			return 0, fmt.Errorf("map %d: %w", id, err)
		}
		mi, err := mm.Info()
		if err == nil && mi.Name == maps.MapSources {
			m = mm
			break
		}
		mm.Close()
	}
	if m == nil {
		return 0, errors.New("sources map not found")
	}
	defer m.Close()
	if err := writeSources(m, n, 1); err != nil {
		return 0, err
	}
	return countSources(m)
}

// monotonicNow is CLOCK_MONOTONIC in ns, the datapath's clock.
func monotonicNow() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

// Setup loads every case. logf reports progress (may be nil).
func Setup(logf func(string, ...any)) (*Bench, error) {
	if logf == nil {
		logf = func(string, ...any) {}
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
	// both families.
	for _, n := range []int{1_000, 100_000, 1_000_000} {
		t0 := time.Now()
		d, err := b.load(sizes(1<<20, 1<<17, 1<<16), maps.Policy{Default: high})
		if err != nil {
			return nil, err
		}
		entries, h := feed(n, int64(n))
		if err := d.Maps.Block.Add(entries); err != nil {
			return nil, fmt.Errorf("block list of %d entries: %w", n, err)
		}
		label := map[int]string{1_000: "1k", 100_000: "100k", 1_000_000: "1M"}[n]
		udp6 := func(src netip.Addr) []byte {
			return netns.UDP6(macB, macA, src, dst6, 40000, 9000, netns.Payload(1, 18))
		}
		for _, c := range []struct {
			name, what string
			frame      []byte
		}{
			{"block-host-", "IPv4 /32 hit", udp4(h.host4)},
			{"block-prefix-", "IPv4 prefix hit", udp4(h.net4)},
			{"block6-host-", "IPv6 /128 hit", udp6(h.host6)},
			{"block6-prefix-", "IPv6 prefix hit", udp6(h.net6)},
		} {
			b.Cases = append(b.Cases, Case{Name: c.name + label, Note: fmt.Sprintf("%d entries (v4+v6), %s", n, c.what),
				Prog: d.Program(), Frame: c.frame, Want: xdpDrop})
		}
		logf("block list of %d entries loaded in %v", n, time.Since(t0).Round(time.Millisecond))
	}

	// A source over its limit among 1M tracked sources.
	t0 := time.Now()
	// IPv6 tracked at /128, as fillSources keys its sources.
	d, err = b.load(sizes(1024, 1024, 1<<20), maps.Policy{Default: maps.Limit{PPS: 10, Burst: 1}, IPv6Prefix: 128})
	if err != nil {
		return nil, err
	}
	tracked, err := fillSources(d, 1_000_000)
	if err != nil {
		return nil, err
	}
	src := netip.MustParseAddr("198.18.4.4")
	fr := udp4(src)
	if _, err := d.Run(fr); err != nil { // spends the one-packet burst
		return nil, err
	}
	b.Cases = append(b.Cases, Case{Name: "ratelimited-1M", Note: fmt.Sprintf("%d sources tracked, over limit", tracked), Prog: d.Program(), Frame: fr, Want: xdpDrop})
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

// Measure runs rounds rounds; in each, the floor and then every case, each
// repeat times in the kernel. Ratios are of medians.
func (b *Bench) Measure(rounds, repeat int) ([]Result, error) {
	per := make([][]float64, len(b.Cases))
	for r := 0; r < rounds; r++ {
		for i, c := range b.Cases {
			ret, dur, err := c.Prog.Benchmark(c.Frame, repeat, nil)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", c.Name, err)
			}
			if ret != c.Want {
				return nil, fmt.Errorf("%s: XDP verdict %d, want %d", c.Name, ret, c.Want)
			}
			per[i] = append(per[i], float64(dur.Nanoseconds()))
		}
	}
	floor := median(per[0])
	out := make([]Result, len(b.Cases))
	for i, c := range b.Cases {
		m := median(per[i])
		out[i] = Result{Name: c.Name, Note: c.Note, NsPerPkt: m, XFloor: m / floor, Rounds: per[i]}
	}
	return out, nil
}

// PrintTable writes the results as a table.
func PrintTable(w io.Writer, res []Result, rounds, repeat int) {
	fmt.Fprintf(w, "Program.Benchmark, repeat %d, median of %d rounds (floor and cases alternate)\n\n", repeat, rounds)
	fmt.Fprintf(w, "%-20s | %8s | %8s | %s\n", "case", "ns/pkt", "x floor", "")
	fmt.Fprintf(w, "%-20s-|-%8s-|-%8s-|-%s\n", "--------------------", "--------", "--------", "------------------------------")
	for _, r := range res {
		fmt.Fprintf(w, "%-20s | %8.1f | %8.2f | %s\n", r.Name, r.NsPerPkt, r.XFloor, r.Note)
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
	fmt.Fprintf(w, "targets: block hit <= 8x floor, pass <= 15x floor, block hit 1k -> 1M within 25%% (IPv4 and IPv6)\n")
	for _, k := range []string{"block-host", "block-prefix", "block6-host", "block6-prefix"} {
		lo, hi := get(k+"-1k"), get(k+"-1M")
		if lo > 0 {
			fmt.Fprintf(w, "%s 1M vs 1k: %+.1f%%\n", k, 100*(hi-lo)/lo)
		}
	}
}
