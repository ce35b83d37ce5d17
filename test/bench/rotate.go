package bench

import (
	"fmt"
	"math/rand"
	"net/netip"

	"github.com/cilium/ebpf"

	"github.com/bulwark-filter/bulwark/bpf"
	"github.com/bulwark-filter/bulwark/loader"
	"github.com/bulwark-filter/bulwark/maps"
)

// DefaultSlots is how many source addresses a rotated case cycles through
// (the nftables testbed's 8,192 distinct sources).
const DefaultSlots = 8192

// FewSlots is how many source addresses the largest list's -512 cases
// cycle through: few enough that their list cache lines (64 bytes each)
// stay in the CPU's own caches.
const FewSlots = 512

// DefaultWideSlots is how many source addresses a -wide case cycles
// through: four times the 65,536 results per list and CPU the datapath's
// list cache holds (32,768 sets of two) on up to 16 CPUs.
const DefaultWideSlots = 1 << 18

// loadRotator loads an instance of bpf/rotate.c whose runs take their
// source addresses from addrs in order (len(addrs) a power of two) and go
// on into next.
func loadRotator(addrs []netip.Addr, next *ebpf.Program) (*bpf.RotateObjects, error) {
	n := len(addrs)
	if n == 0 || n&(n-1) != 0 {
		return nil, fmt.Errorf("rotator: %d addresses, want a power of two", n)
	}
	spec, err := bpf.LoadRotate()
	if err != nil {
		return nil, fmt.Errorf("rotator: %w", err)
	}
	spec.Maps[bpf.RotateMapRotateAddrs].MaxEntries = uint32(n)
	if err := spec.Variables[bpf.RotateVarRotateMask].Set(uint32(n - 1)); err != nil {
		return nil, fmt.Errorf("rotator: %w", err)
	}
	objs := &bpf.RotateObjects{}
	if err := spec.LoadAndAssign(objs, nil); err != nil {
		return nil, fmt.Errorf("rotator: load: %w", err)
	}
	keys := make([]uint32, n)
	vals := make([]bpf.RotateRotateAddr, n)
	for i, a := range addrs {
		keys[i] = uint32(i)
		s := a.AsSlice()
		copy(vals[i].B[:], s)
	}
	if _, err := objs.RotateAddrs.BatchUpdate(keys, vals, nil); err != nil {
		objs.Close()
		return nil, fmt.Errorf("rotator: write addresses: %w", err)
	}
	if err := objs.RotateNext.Put(uint32(0), next); err != nil {
		objs.Close()
		return nil, fmt.Errorf("rotator: tail call target: %w", err)
	}
	return objs, nil
}

// hitKind is one kind of block-list hit.
type hitKind int

const (
	hitHost4 hitKind = iota
	hitNet4
	hitHost6
	hitNet6
)

// distinctHits is slots addresses in random order that hit entries of
// kind: host entries themselves (each as often as slots allows when the
// list holds fewer of them), or addresses inside prefix entries that are no
// host entry, all distinct. It returns how many of them are distinct.
func distinctHits(entries []maps.Entry, kind hitKind, slots int, rng *rand.Rand) ([]netip.Addr, int, error) {
	v4 := kind == hitHost4 || kind == hitNet4
	hosts := map[netip.Addr]bool{}
	var hostList []netip.Addr
	var nets []netip.Prefix
	for _, e := range entries {
		if e.Prefix.Addr().Is4() != v4 {
			continue
		}
		if e.Prefix.IsSingleIP() {
			hosts[e.Prefix.Addr()] = true
			hostList = append(hostList, e.Prefix.Addr())
		} else {
			nets = append(nets, e.Prefix)
		}
	}
	out := make([]netip.Addr, 0, slots)
	if kind == hitHost4 || kind == hitHost6 {
		if len(hostList) == 0 {
			return nil, 0, fmt.Errorf("no host entries of kind %d", kind)
		}
		rng.Shuffle(len(hostList), func(i, j int) { hostList[i], hostList[j] = hostList[j], hostList[i] })
		for i := 0; i < slots; i++ {
			out = append(out, hostList[i%len(hostList)])
		}
		rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
		return out, min(slots, len(hostList)), nil
	}
	if len(nets) == 0 {
		return nil, 0, fmt.Errorf("no prefix entries of kind %d", kind)
	}
	seen := map[netip.Addr]bool{}
	for tries := 0; len(out) < slots; tries++ {
		if tries > 100*slots {
			return nil, 0, fmt.Errorf("only %d distinct prefix hits of kind %d in %d tries", len(out), kind, tries)
		}
		p := nets[rng.Intn(len(nets))]
		a := p.Addr().As16()
		if v4 {
			a = netip.AddrFrom4(p.Addr().As4()).As16() // v4-mapped: bytes 12..15
		}
		// Random host bits below the prefix length.
		off := 0
		if v4 {
			off = 96
		}
		for bit := off + p.Bits(); bit < 128; bit++ {
			if rng.Intn(2) == 1 {
				a[bit/8] |= 0x80 >> (bit % 8)
			}
		}
		addr := netip.AddrFrom16(a)
		if v4 {
			addr = addr.Unmap()
		}
		if hosts[addr] || seen[addr] {
			continue
		}
		seen[addr] = true
		out = append(out, addr)
	}
	return out, slots, nil
}

// wideRuns is how many times the run's repeat a -wide case (and its floor)
// runs per measurement: each run of one waits on memory, which other work
// on the machine disturbs, so a longer measurement is needed to pass the
// stability check.
const wideRuns = 4

// checkHits runs a frame from each of addrs through d and fails unless d
// drops it (the addresses are block-list hits).
func checkHits(d *loader.Datapath, frame func(netip.Addr) []byte, addrs []netip.Addr) error {
	for _, a := range addrs {
		if v, err := d.Run(frame(a)); err != nil || v != xdpDrop {
			return fmt.Errorf("%v is no hit (verdict %d, %v)", a, v, err)
		}
	}
	return nil
}

// blockCacheOff turns d's block list cache off (bpf/lists.h CACHE_ON in
// list_gen[1]) and moves its generation on, as maps does for a list under
// maps.CacheFrom entries: the list is then looked up in its maps alone.
func blockCacheOff(d *loader.Datapath) error {
	m, err := programMap(d, maps.MapListGen)
	if err != nil {
		return err
	}
	defer m.Close()
	var g uint64
	if err := m.Lookup(uint32(1), &g); err != nil {
		return fmt.Errorf("read block list generation: %w", err)
	}
	if g&(1<<63) == 0 {
		return fmt.Errorf("block list cache already off (generation %#x)", g)
	}
	if err := m.Update(uint32(1), (g&^(1<<63))+1, ebpf.UpdateExist); err != nil {
		return fmt.Errorf("turn block list cache off: %w", err)
	}
	return nil
}
