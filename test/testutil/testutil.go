// Package testutil holds what Bulwark's privileged tests share: the root
// check and loading the real datapath with a policy.
package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/bulwark-filter/bulwark/loader"
	"github.com/bulwark-filter/bulwark/maps"
)

// RequireRoot skips the test, loudly, when not running as root: loading
// BPF programs and making namespaces needs it. CI runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIP: needs root (BPF and network namespaces); run `sudo make test`")
	}
}

// SmallSizes are map sizes that load fast in tests.
func SmallSizes() loader.Sizes {
	return loader.Sizes{
		Sources: 4096, RuleBuckets: 4096, Verdicts: 1024,
		AllowHosts: 1024, AllowPrefixes: 1024, BlockHosts: 1024, BlockPrefixes: 1024,
		Classes: 256, Lists: 64, Aggregates: 1024, EventsBytes: 1 << 16,
	}
}

// PinRoot is a fresh directory under /sys/fs/bpf (bpffs mounted there if
// it is not), removed with what it holds when the test ends.
func PinRoot(t testing.TB) string {
	t.Helper()
	if err := loader.EnsureBPFFS("/sys/fs/bpf"); err != nil {
		t.Fatal(err)
	}
	root, err := os.MkdirTemp("/sys/fs/bpf", "bulwark-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	return root
}

// Setup is what Load writes into a fresh datapath.
type Setup struct {
	Sizes       loader.Sizes // zero: SmallSizes
	ReplayClock bool         // loaded for replay: time comes with each frame (RunAt)
	Policy      maps.Policy
	Allow       []maps.Entry
	Block       []maps.Entry
}

// Load loads the real datapath (nothing attached, nothing pinned), applies
// the setup and closes it when the test ends.
func Load(t testing.TB, s Setup) *loader.Datapath {
	t.Helper()
	RequireRoot(t)
	if s.Sizes == (loader.Sizes{}) {
		s.Sizes = SmallSizes()
	}
	d, err := loader.Load(loader.Options{Sizes: s.Sizes, ReplayClock: s.ReplayClock})
	if err != nil {
		t.Fatalf("load datapath: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	if err := d.Maps.ApplyPolicy(&s.Policy); err != nil {
		t.Fatalf("apply policy: %v", err)
	}
	if len(s.Allow) > 0 {
		if err := d.Maps.Allow.Add(s.Allow); err != nil {
			t.Fatalf("allow list: %v", err)
		}
	}
	if len(s.Block) > 0 {
		if err := d.Maps.Block.Add(s.Block); err != nil {
			t.Fatalf("block list: %v", err)
		}
	}
	return d
}

// BuildBulwark builds cmd/bulwark into dir the way `make build` does
// (without cgo, so the agent can drop capabilities on every thread) and
// returns the binary's path. repo is the repository root, relative to the
// calling test's directory.
func BuildBulwark(repo, dir string) (string, error) { return BuildCmd(repo, dir, "./cmd/bulwark") }

// BuildCmd builds the command package pkg (relative to repo, e.g.
// ./cmd/bulwark) into dir, without cgo, and returns the binary's path (the
// package's last element).
func BuildCmd(repo, dir, pkg string) (string, error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = "/usr/local/go/bin/go"
	}
	bin := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command(gobin, "build", "-o", bin, pkg)
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %v\n%s", pkg, err, out)
	}
	return bin, nil
}

// PinOldSources pins in dir a sources map as an older build left it: the
// type, key and entries of sizes, its value 80 bytes shorter (the builds
// before the scan sketches and UDP sameness: 112 bytes, 192 since). It
// returns the old value size.
func PinOldSources(t testing.TB, dir string, sizes loader.Sizes) uint32 {
	t.Helper()
	spec, err := loader.SizedSpec(sizes)
	if err != nil {
		t.Fatal(err)
	}
	old := spec.Maps[maps.MapSources].Copy()
	old.ValueSize -= 80
	PinMap(t, dir, old)
	return old.ValueSize
}

// PinMap creates a map as spec says and pins it in dir under its name, as
// an older build would have left it.
func PinMap(t testing.TB, dir string, spec *ebpf.MapSpec) {
	t.Helper()
	spec = spec.Copy()
	spec.Pinning = ebpf.PinByName
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	m, err := ebpf.NewMapWithOptions(spec, ebpf.MapOptions{PinPath: dir})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
}

// PinnedLoader returns a function that loads the datapath (SmallSizes)
// over one fresh pin directory, closed when the test ends: each call is
// another process over the same pinned maps.
func PinnedLoader(t testing.TB) func() *loader.Datapath {
	t.Helper()
	RequireRoot(t)
	dir := PinRoot(t)
	return func() *loader.Datapath {
		t.Helper()
		d, err := loader.Load(loader.Options{Sizes: SmallSizes(), PinDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return d
	}
}
