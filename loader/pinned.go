package loader

import (
	"fmt"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/bulwark-filter/bulwark/bpf"
	"github.com/bulwark-filter/bulwark/maps"
)

// PinnedProgramID is the id of the program in the link pinned in pinDir,
// and whether such a link is there.
func PinnedProgramID(pinDir string) (uint32, bool) {
	l, err := link.LoadPinnedLink(filepath.Join(pinDir, linkPin), nil)
	if err != nil {
		return 0, false
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		return 0, false
	}
	return uint32(info.Program), true
}

// SizedSpec is the datapath object with every sized map at s's size.
func SizedSpec(s Sizes) (*ebpf.CollectionSpec, error) {
	spec, err := bpf.LoadBulwark()
	if err != nil {
		return nil, fmt.Errorf("read embedded datapath object: %w", err)
	}
	for name, n := range s.byMap() {
		ms, ok := spec.Maps[name]
		if !ok {
			return nil, fmt.Errorf("datapath object has no map %s", name)
		}
		ms.MaxEntries = n
	}
	if err := sizeListCaches(spec); err != nil {
		return nil, err
	}
	return spec, nil
}

// listCacheBytes bounds the list caches' memory, both lists and every CPU
// together; listCacheBits is the sets per CPU (each 64 bytes, two results)
// below that bound: 32,768 sets, 2 MiB per list and CPU, up to 16 CPUs.
const (
	listCacheBytes = 64 << 20
	listCacheBits  = 15
)

// cacheBits is the log2 of the list cache sets per CPU for cpus CPUs: at
// most listCacheBits, fewer where cpus of them would pass listCacheBytes.
func cacheBits(cpus int) uint32 {
	bits := uint32(listCacheBits)
	for bits > 0 && 2*cpus<<bits*64 > listCacheBytes {
		bits--
	}
	return bits
}

// sizeListCaches sizes the per-CPU list caches (bpf/lists.h) for the
// host's possible CPUs.
func sizeListCaches(spec *ebpf.CollectionSpec) error {
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("possible CPUs: %w", err)
	}
	bits := cacheBits(cpus)
	for _, name := range []string{maps.MapAllowCache, maps.MapBlockCache} {
		ms, ok := spec.Maps[name]
		if !ok {
			return fmt.Errorf("datapath object has no map %s", name)
		}
		ms.MaxEntries = uint32(cpus) << bits
	}
	if err := spec.Variables["list_cache_bits"].Set(bits); err != nil {
		return fmt.Errorf("set list cache size: %w", err)
	}
	return nil
}

// FromPins returns s with each size whose map is pinned in dir replaced by the pinned map's: a datapath loaded
// with them adopts those pins. The agent uses it for the sizes a config leaves to their defaults, which follow the
// host's memory, so that a restart after the defaults changed (an upgrade, a resized host) keeps the maps, their
// entries and their counters.
func (s Sizes) FromPins(dir string) Sizes {
	for _, f := range []struct {
		dst  *uint32
		name string
	}{
		{&s.Sources, maps.MapSources}, {&s.RuleBuckets, maps.MapRuleBuckets}, {&s.Verdicts, maps.MapVerdicts},
		{&s.AllowHosts, maps.MapAllowHosts4}, {&s.AllowPrefixes, maps.MapAllowNets4},
		{&s.BlockHosts, maps.MapBlockHosts4}, {&s.BlockPrefixes, maps.MapBlockNets4},
		{&s.Classes, maps.MapClasses4}, {&s.Aggregates, maps.MapAggBuckets}, {&s.EventsBytes, maps.MapEvents},
	} {
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, f.name), &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			continue // not pinned (or unreadable: loading says why)
		}
		*f.dst = m.MaxEntries()
		m.Close()
	}
	return s
}
