// Package bench measures the datapath with BPF_PROG_TEST_RUN
// (Program.Benchmark): ns per packet for each case, beside a bare XDP_DROP
// floor program measured alternately with it in the same run.
//
// Run it with `go run ./test/bench/cmd` (prints a table) or
// `go test -run '^$' -bench . -benchtime 1x ./test/bench/` (as root).
package bench

import (
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/netip"
	"sort"
	"time"

	"github.com/cilium/ebpf"

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

// feed makes n IPv4 block entries like a real feed: 90 % single hosts, 10 %
// prefixes /16-/31, random but seeded. It returns the entries, one host
// entry and one address covered only by a prefix.
func feed(n int, seed int64) ([]maps.Entry, netip.Addr, netip.Addr) {
	rng := rand.New(rand.NewSource(seed))
	hosts := map[netip.Addr]bool{}
	var out []maps.Entry
	var nets []netip.Prefix
	for len(out) < n {
		var a [4]byte
		rng.Read(a[:])
		addr := netip.AddrFrom4(a)
		if len(out)%10 == 9 {
			p := netip.PrefixFrom(addr, 16+rng.Intn(16)).Masked()
			nets = append(nets, p)
			out = append(out, maps.Entry{Prefix: p, ListID: 1})
			continue
		}
		if hosts[addr] {
			continue
		}
		hosts[addr] = true
		out = append(out, maps.Entry{Prefix: netip.PrefixFrom(addr, 32), ListID: 1})
	}
	host := out[len(out)/2].Prefix.Addr()
	// An address inside a prefix that is no host entry.
	for _, p := range nets {
		a := p.Addr().Next()
		if p.Contains(a) && !hosts[a] {
			return out, host, a
		}
	}
	panic("no prefix-covered address")
}

// fillSources puts n distinct IPv4 sources into the datapath's sources map
// (found through the program's map ids) with batch updates.
func fillSources(d *loader.Datapath, n int) (int, error) {
	info, err := d.Program().Info()
	if err != nil {
		return 0, err
	}
	ids, _ := info.MapIDs()
	var m *ebpf.Map
	for _, id := range ids {
		mm, err := ebpf.NewMapFromID(id)
		if err != nil {
			return 0, err
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
	const batch = 65536
	keys := make([]bpf.BulwarkSrcKey, 0, batch)
	vals := make([]bpf.BulwarkSrcState, batch)
	now := uint64(time.Now().UnixNano())
	for i := range vals {
		vals[i] = bpf.BulwarkSrcState{FirstSeenNs: now, LastSeenNs: now, Packets: 1, Bytes: 64}
	}
	for i := 0; i < n; i += batch {
		keys = keys[:0]
		for j := i; j < min(i+batch, n); j++ {
			a := netip.AddrFrom4([4]byte{10, byte(j >> 16), byte(j >> 8), byte(j)})
			keys = append(keys, bpf.BulwarkSrcKey{Addr: maps.SourceKey(a, 64)})
		}
		if _, err := m.BatchUpdate(keys, vals[:len(keys)], nil); err != nil {
			return 0, fmt.Errorf("fill sources: %w", err)
		}
	}
	count := 0
	var k bpf.BulwarkSrcKey
	var v bpf.BulwarkSrcState
	it := m.Iterate()
	for it.Next(&k, &v) {
		count++
	}
	return count, it.Err()
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
	b.Cases = append(b.Cases, Case{Name: "pass", Note: "all lookups miss, bucket+observe", Prog: d.Program(), Frame: udp4(netip.MustParseAddr("198.18.3.3")), Want: xdpPass})
	b.Cases = append(b.Cases, Case{Name: "ipv6-3ext", Note: "hop-by-hop, routing, dest opts; pass",
		Prog: d.Program(), Want: xdpPass,
		Frame: netns.UDP6(macB, macA, netip.MustParseAddr("2001:2:0:3::3"), dst6, 40000, 9000, netns.Payload(1, 18),
			netns.ExtHopByHop, netns.ExtRouting, netns.ExtDestOpts)})

	// Block-list hits, the same map sizes for every fill.
	for _, n := range []int{1_000, 100_000, 1_000_000} {
		t0 := time.Now()
		d, err := b.load(sizes(1<<20, 1<<17, 1<<16), maps.Policy{Default: high})
		if err != nil {
			return nil, err
		}
		entries, host, covered := feed(n, int64(n))
		if err := d.Maps.Block.Add(entries); err != nil {
			return nil, err
		}
		label := map[int]string{1_000: "1k", 100_000: "100k", 1_000_000: "1M"}[n]
		b.Cases = append(b.Cases,
			Case{Name: "block-host-" + label, Note: fmt.Sprintf("%d entries, /32 hit", n), Prog: d.Program(), Frame: udp4(host), Want: xdpDrop},
			Case{Name: "block-prefix-" + label, Note: fmt.Sprintf("%d entries, prefix hit", n), Prog: d.Program(), Frame: udp4(covered), Want: xdpDrop})
		logf("block list of %d entries loaded in %v", n, time.Since(t0).Round(time.Millisecond))
	}

	// A source over its limit among 1M tracked sources.
	t0 := time.Now()
	d, err = b.load(sizes(1024, 1024, 1<<20), maps.Policy{Default: maps.Limit{PPS: 10, Burst: 1}})
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
	fmt.Fprintf(w, "targets: block hit <= 8x floor, pass <= 15x floor, block hit 1k -> 1M within 25%%\n")
	for _, k := range []string{"host", "prefix"} {
		lo, hi := get("block-"+k+"-1k"), get("block-"+k+"-1M")
		if lo > 0 {
			fmt.Fprintf(w, "block-%s 1M vs 1k: %+.1f%%\n", k, 100*(hi-lo)/lo)
		}
	}
}
