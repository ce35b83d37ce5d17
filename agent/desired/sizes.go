package desired

import (
	"math/bits"
	"sync"

	"github.com/bulwark-filter/bulwark/loader"
)

// Map sizes scaled to the host, for the maps whose memory is allocated at load whatever the traffic: the per-source
// LRU maps (sources: ~192 bytes an entry, rule_buckets: ~104, aggregates: ~104) and the block list's host maps
// (a 16-byte bucket an entry, per family, allocated empty).
const (
	// MemoryPerSource is how much of the host's MemTotal one default entry of sources, rule_buckets and
	// block_hosts stands for: 16 KiB, so the preallocated maps take about 2 % of MemTotal.
	MemoryPerSource = 16 << 10
	// MinSources is the floor of the default sources and rule_buckets.
	MinSources = 1 << 14
	// MinBlockHosts is the floor of the default block_hosts.
	MinBlockHosts = 1 << 16
	// SourcesPerAggregate: the default aggregates is sources / SourcesPerAggregate, between MinAggregates and
	// the loader's default.
	SourcesPerAggregate = 16
	// MinAggregates is the floor of the default aggregates.
	MinAggregates = 1 << 12
)

// floorPow2 is the largest power of two at most n (n >= 1), or 0 for 0.
func floorPow2(n uint64) uint64 {
	if n == 0 {
		return 0
	}
	return 1 << (bits.Len64(n) - 1)
}

func clamp(n, lo, hi uint64) uint32 { return uint32(min(max(n, lo), hi)) }

// DefaultSizes are the sizes a config that sets none gets on a host with memTotal bytes of memory (MemTotal):
//
//	sources = rule_buckets = MemTotal / 16 KiB rounded down to a power of two, in [16384, 1048576]
//	block_hosts            = the same, in [65536, 1048576]
//	aggregates             = sources / 16, in [4096, 65536]
//
// and every other map the loader's fixed default (loader.DefaultSizes, which is also each ceiling above). 1 GiB
// gives 65536 sources (about 26 MiB of kernel memory at load, every map); 16 GiB and more give the ceilings
// (about 340 MiB).
func DefaultSizes(memTotal uint64) loader.Sizes {
	s := loader.DefaultSizes()
	per := floorPow2(memTotal / MemoryPerSource)
	s.Sources = clamp(per, MinSources, uint64(s.Sources))
	s.RuleBuckets = clamp(per, MinSources, uint64(s.RuleBuckets))
	s.BlockHosts = clamp(per, MinBlockHosts, uint64(s.BlockHosts))
	s.Aggregates = clamp(uint64(s.Sources)/SourcesPerAggregate, MinAggregates, uint64(s.Aggregates))
	return s
}

// HostSizes are DefaultSizes for this host's MemTotal, read once per process (so a reload compares sizes made
// from the same figure); when /proc/meminfo cannot be read, the loader's defaults (the ceilings).
var HostSizes = sync.OnceValue(func() loader.Sizes {
	total, err := loader.MemInfo("/proc/meminfo", "MemTotal")
	if err != nil {
		return loader.DefaultSizes()
	}
	return DefaultSizes(total)
})
