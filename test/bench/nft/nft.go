// Package nft measures Bulwark's XDP datapath side by side with nftables,
// the tool operators use today, on the same namespace testbed, with the same
// traffic and the same policy (issue 6, item 2).
//
// Testbed: a client and a server namespace joined by a veth pair
// (test/netns). Every address is in 198.18.0.0/15.
//
// Traffic: an in-kernel generator. A tiny XDP program is run with
// BPF_PROG_TEST_RUN and BPF_F_TEST_XDP_LIVE_FRAMES from a thread locked into
// the client namespace and pinned to CPU 0, with ingress_ifindex set to the
// client veth, BatchSize 64; it returns XDP_TX, so every frame really leaves
// through the client veth into the server veth's ring. Live frames repeat
// one frame, so the generator rewrites the source address of every packet
// itself: bpf_get_prandom_u32() masked to one of 8192 sources
// 198.18.a.b with b%8 == 0 (no two adjacent, so nft cannot merge them into
// one interval). It writes the complement of the same 16 bits into the IPv4
// ID field, which keeps the IPv4 header checksum valid without recomputing
// it (x + ^x is 0xffff in ones' complement); the UDP checksum is 0 (none).
// Frames are 60 bytes (Ethernet/IPv4/UDP, 18 bytes of payload). Every run is
// bounded in packets and in seconds.
//
// Receivers, on the server veth:
//   - xdp-drop: a bare XDP_DROP program attached natively (the XDP floor);
//   - bulwark: the real datapath attached natively, with a block list of
//     N entries (90 % /32 hosts, 10 % prefixes /20-/31; the 8192 generated
//     sources are among the hosts), or with a default per-source limit;
//   - nft-drop: a netdev ingress chain dropping everything (the nft floor);
//   - nft: a netdev ingress chain with one interval set of the same N
//     entries (`ip saddr @block4 counter drop`), or a dynamic set keyed by
//     saddr with `limit rate over 100/second` (the per-source limit);
//   - nft-split: nft's best configuration, as an operator writes it for
//     speed: a hash set (no interval flag) of the hosts, matched first,
//     and an interval set of the prefixes (Ruleset, Layout).
//
// Each receiver of a size is set up once on its own testbed and checked
// on a sample of listed hosts, addresses in listed prefixes and unlisted
// addresses (CheckSample) before it is measured; then all are measured in
// interleaved rounds, the floors included, so drift spreads over all of
// them; a round whose generator did not hold its speed is re-run, bounded
// (Suite). Medians, spread and ratios: Summarize, Headlines.
//
// The server veth runs NAPI: with an XDP program attached it does anyway;
// for the nft receivers GRO is switched on with ethtool, without which the
// frames are dropped at transmit and nothing arrives.
//
// Measures, for each receiver:
//   - dropped pps: the receiver's own drop counter delta (Bulwark: the stats
//     map; nft: a named counter on the drop rules, read with one netlink
//     request, as the nft command reads every set first) over the wall
//     time of the run;
//   - receiver ns/packet: the generator and the receiver share CPU 0: the
//     server veth's NAPI poll runs as a softirq on the CPU that transmitted,
//     inline in the generator's thread when it re-enables bottom halves
//     after each batch of 64. So the generator thread's CPU time
//     (CLOCK_THREAD_CPUTIME_ID: precise, excludes steal and time other
//     tasks took on CPU 0), plus ksoftirqd/0's runtime for softirq work
//     deferred to it, is generator + receiver. Divided by the packets the
//     receiver saw, minus the generator's own cost per packet (the same
//     generator returning XDP_DROP, nothing sent, measured right before
//     and after each run), it is the receiver's CPU time per packet. It
//     includes the veth transmit and ring handling, the same for every
//     receiver. As a cross-check, CPU 0's softirq time from /proc/stat
//     (tick-sampled: this kernel has no IRQ_TIME_ACCOUNTING; other tasks'
//     softirqs on CPU 0 count too) per packet is reported.
//   - ratios, of medians: nft's (either layout) receiver ns/packet over
//     Bulwark's at the same entries, i.e. Bulwark's packets dropped per CPU
//     second over nft's; Bulwark's over the bare XDP_DROP's ("x of the XDP
//     floor"); nft drop-all's over XDP_DROP's (the floor ratio: what any
//     XDP program gains over nft from where its hook runs alone).
//
// Load time of N entries: Bulwark's maps.List.Add (batched map updates;
// creating the maps with the loader is reported apart) against `nft -f` of
// a file holding the table, the chain and the sets with their elements.
package nft

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/bulwark-filter/bulwark/loader"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/netns"
)

// Sources is how many distinct sources the generator cycles through.
const Sources = 8192

// GenCPU is the CPU the generator (and with it the receiver) runs on.
const GenCPU = 0

// SourceAddrs are the generated sources: 198.18.a.b with b%8 == 0.
func SourceAddrs() []netip.Addr {
	out := make([]netip.Addr, 0, Sources)
	for a := 0; a < 256; a++ {
		for b := 0; b < 256; b += 8 {
			out = append(out, netip.AddrFrom4([4]byte{198, 18, byte(a), byte(b)}))
		}
	}
	return out
}

// genProgram is the generator: it rewrites the source's low 16 bits (and
// the IPv4 ID with their complement) and returns XDP_TX, or XDP_DROP for
// the generator-only measurement.
func genProgram(verdict int32, mask int32) (*ebpf.Program, error) {
	insns := asm.Instructions{
		asm.FnGetPrandomU32.Call(),
		asm.Mov.Reg(asm.R7, asm.R0),
		// Little-endian u16 store: the mask keeps the second byte's low
		// 3 bits clear, so the last octet is a multiple of 8.
		asm.And.Imm(asm.R7, mask),
		asm.LoadMem(asm.R2, asm.R6, 0, asm.Word), // data
		asm.LoadMem(asm.R3, asm.R6, 4, asm.Word), // data_end
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, 34),
		asm.JGT.Reg(asm.R4, asm.R3, "out"),
		asm.StoreMem(asm.R2, 28, asm.R7, asm.Half), // saddr low 16 bits
		asm.Xor.Imm(asm.R7, 0xffff),
		asm.StoreMem(asm.R2, 18, asm.R7, asm.Half), // IPv4 ID
		asm.Mov.Imm(asm.R0, verdict).WithSymbol("out"),
		asm.Return(),
	}
	insns = append(asm.Instructions{asm.Mov.Reg(asm.R6, asm.R1)}, insns...)
	return ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "bwk_gen", Type: ebpf.XDP, License: "GPL", Instructions: insns,
	})
}

func dropProgram() (*ebpf.Program, error) {
	return ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "bwk_xdp_drop", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()},
	})
}

// Frame is the generator's template: 60 bytes, source 198.18.0.0, ID
// 0xffff, valid IPv4 checksum, no UDP checksum.
func Frame(tb *netns.Testbed) []byte {
	f := netns.UDP4(tb.ServerMAC, tb.ClientMAC, netip.MustParseAddr("198.18.0.0"), netns.ServerAddr4,
		40000, 9000, netns.Payload(1, 18))
	f[18], f[19] = 0xff, 0xff // ID
	f[24], f[25] = 0, 0       // header checksum
	var sum uint32
	for i := 14; i < 34; i += 2 {
		sum += uint32(f[i])<<8 | uint32(f[i+1])
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	c := ^uint16(sum)
	f[24], f[25] = byte(c>>8), byte(c)
	f[40], f[41] = 0, 0 // UDP checksum: none
	return f
}

// Entries makes n IPv4 block entries, seeded: 10 % prefixes /20-/31 laid out
// without overlap in 32.0.0.0/3, the rest /32 hosts: the generated sources
// first (all of them from n = 9103 up), then random hosts in 64.0.0.0/2. No
// entry overlaps another, so the
// nft interval set takes them as they are.
func Entries(n int, seed int64) []maps.Entry {
	rng := rand.New(rand.NewSource(seed))
	nPrefixes := n / 10
	out := make([]maps.Entry, 0, n)
	cursor := uint32(32) << 24
	for i := 0; i < nPrefixes; i++ {
		bits := 20 + rng.Intn(12)
		size := uint32(1) << (32 - bits)
		cursor = (cursor + size - 1) &^ (size - 1)
		var a [4]byte
		a[0], a[1], a[2], a[3] = byte(cursor>>24), byte(cursor>>16), byte(cursor>>8), byte(cursor)
		out = append(out, maps.Entry{Prefix: netip.PrefixFrom(netip.AddrFrom4(a), bits), ListID: 1})
		cursor += size + uint32(rng.Intn(1<<12))
	}
	for _, s := range SourceAddrs() {
		if len(out) == n {
			break
		}
		out = append(out, maps.Entry{Prefix: netip.PrefixFrom(s, 32), ListID: 1})
	}
	seen := map[uint32]bool{}
	for len(out) < n {
		v := 64<<24 | rng.Uint32()&(1<<30-1)
		if seen[v] {
			continue
		}
		seen[v] = true
		a := [4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
		out = append(out, maps.Entry{Prefix: netip.PrefixFrom(netip.AddrFrom4(a), 32), ListID: 1})
	}
	return out
}

// cpuStat is CPU 0's line of /proc/stat in nanoseconds.
type cpuStat struct{ busy, softirq, steal int64 }

func readCPU(cpu int) (cpuStat, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return cpuStat{}, err
	}
	defer f.Close()
	want := "cpu" + strconv.Itoa(cpu)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 9 || fs[0] != want {
			continue
		}
		var v [8]int64
		for i := range v {
			v[i], _ = strconv.ParseInt(fs[i+1], 10, 64)
		}
		// user nice system idle iowait irq softirq steal, in USER_HZ
		tick := int64(time.Second) / 100
		return cpuStat{
			busy:    (v[0] + v[1] + v[2] + v[5] + v[6]) * tick,
			softirq: v[6] * tick,
			steal:   v[7] * tick,
		}, nil
	}
	return cpuStat{}, fmt.Errorf("/proc/stat: no %s", want)
}

// xdpMd is the context of a live-frames run: only ingress_ifindex is set.
type xdpMd struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// RunStats is one bounded generator run.
type RunStats struct {
	Sent      uint64
	Wall      time.Duration
	CPUBusy   time.Duration // CPU 0, steal excluded
	CPUSoftir time.Duration
	Steal     time.Duration
	// Thread is the generator thread's CPU time (CLOCK_THREAD_CPUTIME_ID,
	// precise, steal excluded): it includes the softirqs run inline in it,
	// where the server veth's NAPI poll runs. Ksoftirqd is ksoftirqd/0's
	// runtime over the run, for softirq work deferred to it.
	Thread, Ksoftirqd time.Duration
}

// ksoftirqdNs is the runtime of ksoftirqd/cpu in ns (/proc/PID/schedstat),
// 0 if not found.
func ksoftirqdNs(cpu int) int64 {
	want := fmt.Sprintf("ksoftirqd/%d", cpu)
	ds, _ := os.ReadDir("/proc")
	for _, d := range ds {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		c, err := os.ReadFile("/proc/" + d.Name() + "/comm")
		if err != nil || strings.TrimSpace(string(c)) != want {
			continue
		}
		s, err := os.ReadFile("/proc/" + d.Name() + "/schedstat")
		if err != nil {
			return 0
		}
		f := strings.Fields(string(s))
		if len(f) == 0 {
			return 0
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		return n
	}
	return 0
}

// Generator sends frames from the client veth.
type Generator struct {
	tb       *netns.Testbed
	tx, drop *ebpf.Program
	frame    []byte
}

// Source masks for NewGenerator: the little-endian u16 of the last two
// octets is prandom & mask.
const (
	// MaskAll: 8192 sources 198.18.a.b, b%8 == 0.
	MaskAll = 0xf8ff
	// MaskFew: 256 sources 198.18.a.b, a < 8, b%8 == 0, for the limit test:
	// at 100 pps each they may pass 25.6 kpps in all, so the limit bites
	// at the generator's rate (8192 sources would pass 819 kpps).
	MaskFew = 0xf807
)

// NewGenerator loads the generator programs for a testbed, with a source
// mask (MaskAll or MaskFew).
func NewGenerator(tb *netns.Testbed, mask int32) (*Generator, error) {
	tx, err := genProgram(3, mask) // XDP_TX
	if err != nil {
		return nil, fmt.Errorf("generator program: %w", err)
	}
	drop, err := genProgram(1, mask) // XDP_DROP
	if err != nil {
		tx.Close()
		return nil, fmt.Errorf("generator program: %w", err)
	}
	return &Generator{tb: tb, tx: tx, drop: drop, frame: Frame(tb)}, nil
}

// Close releases the programs.
func (g *Generator) Close() { g.tx.Close(); g.drop.Close() }

// Run sends (send) or only generates (!send) frames in chunks until maxPkts
// frames or maxDur, on CPU 0 in the client namespace.
func (g *Generator) Run(send bool, maxPkts uint64, maxDur time.Duration) (RunStats, error) {
	prog := g.drop
	if send {
		prog = g.tx
	}
	var rs RunStats
	err := g.tb.InClient(func() error {
		var old unix.CPUSet
		if err := unix.SchedGetaffinity(0, &old); err != nil {
			return err
		}
		var one unix.CPUSet
		one.Set(GenCPU)
		if err := unix.SchedSetaffinity(0, &one); err != nil {
			return fmt.Errorf("pin to CPU %d: %w", GenCPU, err)
		}
		defer unix.SchedSetaffinity(0, &old)
		runtime.Gosched()
		const chunk = 250_000
		opts := &ebpf.RunOptions{
			Data: g.frame, Repeat: chunk, Flags: unix.BPF_F_TEST_XDP_LIVE_FRAMES,
			// data_end must equal the frame length; data and data_meta 0.
			Context:   xdpMd{DataEnd: uint32(len(g.frame)), IngressIfindex: uint32(g.tb.ClientIndex)},
			BatchSize: 64,
		}
		c0, err := readCPU(GenCPU)
		if err != nil {
			return err
		}
		k0 := ksoftirqdNs(GenCPU)
		var t0, t1 unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &t0); err != nil {
			return err
		}
		start := time.Now()
		for rs.Sent < maxPkts && time.Since(start) < maxDur {
			n := min(uint64(chunk), maxPkts-rs.Sent)
			opts.Repeat = uint32(n)
			if _, err := prog.Run(opts); err != nil {
				return fmt.Errorf("live-frames test run: %w", err)
			}
			rs.Sent += n
		}
		rs.Wall = time.Since(start)
		if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &t1); err != nil {
			return err
		}
		rs.Thread = time.Duration(t1.Nano() - t0.Nano())
		rs.Ksoftirqd = time.Duration(ksoftirqdNs(GenCPU) - k0)
		c1, err := readCPU(GenCPU)
		if err != nil {
			return err
		}
		rs.CPUBusy = time.Duration(c1.busy - c0.busy)
		rs.CPUSoftir = time.Duration(c1.softirq - c0.softirq)
		rs.Steal = time.Duration(c1.steal - c0.steal)
		return nil
	})
	return rs, err
}

// Counts are a receiver's counters.
type Counts struct{ Dropped, Seen uint64 }

// Receiver is one configuration of the server veth.
type Receiver struct {
	Name    string // xdp-drop, bulwark, nft-drop, nft
	Test    string // floor, block, limit
	Entries int
	Load    time.Duration // entries only
	Setup   time.Duration // e.g. creating the maps
	read    func() (Counts, error)
	close   func()
	// drops tells whether frames from addresses are dropped, without
	// sending them (block lists only).
	drops func([]netip.Addr) ([]bool, error)
}

// Close detaches and releases the receiver.
func (r *Receiver) Close() {
	if r.close != nil {
		r.close()
	}
}

// Read returns the receiver's counters.
func (r *Receiver) Read() (Counts, error) { return r.read() }

// XDPDrop attaches a bare XDP_DROP program natively on the server veth.
func XDPDrop(tb *netns.Testbed) (*Receiver, error) {
	p, err := dropProgram()
	if err != nil {
		return nil, err
	}
	var l link.Link
	err = tb.InServer(func() error {
		var err error
		l, err = link.AttachXDP(link.XDPOptions{Program: p, Interface: tb.ServerIndex, Flags: link.XDPDriverMode})
		return err
	})
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("attach XDP_DROP natively: %w", err)
	}
	// The bare program counts nothing: the server veth's XDP drops do.
	read := func() (Counts, error) {
		d, err := vethXDPDrops(tb)
		return Counts{Dropped: d, Seen: d}, err
	}
	return &Receiver{Name: "xdp-drop", Test: "floor", read: read, close: func() { l.Close(); p.Close() }}, nil
}

// vethXDPDrops reads the server veth's XDP drop counter (ethtool -S).
func vethXDPDrops(tb *netns.Testbed) (uint64, error) {
	out, err := exec.Command("ip", "netns", "exec", tb.Server, "ethtool", "-S", tb.ServerIf).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("ethtool -S: %v: %s", err, out)
	}
	var sum uint64
	for _, line := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && strings.HasSuffix(k, "xdp_drops") && strings.HasPrefix(k, "rx_queue_") {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			sum += n
		}
	}
	return sum, nil
}

// BulwarkSizes are the datapath's map sizes here: room for 1M hosts.
func BulwarkSizes() loader.Sizes {
	return loader.Sizes{
		Sources: 1 << 16, RuleBuckets: 1 << 14, Verdicts: 1024,
		AllowHosts: 1024, AllowPrefixes: 1024, BlockHosts: 1 << 20, BlockPrefixes: 1 << 17,
		Classes: 256, Lists: 64, Aggregates: 1024, EventsBytes: 1 << 16,
	}
}

// Bulwark loads the datapath with a block list (pps == 0) or a default
// per-source limit of pps (burst 5, like nft's default) and attaches it
// natively on the server veth.
func Bulwark(tb *netns.Testbed, block []maps.Entry, pps uint64) (*Receiver, error) {
	p, test := maps.Policy{}, "block"
	if pps > 0 {
		test = "limit"
		p.Default = maps.Limit{PPS: pps, Burst: 5}
	}
	return attachBulwark(tb, BulwarkSizes(), p, test, len(block), func(m *maps.Set) error {
		if len(block) == 0 {
			return nil
		}
		if err := m.Block.Add(block); err != nil {
			return fmt.Errorf("block list: %w", err)
		}
		return nil
	})
}

// attachBulwark loads the datapath with sizes and policy p, fills its
// maps with fill (timed: the receiver's Load when it holds entries) and
// attaches it natively on the server veth.
func attachBulwark(tb *netns.Testbed, sizes loader.Sizes, p maps.Policy, test string, entries int, fill func(*maps.Set) error) (*Receiver, error) {
	t0 := time.Now()
	d, err := loader.Load(loader.Options{Sizes: sizes})
	if err != nil {
		return nil, err
	}
	r := &Receiver{Name: "bulwark", Test: test, Entries: entries, Setup: time.Since(t0), close: func() { d.Close() }}
	fail := func(err error) (*Receiver, error) { d.Close(); return nil, err }
	if err := d.Maps.ApplyPolicy(&p); err != nil {
		return fail(err)
	}
	t1 := time.Now()
	if err := fill(d.Maps); err != nil {
		return fail(err)
	}
	if entries > 0 {
		r.Load = time.Since(t1)
	}
	err = tb.InServer(func() error {
		_, err := d.Attach(tb.ServerIf, loader.AttachNative)
		return err
	})
	if err != nil {
		return fail(err)
	}
	r.drops = func(as []netip.Addr) ([]bool, error) {
		got := make([]bool, len(as))
		for i, a := range as {
			f := netns.UDP4(tb.ServerMAC, tb.ClientMAC, a, netns.ServerAddr4, 40000, 9000, netns.Payload(1, 18))
			if !a.Is4() {
				f = netns.UDP6(tb.ServerMAC, tb.ClientMAC, a, netns.ServerAddr6, 40000, 9000, netns.Payload(1, 18))
			}
			v, err := d.Run(f)
			if err != nil {
				return nil, err
			}
			got[i] = v == 1 // XDP_DROP
		}
		return got, nil
	}
	r.read = func() (Counts, error) {
		st, err := d.Maps.Stats()
		if err != nil {
			return Counts{}, err
		}
		var c Counts
		for _, x := range st[maps.ActionDrop] {
			c.Dropped += x.Packets
		}
		c.Seen = st.Total().Packets
		return c, nil
	}
	return r, nil
}

// nft runs nft in the server namespace.
func nft(tb *netns.Testbed, args ...string) ([]byte, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", tb.Server, "nft"}, args...)...).CombinedOutput()
	if err != nil {
		s := string(out)
		if len(s) > 2000 {
			s = s[:2000] + "..."
		}
		return out, fmt.Errorf("nft %s: %v: %s", strings.Join(args, " "), err, s)
	}
	return out, nil
}

const nftTable = "bwkbench"

// NFT installs a netdev ingress chain on the server veth (Ruleset): drop
// everything (block empty, pps == 0), a block list in a layout, or a
// per-source limit of pps.
func NFT(tb *netns.Testbed, dir string, block []maps.Entry, l Layout, pps uint64) (*Receiver, error) {
	// The netdev hook runs only where the veth runs NAPI for XDP frames:
	// GRO on (no XDP program here).
	if out, err := exec.Command("ip", "netns", "exec", tb.Server, "ethtool", "-K", tb.ServerIf, "gro", "on").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ethtool -K gro on: %v: %s", err, out)
	}
	r := &Receiver{Name: l.String(), Test: "block", Entries: len(block)}
	switch {
	case pps > 0:
		r.Name, r.Test = "nft", "limit"
	case len(block) > 0:
		sets := blockSets(block, l)
		r.drops = func(as []netip.Addr) ([]bool, error) { return nftDrops(tb, sets, as) }
	default:
		r.Name, r.Test = "nft-drop", "floor"
	}
	b := Ruleset(tb.ServerIf, block, l, pps)
	file := filepath.Join(dir, "bwkbench-"+tb.ServerIf+".nft")
	if err := os.WriteFile(file, []byte(b), 0o600); err != nil {
		return nil, err
	}
	defer os.Remove(file)
	t0 := time.Now()
	if _, err := nft(tb, "-f", file); err != nil {
		return nil, err
	}
	if len(block) > 0 {
		r.Load = time.Since(t0)
	} else {
		r.Setup = time.Since(t0)
	}
	r.read = func() (Counts, error) {
		d, err := nftCounter(tb, "cdrop")
		if err != nil {
			return Counts{}, err
		}
		p, err := nftCounter(tb, "cpass")
		return Counts{Dropped: d, Seen: d + p}, err
	}
	r.close = func() { _, _ = nft(tb, "delete", "table", "netdev", nftTable) }
	return r, nil
}

// Result is one receiver measured.
type Result struct {
	Receiver string `json:"receiver"`
	Test     string `json:"test"`
	Entries  int    `json:"entries"`
	// Group is the block list size of the rounds (floors are measured in
	// each size's rounds), 0 for the limit test; Rep the round, from 1;
	// Attempt 1 + the re-runs of this round before it; Accepted whether
	// the summary counts it (stable, or the last attempt allowed).
	Group    int  `json:"group"`
	Rep      int  `json:"rep"`
	Attempt  int  `json:"attempt"`
	Accepted bool `json:"accepted"`

	Sent    uint64  `json:"sent"`
	Seen    uint64  `json:"seen"`
	Dropped uint64  `json:"dropped"`
	WallS   float64 `json:"wall_s"`
	// CountedS is the time from the send's start to the counters' read:
	// every frame counted in Seen reached the receiver within it.
	CountedS float64 `json:"counted_s"`

	DroppedMpps float64 `json:"dropped_mpps"`
	// CPU ns per packet seen (generator + receiver): the generator thread's
	// CPU time, which includes the softirqs run inline in it, plus
	// ksoftirqd/0's.
	TotalNsPerPkt float64 `json:"total_ns_per_pkt"`
	// Generator alone (XDP_DROP, nothing sent), before and after.
	GenNsBefore float64 `json:"gen_ns_before"`
	GenNsAfter  float64 `json:"gen_ns_after"`
	// Receiver's CPU ns per packet: total minus generator.
	RecvNsPerPkt float64 `json:"recv_ns_per_pkt"`
	// Cross-check: tick-sampled softirq time of CPU 0 per packet.
	SoftirqNsPerPkt float64 `json:"softirq_ns_per_pkt"`
	// Receiver packets per CPU second (1e3 / RecvNsPerPkt), millions.
	MppsPerCPU float64 `json:"mpps_per_cpu"`
	StealS     float64 `json:"steal_s"`
	// KsoftirqdS: softirq work deferred to ksoftirqd/0 (counted in the
	// CPU time). CPUShare: CPU time over wall time (below 1: CPU 0 was
	// shared with other tasks, which lowers dropped Mpps, not ns/packet).
	KsoftirqdS float64 `json:"ksoftirqd_s"`
	CPUShare   float64 `json:"cpu_share"`
	// GenHeld: the generator's own speed before and after within 10 %.
	GenHeld bool    `json:"gen_held"`
	LoadS   float64 `json:"load_s,omitempty"`
	SetupS  float64 `json:"setup_s,omitempty"`
	Note    string  `json:"note,omitempty"`
}

// Bounds of one measurement.
type Bounds struct {
	MaxPkts    uint64
	MaxDur     time.Duration
	GenPkts    uint64 // generator-only check
	GenMaxDur  time.Duration
	SettleTime time.Duration // pause before measuring
}

// DefaultBounds: one measurement takes about 3 s (1.5 s measured, the
// generator alone before and after, the settle pause), so 5 rounds of the
// 5 receivers at 3 sizes and 2 for the limit near 4.5 minutes, with the
// loads about 6 on a quiet 2-core machine.
func DefaultBounds() Bounds {
	return Bounds{MaxPkts: 40_000_000, MaxDur: 1500 * time.Millisecond, GenPkts: 20_000_000, GenMaxDur: 600 * time.Millisecond, SettleTime: 300 * time.Millisecond}
}

func genNs(rs RunStats) float64 {
	if rs.Sent == 0 {
		return 0
	}
	return float64((rs.Thread + rs.Ksoftirqd).Nanoseconds()) / float64(rs.Sent)
}

// Measure runs the generator against a receiver: generator-only, the run,
// generator-only again.
func Measure(g *Generator, r *Receiver, b Bounds) (Result, error) {
	res := Result{Receiver: r.Name, Test: r.Test, Entries: r.Entries, LoadS: r.Load.Seconds(), SetupS: r.Setup.Seconds()}
	time.Sleep(b.SettleTime)
	before, err := g.Run(false, b.GenPkts, b.GenMaxDur)
	if err != nil {
		return res, err
	}
	c0, err := r.Read()
	if err != nil {
		return res, err
	}
	sendStart := time.Now()
	rs, err := g.Run(true, b.MaxPkts, b.MaxDur)
	if err != nil {
		return res, err
	}
	c1, err := r.Read()
	if err != nil {
		return res, err
	}
	res.CountedS = time.Since(sendStart).Seconds()
	after, err := g.Run(false, b.GenPkts, b.GenMaxDur)
	if err != nil {
		return res, err
	}
	res.Sent, res.WallS = rs.Sent, rs.Wall.Seconds()
	res.Seen, res.Dropped = c1.Seen-c0.Seen, c1.Dropped-c0.Dropped
	res.StealS = rs.Steal.Seconds()
	res.GenNsBefore, res.GenNsAfter = genNs(before), genNs(after)
	if res.Seen == 0 {
		return res, errors.New("the receiver saw no packets (NAPI off on the server veth?)")
	}
	res.DroppedMpps = float64(res.Dropped) / rs.Wall.Seconds() / 1e6
	res.TotalNsPerPkt = float64((rs.Thread + rs.Ksoftirqd).Nanoseconds()) / float64(res.Seen)
	res.KsoftirqdS = rs.Ksoftirqd.Seconds()
	res.CPUShare = (rs.Thread + rs.Ksoftirqd).Seconds() / rs.Wall.Seconds()
	gen := (res.GenNsBefore + res.GenNsAfter) / 2
	res.RecvNsPerPkt = res.TotalNsPerPkt - gen
	res.SoftirqNsPerPkt = float64(rs.CPUSoftir.Nanoseconds()) / float64(res.Seen)
	if res.RecvNsPerPkt > 0 {
		res.MppsPerCPU = 1e3 / res.RecvNsPerPkt
	}
	lo, hi := min(res.GenNsBefore, res.GenNsAfter), max(res.GenNsBefore, res.GenNsAfter)
	res.GenHeld = lo > 0 && hi/lo <= 1.10
	if res.Seen < res.Sent*9/10 {
		res.Note = fmt.Sprintf("only %.0f%% of the frames sent reached the receiver", 100*float64(res.Seen)/float64(res.Sent))
	}
	return res, nil
}

// Load is a load-time comparison.
type Load struct {
	Receiver string  `json:"receiver"`
	Entries  int     `json:"entries"`
	LoadS    float64 `json:"load_s"`
	Note     string  `json:"note,omitempty"`
}

// Report is what the command prints and writes.
type Report struct {
	Date   string `json:"date"`
	Kernel string `json:"kernel"`
	Method string `json:"method"`
	// Headlines: Bulwark against nft's best configuration and the XDP
	// floor, per size (Headlines).
	Headlines []string  `json:"headlines"`
	Summary   []Summary `json:"summary"`
	// Results: every attempt, re-run ones included.
	Results []Result `json:"results"`
	Loads   []Load   `json:"loads"`
}

// Method is the method in a paragraph, for the output.
const Method = "In-kernel generator: BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES (XDP_TX, BatchSize 64, " +
	"ingress_ifindex = client veth) in the client netns, pinned to CPU 0; 60-byte UDP, 8192 sources in " +
	"198.18.0.0/16 rewritten per packet by the generator. Receiver on the server veth (native XDP, or the nft " +
	"netdev ingress hook with GRO on so the veth runs NAPI); its softirq runs on CPU 0 too. Receivers: xdp-drop " +
	"(bare XDP_DROP, the XDP floor), nft-drop (drop-all chain, the nft floor), bulwark (the datapath, block " +
	"list loaded), nft (one interval set of every entry), nft-split (nft's best configuration: a hash " +
	"set of the hosts, matched first, and an interval set of the prefixes). The 8192 sources are all listed " +
	"hosts (90 % of a list are hosts, 10 % prefixes /20-/31): host hits are measured, prefix hits are not. " +
	"Each receiver of a size is set up " +
	"once on its own testbed, its verdicts checked on a sample of listed hosts, addresses in listed prefixes " +
	"and unlisted addresses (Bulwark: the program run on a frame; nft: nft get element, lists up to 100k), and " +
	"must drop every frame sent (all from listed hosts); then measured in " +
	"interleaved rounds (A B C ..., A B C ...), floors included; a round whose generator did not hold its speed " +
	"within 10 % is re-run (bounded) and counted in reruns. recv ns/pkt = CPU time of the generator thread " +
	"(CLOCK_THREAD_CPUTIME_ID, includes the inline softirqs) + ksoftirqd/0 runtime, per packet seen by the " +
	"receiver, minus the generator's own CPU time per packet (same generator returning XDP_DROP, measured right " +
	"before and after); it includes the veth transmit, the same for all receivers. Medians over the rounds; " +
	"spread = (max - min) / median. x nft = nft median / Bulwark median (packets dropped per CPU second " +
	"relative to nft); x floor = Bulwark median / xdp-drop median; floor ratio = nft-drop median / xdp-drop " +
	"median, same rounds. Load: Bulwark maps.List.Add (batched) vs nft -f (table+chain+sets with elements, one " +
	"transaction)."

// Print writes the summary, the headlines, the loads and the method.
func Print(w io.Writer, rep *Report) {
	fmt.Fprintf(w, "%-9s %-6s %8s %4s %7s %8s %8s %8s %7s %9s %9s %15s %8s %8s\n",
		"receiver", "test", "entries", "reps", "reruns", "med ns", "min ns", "max ns", "spread", "dropMpps",
		"vs-nft", "vs-nft-best", "x floor", "floor-r")
	for _, s := range rep.Summary {
		x := func(v float64) string {
			if v == 0 {
				return "-"
			}
			return fmt.Sprintf("%.2fx", v)
		}
		best := x(s.VsBest)
		if s.VsBestMax > 0 {
			best += fmt.Sprintf(" %.1f-%.1f", s.VsBestMin, s.VsBestMax)
		}
		fmt.Fprintf(w, "%-9s %-6s %8d %4d %7d %8.1f %8.1f %8.1f %6.1f%% %9.2f %9s %15s %8s %8s\n",
			s.Receiver, s.Test, s.Entries, s.Reps, s.Reruns, s.MedianNs, s.MinNs, s.MaxNs, s.SpreadPct,
			s.MedianMpps, x(s.VsNFT), best, x(s.XFloor), x(s.FloorRatio))
	}
	fmt.Fprintln(w)
	for _, h := range rep.Headlines {
		fmt.Fprintln(w, "bulwark at", h)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%-9s %8s %9s %s\n", "load", "entries", "seconds", "note")
	for _, l := range rep.Loads {
		fmt.Fprintf(w, "%-9s %8d %9.3f %s\n", l.Receiver, l.Entries, l.LoadS, l.Note)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "method:", rep.Method)
}

// shimTB lets the command use netns.New, which takes a testing.TB: Fatalf
// panics with a shimFatal, cleanups run on Close.
type shimTB struct {
	testing.TB
	cleanups []func()
}

type shimFatal struct{ err error }

func (s *shimTB) Helper()                   {}
func (s *shimTB) Cleanup(f func())          { s.cleanups = append(s.cleanups, f) }
func (s *shimTB) Fatalf(f string, a ...any) { panic(shimFatal{fmt.Errorf(f, a...)}) }
func (s *shimTB) Fatal(a ...any)            { panic(shimFatal{errors.New(fmt.Sprint(a...))}) }
func (s *shimTB) Logf(string, ...any)       {}
func (s *shimTB) Name() string              { return "nftbench" }
func (s *shimTB) close() {
	for i := len(s.cleanups) - 1; i >= 0; i-- {
		s.cleanups[i]()
	}
}

// Testbed builds a testbed outside a test; call the returned func to
// delete it.
func Testbed() (tb *netns.Testbed, done func(), err error) {
	s := &shimTB{}
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(shimFatal)
			if !ok {
				panic(r)
			}
			s.close()
			tb, done, err = nil, nil, f.err
		}
	}()
	tb = netns.New(s, netns.Options{})
	return tb, s.close, nil
}
