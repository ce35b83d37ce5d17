package preflight

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf/asm"

	"github.com/bulwark-filter/bulwark/loader"
)

// TestRequirementsKnown: every helper and map type the datapath object uses
// has its Linux release in the tables, and the minimum follows from them.
func TestRequirementsKnown(t *testing.T) {
	reqs, err := requirements()
	if err != nil {
		t.Fatal(err)
	}
	var helpers []string
	for _, r := range reqs {
		if r.since.code() == 0 {
			t.Errorf("%s: no Linux release in the tables", r.what)
		}
		if s, ok := strings.CutPrefix(r.what, "helper "); ok {
			helpers = append(helpers, s)
		}
	}
	// bpf/*.h call these helpers (grep bpf_[a-z_]*\( bpf/*.h, less the
	// byte-order macros); the object must show exactly them.
	want := "bpf_map_lookup_elem bpf_map_update_elem bpf_map_delete_elem bpf_get_smp_processor_id bpf_ringbuf_reserve bpf_ringbuf_submit bpf_ktime_get_coarse_ns bpf_loop bpf_xdp_load_bytes"
	if got := strings.Join(helpers, " "); got != want {
		t.Errorf("helpers of the object: %s, want %s", got, want)
	}
	// bpf_xdp_load_bytes came in Linux 5.18, the newest of them.
	if v, what := minimum(reqs); v != (version{5, 18}) || what != "helper bpf_xdp_load_bytes" {
		t.Errorf("minimum: %s for %s, want 5.18 for helper bpf_xdp_load_bytes", v, what)
	}
	if got := helperName(asm.FnKtimeGetCoarseNs); got != "bpf_ktime_get_coarse_ns" {
		t.Errorf("helperName: %s", got)
	}
}

// TestEstimateMatchesKernel loads the datapath at small sizes and compares
// the estimate of every map with the memory the kernel reports for it
// (memlock, Linux 6.4 and later report each map's real use).
func TestEstimateMatchesKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIP: needs root (BPF); run `sudo make test`")
	}
	s := loader.DefaultSizes()
	s.Sources, s.RuleBuckets, s.Aggregates = 1<<15, 1<<14, 1<<12
	s.Verdicts, s.AllowHosts, s.BlockHosts = 1<<12, 1<<10, 1<<13
	s.AllowPrefixes, s.BlockPrefixes, s.Classes = 1<<10, 1<<10, 1<<8
	s.EventsBytes = 1 << 16
	est, err := Estimate(s)
	if err != nil {
		t.Fatal(err)
	}
	d, err := loader.Load(loader.Options{Sizes: s})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	kernel, err := d.Maps.Memory()
	if err != nil {
		t.Fatal(err)
	}
	var total uint64
	for name, got := range kernel {
		total += got
		want, ok := est.ByMap[name]
		if !ok {
			t.Errorf("map %s: no estimate", name)
			continue
		}
		// Each map within 2 %, or 1 KiB for the small ones (the map's
		// own header, which the estimate leaves out).
		diff := max(want, got) - min(want, got)
		if diff > got/50 && diff > 1024 {
			t.Errorf("map %s: estimate %d bytes, kernel %d", name, want, got)
		}
	}
	if diff := max(est.Start, total) - min(est.Start, total); diff > total/50 {
		t.Errorf("all maps: estimate %d bytes, kernel %d (more than 2 %% apart)", est.Start, total)
	}
	if est.Full <= est.Start {
		t.Errorf("full %d not above start %d: the lists and tries grow", est.Full, est.Start)
	}
}

func TestMemAvailable(t *testing.T) {
	dir := t.TempDir()
	write := func(text string) string {
		p := filepath.Join(dir, "meminfo")
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	got, err := memAvailable(write("MemTotal:        2000 kB\nMemFree:  10 kB\nMemAvailable:    1536 kB\n"))
	if err != nil || got != 1536*1024 {
		t.Errorf("got %d, %v; want %d", got, err, 1536*1024)
	}
	if _, err := memAvailable(write("MemTotal: 2000 kB\n")); err == nil || !strings.Contains(err.Error(), "no MemAvailable") {
		t.Errorf("no MemAvailable: %v", err)
	}
	if _, err := memAvailable(write("MemAvailable: x kB\n")); err == nil {
		t.Error("bad number accepted")
	}
}

func TestMemoryChecksInvalidSizes(t *testing.T) {
	s := loader.DefaultSizes()
	s.EventsBytes = 5000
	cs := memoryChecks(s, 1, pinnedSet{})
	if len(cs) != 1 || cs[0].Status != Fail || !strings.Contains(cs[0].Detail, "power of two") {
		t.Errorf("%+v", cs)
	}
}

// TestMemoryChecksTooLittle asks for more interfaces at the largest sizes
// than MemAvailable holds: the memory check fails, without blocking the
// start (the kernel may still reclaim), and names the map sizes to lower.
func TestMemoryChecksTooLittle(t *testing.T) {
	s := loader.DefaultSizes()
	s.Sources, s.RuleBuckets = 1<<26, 1<<26
	est, err := Estimate(s)
	if err != nil {
		t.Fatal(err)
	}
	avail, err := memAvailable("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	ifaces := int(avail/est.Start) + 2 // at least one interface's worth (GiBs) beyond what is available
	c := memoryChecks(s, ifaces, pinnedSet{})[0]
	if c.Name != "kernel memory" || c.Status != Fail || c.Blocking || !strings.Contains(c.Fix, "lower maps.sources and maps.rule_buckets") {
		t.Errorf("%d interfaces of %d bytes with %d available: %+v", ifaces, est.Start, avail, c)
	}
	// The same sizes on interfaces whose maps are pinned already need
	// nothing more.
	if c := memoryChecks(s, ifaces, pinnedSet{ifaces: ifaces})[0]; c.Status != OK {
		t.Errorf("all pinned: %+v", c)
	}
}
