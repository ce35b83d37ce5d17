package preflight

import (
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bulwark-filter/bulwark/loader"
	"github.com/bulwark-filter/bulwark/maps"
)

// The kernel's per-element layout (64-bit), from kernel/bpf/hashtab.c and
// lpm_trie.c: a hash element's header (struct htab_elem), a bucket, a
// non-preallocated element's list node, and an LPM trie node's header.
const (
	htabElemHeader = 48
	htabBucket     = 16
	llistNode      = 8
	lpmNodeHeader  = 24
	page           = 4096
)

// Memory is the kernel memory of one datapath (one interface) at the
// configured sizes, estimated from the maps' types and sizes with the
// kernel's element layout.
type Memory struct {
	// Start is what loading allocates: preallocated maps (the LRU maps,
	// arrays, the ring) and the bucket arrays of the other hash maps.
	Start uint64 `json:"start_bytes"`
	// Full adds the entries of the maps that grow (lists, verdicts, LPM
	// tries) when every one is full.
	Full uint64 `json:"full_bytes"`
	// ByMap is Start by map name.
	ByMap map[string]uint64 `json:"by_map"`
}

func round8(n uint32) uint64 { return (uint64(n) + 7) &^ 7 }

func pow2(n uint32) uint64 {
	if n <= 1 {
		return 1
	}
	return 1 << bits.Len32(n-1)
}

// mapMemory estimates one map: at start and the growth when full.
func mapMemory(m *ebpf.MapSpec, cpus uint64) (start, growth uint64) {
	n := uint64(m.MaxEntries)
	switch m.Type {
	case ebpf.Array:
		start = round8(m.ValueSize) * n
		if m.Flags&unix.BPF_F_MMAPABLE != 0 { // the values' pages and a page of struct bpf_array
			start = (start+page-1)&^(page-1) + page
		}
	case ebpf.PerCPUArray:
		start = n * (8 + round8(m.ValueSize)*cpus)
	case ebpf.LRUHash:
		start = htabBucket*pow2(m.MaxEntries) + n*(htabElemHeader+round8(m.KeySize)+round8(m.ValueSize))
	case ebpf.PerCPUHash: // preallocated: each element holds a pointer to its per-CPU value
		start = htabBucket*pow2(m.MaxEntries) + n*(htabElemHeader+round8(m.KeySize)+8+round8(m.ValueSize)*cpus)
	case ebpf.Hash:
		elem := uint64(htabElemHeader + round8(m.KeySize) + round8(m.ValueSize))
		start = htabBucket * pow2(m.MaxEntries)
		if m.Flags&unix.BPF_F_NO_PREALLOC != 0 {
			growth = n * (elem + llistNode)
		} else {
			start += (n + cpus) * elem
		}
	case ebpf.LPMTrie:
		growth = n * (lpmNodeHeader + uint64(m.KeySize) - 4 + uint64(m.ValueSize))
	case ebpf.RingBuf:
		start = n + 3*page // the data pages and struct bpf_ringbuf (its consumer and producer pages)
	}
	return start, growth
}

// Estimate is the kernel memory of one datapath at sizes s.
func Estimate(s loader.Sizes) (Memory, error) {
	if err := s.Validate(); err != nil {
		return Memory{}, err
	}
	spec, err := loader.SizedSpec(s)
	if err != nil {
		return Memory{}, err
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return Memory{}, fmt.Errorf("count possible CPUs: %w", err)
	}
	mem := Memory{ByMap: map[string]uint64{}}
	for name, m := range spec.Maps {
		start, growth := mapMemory(m, uint64(cpus))
		mem.ByMap[name] = start
		mem.Start += start
		mem.Full += start + growth
	}
	return mem, nil
}

// pinnedSet is what is pinned already for the interfaces: loading adopts it, so its memory is allocated.
type pinnedSet struct {
	ifaces int    // interfaces whose maps are pinned
	inUse  uint64 // the kernel memory (memlock) of their pinned maps
}

// ownPins finds the interfaces whose maps are pinned already and the kernel memory those maps use.
func ownPins(in Input) pinnedSet {
	var p pinnedSet
	for _, i := range in.Interfaces {
		dir := loader.PinDir(in.PinRoot, i.Name)
		if _, err := os.Stat(filepath.Join(dir, maps.MapSources)); err != nil {
			continue
		}
		p.ifaces++
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			m, err := ebpf.LoadPinnedMap(filepath.Join(dir, e.Name()), &ebpf.LoadPinOptions{ReadOnly: true})
			if err != nil {
				continue // the link and the program are pinned there too
			}
			if info, err := m.Info(); err == nil {
				n, _ := info.Memlock()
				p.inUse += n
			}
			m.Close()
		}
	}
	return p
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// memoryChecks compares the memory the datapaths need with what the host
// and this process's memory cgroup allow, and checks the locked-memory
// limit on kernels that still apply it to BPF.
func memoryChecks(s loader.Sizes, ifaces int, pins pinnedSet) []Check {
	pinned := pins.ifaces
	mem, err := Estimate(s)
	if err != nil {
		return []Check{{Name: "kernel memory", Status: Fail, Blocking: true, Detail: err.Error(), Fix: "correct the maps block of the config"}}
	}
	n := uint64(max(ifaces-pinned, 0))
	start, full := n*mem.Start, n*mem.Full
	fix := fmt.Sprintf("lower maps.sources and maps.rule_buckets in the config (at these sizes they take %s and %s per interface)",
		mib(mem.ByMap[maps.MapSources]), mib(mem.ByMap[maps.MapRuleBuckets]))
	detail := fmt.Sprintf("%s per interface at load (sources %d, rule_buckets %d, block_hosts %d), up to %s with every list, verdict and trie map full",
		mib(mem.Start), s.Sources, s.RuleBuckets, s.BlockHosts, mib(mem.Full))
	if pinned > 0 {
		detail += fmt.Sprintf("; %d of %d interfaces have their maps pinned already (allocated, adopted): %s in use", pinned, ifaces, mib(pins.inUse))
	}
	c := Check{Name: "kernel memory", Status: OK, Detail: detail}
	avail, err := memAvailable("/proc/meminfo")
	switch {
	case err != nil:
		c.Status, c.Detail = Warn, detail+"; "+err.Error()
	case start > avail:
		c.Status, c.Detail, c.Fix = Fail, fmt.Sprintf("%s; %s needed at load, only %s available", detail, mib(start), mib(avail)), fix
	case full > avail || start > avail/2:
		c.Status, c.Detail, c.Fix = Warn, fmt.Sprintf("%s; %s available", detail, mib(avail)), fix
	default:
		c.Detail = fmt.Sprintf("%s; %s available", detail, mib(avail))
	}
	out := []Check{c}

	memcg := kernelCode() == 0 || kernelCode() >= memcgSince.code()
	if memcg {
		out = append(out, cgroupCheck(start, fix))
		return append(out, Check{Name: "locked memory", Status: OK,
			Detail: "not applied to BPF: Linux " + memcgSince.String() + " and later charge BPF memory to the memory cgroup, not RLIMIT_MEMLOCK"})
	}
	var rl unix.Rlimit
	lc := Check{Name: "locked memory", Status: OK}
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &rl); err != nil {
		lc.Status, lc.Detail = Warn, fmt.Sprintf("read RLIMIT_MEMLOCK: %v", err)
		return append(out, lc)
	}
	switch {
	case rl.Cur == unix.RLIM_INFINITY:
		lc.Detail = "RLIMIT_MEMLOCK unlimited"
	case rl.Cur < full:
		lc.Status, lc.Blocking = Fail, true
		lc.Detail = fmt.Sprintf("RLIMIT_MEMLOCK is %s; before Linux %s BPF maps count against it and need up to %s", mib(rl.Cur), memcgSince, mib(full))
		lc.Fix = "set LimitMEMLOCK=infinity in the systemd unit (or `ulimit -l unlimited` before bulwark run)"
	default:
		lc.Detail = fmt.Sprintf("RLIMIT_MEMLOCK %s covers the maps", mib(rl.Cur))
	}
	return append(out, lc)
}

// memAvailable reads MemAvailable from a meminfo file, in bytes.
func memAvailable(path string) (uint64, error) {
	n, err := loader.MemInfo(path, "MemAvailable")
	if err != nil {
		return 0, fmt.Errorf("read free memory: %w", err)
	}
	return n, nil
}

// cgroupCheck compares need with the room left under this process's
// memory cgroup (v2) limit.
func cgroupCheck(need uint64, fix string) Check {
	c := Check{Name: "memory cgroup", Status: OK}
	dir, err := ownCgroup("/proc/self/cgroup")
	if err != nil {
		c.Detail = "no cgroup v2 memory limit found"
		return c
	}
	limit, err1 := readCgroupValue(filepath.Join("/sys/fs/cgroup", dir, "memory.max"))
	used, err2 := readCgroupValue(filepath.Join("/sys/fs/cgroup", dir, "memory.current"))
	switch {
	case err1 != nil || err2 != nil:
		c.Detail = "no memory limit on cgroup " + dir
	case limit == 0:
		c.Detail = "cgroup " + dir + ": no memory limit"
	case used+need > limit:
		c.Status, c.Blocking = Fail, true
		c.Detail = fmt.Sprintf("cgroup %s: limit %s, %s used, the maps need %s more", dir, mib(limit), mib(used), mib(need))
		c.Fix = fix + ", or raise the limit (MemoryMax= in the systemd unit, resources.limits.memory in Kubernetes)"
	default:
		c.Detail = fmt.Sprintf("cgroup %s: limit %s, %s used, room for the maps' %s", dir, mib(limit), mib(used), mib(need))
	}
	return c
}

// ownCgroup is the cgroup v2 path of this process.
func ownCgroup(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			return rest, nil
		}
	}
	return "", fmt.Errorf("no cgroup v2 entry in %s", path)
}

// readCgroupValue reads a cgroup memory file in bytes; 0 means "max".
func readCgroupValue(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, nil
	}
	return strconv.ParseUint(s, 10, 64)
}
