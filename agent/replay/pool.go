package replay

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bulwark-filter/bulwark/loader"
	"github.com/bulwark-filter/bulwark/maps"
)

// A replay runs frames on several CPUs at once when that cannot change a
// single decision. Every piece of datapath state a decision reads is kept
// per source, per rule and source, or per aggregate prefix (IPv4 /24 and
// IPv6 /48 by default), except the global ceiling on new sources. Frames
// are split into partitions by the shortest of those keys, so a partition
// holds every frame that touches any of its state, and each partition runs
// on one CPU in capture order: its state evolves exactly as in a run on
// one CPU. Verdicts come from the scorer between segments, when every
// frame before the cycle has run. The new-source ceiling is shared, so
// workers allows more than one partition only when the ceiling
// cannot refuse anything in any order (see there). The report is built in
// capture order afterwards, so --write-dropped keeps the capture's order.

// partitioner maps a frame's source to its partition's key.
type partitioner struct {
	srcPrefix6 int // the per-source IPv6 prefix
	agg        bool
	agg4, agg6 int // the aggregate limit's prefixes, when agg
}

func newPartitioner(p *maps.Policy) partitioner {
	pt := partitioner{srcPrefix6: p.SourcePrefix(), agg: p.Aggregate.Active()}
	pt.agg4, pt.agg6 = p.AggregatePrefixes()
	return pt
}

// of hashes the coarsest state key of a source: its aggregate prefix when
// the aggregate limit is on, else its own source key.
func (pt partitioner) of(src netip.Addr) uint32 {
	bits := 32
	if src.Is4In6() {
		src = src.Unmap()
	}
	if src.Is4() {
		if pt.agg {
			bits = pt.agg4
		}
	} else {
		bits = pt.srcPrefix6
		if pt.agg && pt.agg6 < bits {
			bits = pt.agg6
		}
	}
	pp, _ := src.Prefix(bits)
	k := pp.Addr().As16()
	// FNV-1a over the masked address, then murmur3's finaliser: the
	// partition is h modulo a small number, so the low bits must mix.
	h := uint32(2166136261)
	for _, b := range k {
		h = (h ^ uint32(b)) * 16777619
	}
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}

// workers is how many CPUs a replay may use: one per CPU (at most
// 8, and at most cpus unless that is 0), or 1 when the new-source ceiling
// could refuse a source. Across
// partitions the ceiling's bucket sees times slightly out of order (by at
// most one segment's span, which runSegments caps at half the bucket's
// depth). With sources distinct sources, the bucket's theoretical arrival
// time stays within sources intervals of the latest time it has seen, so
// when sources intervals fit in the other half of the depth it admits
// every source in every order, as it would on one CPU.
func workers(p *maps.Policy, sources, cpus int) int {
	n := min(runtime.NumCPU(), maxCPUs)
	if cpus > 0 {
		n = min(n, cpus)
	}
	if n < 2 {
		return 1
	}
	if l := p.NewSources; l.PPS > 0 {
		interval := uint64(time.Second) / l.PPS
		depth := maps.Depth(l.Burst, l.PPS)
		if uint64(sources)*interval > depth/2 {
			return 1
		}
	}
	return n
}

// maxCPUs caps the CPUs one replay uses.
const maxCPUs = 8

// maxSegmentSpan is how much capture time one parallel segment may span.
func maxSegmentSpan(p *maps.Policy) time.Duration {
	if l := p.NewSources; l.PPS > 0 {
		if d := maps.Depth(l.Burst, l.PPS) / 2; d < uint64(1<<62) {
			return max(time.Duration(d), 1)
		}
	}
	return time.Duration(1 << 62)
}

// partsPerRunner is how many partitions a segment is cut into per
// runner. The runners take partitions, largest first, as they finish, so a
// source busier than the rest (a flood) does not leave the other runners
// idle while one runs its share.
const partsPerRunner = 8

// pool decides segments of frames on its runners, a partition at a time.
type pool struct {
	runners []*loader.Runner
	policy  *maps.Policy
	decs    []decision
	// A segment's frames by partition: partition k's, in capture order,
	// are order[starts[k]:starts[k+1]]; byLoad is the partitions, largest
	// first.
	order  []int32
	starts []int
	byLoad []int
}

func newPool(d *loader.Datapath, n int, policy *maps.Policy) *pool {
	p := &pool{policy: policy}
	for range n {
		p.runners = append(p.runners, d.NewRunner())
	}
	return p
}

// decide runs frames (all before the next scorer cycle) with time
// measured from first and returns their decisions, in order. The slice is
// reused by the next call.
func (p *pool) decide(frames []frame, first time.Time) ([]decision, error) {
	// Every frame belongs to exactly one partition, so each slot is written.
	if cap(p.decs) < len(frames) {
		p.decs = make([]decision, len(frames))
	}
	p.decs = p.decs[:len(frames)]
	one := func(r *loader.Runner, i int) error {
		f := &frames[i]
		mono := replayBase + uint64(f.ts.Sub(first))
		dec, err := runFrame(r, f.buf, mono, p.policy)
		if err != nil {
			return fmt.Errorf("capture %s, record %d: %w", f.path, f.record, err)
		}
		p.decs[i] = dec
		return nil
	}
	n := len(p.runners)
	if n == 1 {
		for i := range frames {
			if err := one(p.runners[0], i); err != nil {
				return nil, err
			}
		}
		return p.decs, nil
	}
	p.group(frames, n*partsPerRunner)
	var next atomic.Int32
	run := func(w int) error {
		for {
			k := int(next.Add(1)) - 1
			if k >= len(p.byLoad) {
				return nil
			}
			part := p.byLoad[k]
			for _, i := range p.order[p.starts[part]:p.starts[part+1]] {
				if err := one(p.runners[w], int(i)); err != nil {
					return err
				}
			}
		}
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for w := 1; w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = run(w)
		}()
	}
	errs[0] = run(0)
	wg.Wait()
	return p.decs, errors.Join(errs...)
}

// group sorts the frames' indexes into parts partitions (a counting sort:
// each partition keeps capture order) and orders the partitions by size.
func (p *pool) group(frames []frame, parts int) {
	p.starts = slices.Grow(p.starts[:0], parts+1)[:parts+1]
	clear(p.starts)
	for i := range frames {
		p.starts[frames[i].part%uint32(parts)+1]++
	}
	p.byLoad = p.byLoad[:0]
	for k := range parts {
		p.byLoad = append(p.byLoad, k)
		p.starts[k+1] += p.starts[k]
	}
	slices.SortFunc(p.byLoad, func(a, b int) int {
		return cmp.Compare(p.starts[b+1]-p.starts[b], p.starts[a+1]-p.starts[a])
	})
	p.order = slices.Grow(p.order[:0], len(frames))[:len(frames)]
	fill := slices.Clone(p.starts[:parts]) // the next free slot of each partition
	for i := range frames {
		k := frames[i].part % uint32(parts)
		p.order[fill[k]] = int32(i)
		fill[k]++
	}
}
