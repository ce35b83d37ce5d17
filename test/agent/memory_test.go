package agent_test

import (
	"encoding/json"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/desired"
	"github.com/bulwark-filter/bulwark/loader/preflight"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/agenttest"
)

// TestHostSizedMapsAndStatusMemory runs an agent whose config leaves maps.sources unset: the pinned sources map has
// the size the documented formula gives for this host's MemTotal (worked out here from /proc/meminfo), and
// `status` reports the kernel memory of the interface's maps, between the estimate at load and the estimate with
// every map full (the estimate is held within 2 % of the kernel's figures by loader/preflight's tests).
func TestHostSizedMapsAndStatusMemory(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	src := e.Render(agenttest.Config{})
	line := fmt.Sprintf("  sources        = %d\n", agenttest.DefaultSizes.Sources)
	if !strings.Contains(src, line) {
		t.Fatalf("the rendered config has no line %q", line)
	}
	agenttest.WriteFile(t, e.CfgPath, strings.Replace(src, line, "", 1))
	a := e.Start()

	// MemTotal / 16 KiB, rounded down to a power of two, within 16384..1048576.
	meminfo, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	var kb uint64
	for _, l := range strings.Split(string(meminfo), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "MemTotal:" {
			kb, _ = strconv.ParseUint(f[1], 10, 64)
		}
	}
	want := uint32(1) << (bits.Len64(kb/16) - 1)
	want = min(max(want, 16384), 1048576)
	m, err := ebpf.LoadPinnedMap(filepath.Join(e.PinRoot, e.TB.ServerIf, maps.MapSources), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	got := m.MaxEntries()
	m.Close()
	if got != want {
		t.Errorf("MemTotal %d kB: the sources map holds %d entries, want %d", kb, got, want)
	}

	var st struct {
		Interfaces []struct {
			KernelMemory uint64 `json:"kernel_memory_bytes"`
		} `json:"interfaces"`
	}
	if err := json.Unmarshal([]byte(e.MustCLI("status", "--json")), &st); err != nil || len(st.Interfaces) != 1 {
		t.Fatalf("status --json: %+v, %v", st, err)
	}
	cfg, diags := config.LoadWithOptions(e.CfgPath, config.Options{SkipInterfaceCheck: true}) // the interface is in the server namespace
	if diags.HasErrors() {
		t.Fatal(config.FormatDiagnostics(diags))
	}
	est, err := preflight.Estimate(desired.Sizes(cfg))
	if err != nil {
		t.Fatal(err)
	}
	if mem := float64(st.Interfaces[0].KernelMemory); mem < 0.98*float64(est.Start) || mem > 1.02*float64(est.Full) {
		t.Errorf("status: kernel memory %.0f bytes, want between %d (at load) - 2 %% and %d (full) + 2 %%", mem, est.Start, est.Full)
	}
	text := e.MustCLI("status")
	if w := fmt.Sprintf("kernel memory %.1f MiB", float64(st.Interfaces[0].KernelMemory)/(1<<20)); !strings.Contains(text, w) {
		t.Errorf("status does not say %q:\n%s", w, text)
	}
	if a.Exited() {
		t.Fatalf("agent exited: %v", a.Err)
	}
}
