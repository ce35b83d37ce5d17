package maps

import (
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// listGens is the datapath's list_gen map mapped into this process: one
// generation per list (0 allow, 1 block) that the datapath's per-CPU list
// cache tags its results with (bpf/lists.h). Every write to a list
// advances the list's generation after the write, with an atomic add on
// the shared memory, so no writer (the agent, the CLI, another agent
// process) loses another's advance and no result cached before a write is
// used after it.
type listGens struct {
	mem []byte
}

// mapListGens maps m (list_gen, BPF_F_MMAPABLE) for the life of owner.
func mapListGens(m *ebpf.Map, owner *Set) (*listGens, error) {
	b, err := unix.Mmap(m.FD(), 0, os.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map %s into memory: %w", MapListGen, err)
	}
	runtime.AddCleanup(owner, func(b []byte) { _ = unix.Munmap(b) }, b)
	return &listGens{mem: b}, nil
}

// cacheOn is list_gen's bit that turns a list's cache on (bpf/lists.h
// CACHE_ON).
const cacheOn = 1 << 63

// CacheFrom is how many entries a list holds (both families, expired ones
// included) from which the datapath's cache answers for it. A smaller list's
// own maps are looked up as fast as the cache's line is read (the 1k-entry
// bench cases are faster without it); a larger one's wait on memory.
const CacheFrom = 4096

// advance turns list i's cache on or off and moves its generation on:
// results cached before it no longer answer.
func (g *listGens) advance(i int, on bool) {
	p := (*uint64)(unsafe.Pointer(&g.mem[8*i]))
	if on {
		atomic.OrUint64(p, cacheOn)
	} else {
		atomic.AndUint64(p, ^uint64(cacheOn))
	}
	atomic.AddUint64(p, 1)
}

// advance moves l's generation on after a write, with its cache on from
// CacheFrom entries.
func (l *List) advance() {
	l.tally.mu.Lock()
	n := l.tally.ipv4 + l.tally.ipv6
	l.tally.mu.Unlock()
	l.gens.advance(l.gen, n >= CacheFrom)
}
