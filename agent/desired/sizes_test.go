package desired

import (
	"testing"

	"github.com/bulwark-filter/bulwark/loader"
)

// TestHostDefaultSizes: the memory-derived defaults, worked out by hand from the documented formula (MemTotal /
// 16 KiB rounded down to a power of two, clamped; aggregates a sixteenth of sources, clamped).
func TestHostDefaultSizes(t *testing.T) {
	const (
		kib = uint64(1) << 10
		mib = kib << 10
		gib = mib << 10
	)
	for _, tc := range []struct {
		mem                                      uint64
		sources, ruleBuckets, blockHosts, aggreg uint32
	}{
		// 128 MiB / 16 KiB = 8192: under every floor.
		{128 * mib, 16384, 16384, 65536, 4096},
		// 512 MiB / 16 KiB = 32768; aggregates 32768 / 16 = 2048, under its floor; block_hosts under its floor.
		{512 * mib, 32768, 32768, 65536, 4096},
		// 1 GiB / 16 KiB = 65536; aggregates 4096.
		{1 * gib, 65536, 65536, 65536, 4096},
		// 1 GiB as /proc/meminfo says it on a 1 GiB VPS (less than 1 GiB): 1,000,000 kB / 16 kB = 62500 -> 32768.
		{1_000_000 * kib, 32768, 32768, 65536, 4096},
		// 3 GiB / 16 KiB = 196608 -> 131072; aggregates 8192; block_hosts 131072.
		{3 * gib, 131072, 131072, 131072, 8192},
		// 16 GiB / 16 KiB = 1048576: the ceilings; aggregates 65536.
		{16 * gib, 1 << 20, 1 << 20, 1 << 20, 65536},
		// 24 GiB / 16 KiB = 1572864 -> 1048576, the ceiling.
		{24 * gib, 1 << 20, 1 << 20, 1 << 20, 65536},
		// No memory figure at all (0): the floors.
		{0, 16384, 16384, 65536, 4096},
	} {
		got := DefaultSizes(tc.mem)
		want := loader.DefaultSizes()
		want.Sources, want.RuleBuckets, want.BlockHosts, want.Aggregates = tc.sources, tc.ruleBuckets, tc.blockHosts, tc.aggreg
		if got != want {
			t.Errorf("DefaultSizes(%d MiB) = %+v, want %+v", tc.mem/mib, got, want)
		}
		if err := got.Validate(); err != nil {
			t.Errorf("DefaultSizes(%d MiB): %v", tc.mem/mib, err)
		}
	}
	// The loader's defaults are the ceilings, spelled out (configs/bulwark.hcl documents them).
	if d := loader.DefaultSizes(); d.Sources != 1<<20 || d.RuleBuckets != 1<<20 || d.BlockHosts != 1<<20 || d.Aggregates != 1<<16 {
		t.Errorf("loader.DefaultSizes changed: %+v", d)
	}
}
