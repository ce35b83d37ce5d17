// Package loader loads Bulwark's XDP datapath into the kernel with the
// configured map sizes, pins its maps and link under a per-interface
// directory, adopts what an earlier run pinned, attaches with a bpf_link and
// detaches.
package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/hashicorp/go-hclog"

	"github.com/bulwark-filter/bulwark/bpf"
	"github.com/bulwark-filter/bulwark/maps"
)

// Sizes are the entry counts of every sized map.
type Sizes struct {
	Sources       uint32 // per-source state and observations (LRU)
	RuleBuckets   uint32 // per-source buckets of configured rules (LRU)
	Verdicts      uint32
	AllowHosts    uint32 // per family
	AllowPrefixes uint32 // per family
	BlockHosts    uint32 // per family
	BlockPrefixes uint32 // per family
	Classes       uint32 // class prefixes, per family
	Lists         uint32 // list ids counted in list_hits
	Aggregates    uint32 // aggregate buckets (per IPv4 /24, IPv6 /48; LRU)
	EventsBytes   uint32 // ring buffer of sampled drops; a power of two >= 4096
}

// DefaultSizes are the sizes used when the config names none. docs/operations.md's
// "Memory" table gives what each costs.
func DefaultSizes() Sizes {
	return Sizes{
		Sources:       1 << 20,
		RuleBuckets:   1 << 20,
		Verdicts:      1 << 17,
		AllowHosts:    1 << 16,
		AllowPrefixes: 1 << 14,
		BlockHosts:    1 << 20,
		BlockPrefixes: 1 << 18,
		Classes:       1 << 14,
		Lists:         1 << 10,
		Aggregates:    1 << 16,
		EventsBytes:   1 << 20,
	}
}

func (s Sizes) byMap() map[string]uint32 {
	return map[string]uint32{
		maps.MapSources:     s.Sources,
		maps.MapRuleBuckets: s.RuleBuckets,
		maps.MapVerdicts:    s.Verdicts,
		maps.MapAllowHosts4: s.AllowHosts, maps.MapAllowHosts6: s.AllowHosts,
		maps.MapAllowNets4: s.AllowPrefixes, maps.MapAllowNets6: s.AllowPrefixes,
		maps.MapBlockHosts4: s.BlockHosts, maps.MapBlockHosts6: s.BlockHosts,
		maps.MapBlockNets4: s.BlockPrefixes, maps.MapBlockNets6: s.BlockPrefixes,
		maps.MapClasses4: s.Classes, maps.MapClasses6: s.Classes,
		maps.MapListHits:   s.Lists,
		maps.MapAggBuckets: s.Aggregates,
		maps.MapEvents:     s.EventsBytes,
	}
}

// Validate checks every size is usable.
func (s Sizes) Validate() error {
	for name, n := range s.byMap() {
		if n == 0 {
			return fmt.Errorf("map %s: size 0", name)
		}
	}
	if s.EventsBytes < 4096 || s.EventsBytes&(s.EventsBytes-1) != 0 {
		return fmt.Errorf("map %s: %d bytes is not a power of two >= 4096", maps.MapEvents, s.EventsBytes)
	}
	return nil
}

// Options say how to load.
type Options struct {
	Sizes Sizes
	// ReplayClock loads the program for bulwark replay: it takes its time
	// from each frame's metadata and writes its decision there (see
	// Runner.RunAt); never for attaching.
	ReplayClock bool
	// PinDir, when set, pins every map there by name and reuses the maps
	// already pinned there: their entries, buckets and counters survive.
	PinDir string
	Logger hclog.Logger
}

// Datapath is a loaded program and its maps.
type Datapath struct {
	objs   bpf.BulwarkObjects
	Maps   *maps.Set
	pinDir string
	log    hclog.Logger
	links  []link.Link // attached without pinning: they end with Close
	replay bool        // loaded with Options.ReplayClock
}

// pinned lists the maps that are pinned (all but the object's own data
// sections).
func pinned(name string) bool { return !strings.HasPrefix(name, ".") }

// Load loads the datapath. With opts.PinDir set it adopts compatible maps
// pinned there and pins the rest; incompatible pins are an error naming them.
func Load(opts Options) (*Datapath, error) {
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if err := opts.Sizes.Validate(); err != nil {
		return nil, err
	}
	spec, err := SizedSpec(opts.Sizes)
	if err != nil {
		return nil, err
	}
	if opts.ReplayClock {
		if err := spec.Variables["replay_mode"].Set(uint32(1)); err != nil {
			return nil, fmt.Errorf("set replay clock: %w", err)
		}
	}
	var co ebpf.CollectionOptions
	if opts.PinDir != "" {
		if err := os.MkdirAll(opts.PinDir, 0o700); err != nil {
			return nil, fmt.Errorf("create pin directory: %w", err)
		}
		for name, ms := range spec.Maps {
			if pinned(name) {
				ms.Pinning = ebpf.PinByName
			}
		}
		co.Maps.PinPath = opts.PinDir
		if err := checkPins(spec, opts.PinDir); err != nil {
			return nil, err
		}
	}

	d := &Datapath{pinDir: opts.PinDir, log: log, replay: opts.ReplayClock}
	if err := spec.LoadAndAssign(&d.objs, &co); err != nil {
		return nil, explainLoadError(err, log)
	}
	if opts.PinDir == "" {
		d.Maps, err = maps.NewEmpty(&d.objs.BulwarkMaps) // nothing adopted
	} else {
		d.Maps, err = maps.New(&d.objs.BulwarkMaps)
	}
	if err != nil {
		d.objs.Close()
		return nil, err
	}
	return d, nil
}

// checkPins compares every pinned map with the spec, so an incompatible pin
// is reported by name with what differs, its cause (a map's layout changed
// by an upgrade, or a maps size changed in the config) and the command that
// removes the pins, before anything is loaded. A list cache's pin of
// another layout or size is removed instead, when nothing else differs, so
// the load pins a new, empty cache: it holds only answers the datapath
// makes again.
func checkPins(spec *ebpf.CollectionSpec, dir string) error {
	var bad, stale []string
	layout := false // a difference besides the size
	for name, ms := range spec.Maps {
		if !pinned(name) {
			continue
		}
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		info, _ := m.Info()
		var diffs []string
		if m.Type() != ms.Type {
			diffs = append(diffs, fmt.Sprintf("type %s, want %s", m.Type(), ms.Type))
		}
		if m.KeySize() != ms.KeySize {
			diffs = append(diffs, fmt.Sprintf("key size %d, want %d", m.KeySize(), ms.KeySize))
		}
		if m.ValueSize() != ms.ValueSize {
			diffs = append(diffs, fmt.Sprintf("value size %d, want %d", m.ValueSize(), ms.ValueSize))
		}
		if info != nil && info.Flags != ms.Flags {
			diffs = append(diffs, fmt.Sprintf("flags %#x, want %#x", info.Flags, ms.Flags))
		}
		layout = layout || len(diffs) > 0
		if m.MaxEntries() != ms.MaxEntries {
			diffs = append(diffs, fmt.Sprintf("%d entries, want %d", m.MaxEntries(), ms.MaxEntries))
		}
		m.Close()
		switch {
		case len(diffs) == 0:
		case name == maps.MapAllowCache || name == maps.MapBlockCache:
			// Answers the datapath makes again: replaced, not adopted.
			stale = append(stale, filepath.Join(dir, name))
		default:
			bad = append(bad, fmt.Sprintf("%s (%s)", name, strings.Join(diffs, ", ")))
		}
	}
	if len(bad) == 0 {
		for _, p := range stale {
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("replace list cache pin: %w", err)
			}
		}
		return nil
	}
	cause := "a size in the config's maps block differs from the pinned maps' (set it back, or remove them)"
	if layout {
		cause = "this build lays a map out differently from the build that pinned it (an upgrade across a change of " +
			"the map's key or value): they cannot be adopted"
	}
	// The agent pins under <pin_dir>/<interface>: the command for this directory.
	return fmt.Errorf("pinned maps in %s do not match this build and config: %s; %s; "+
		"`bulwark detach --interface %s --pin-dir %s` removes the program and its pins (run-time entries and counters "+
		"are lost; the interface is unfiltered until the agent starts again)",
		dir, strings.Join(bad, "; "), cause, filepath.Base(dir), filepath.Dir(dir))
}

// explainLoadError shows a verifier rejection's head and tail, and all of it
// at debug level.
func explainLoadError(err error, log hclog.Logger) error {
	var ve *ebpf.VerifierError
	if !errors.As(err, &ve) {
		return fmt.Errorf("load datapath: %w", err)
	}
	lines := ve.Log
	log.Debug("verifier log", "log", strings.Join(lines, "\n"))
	const keep = 20
	if len(lines) > 2*keep {
		cut := len(lines) - 2*keep
		lines = append(append(lines[:keep:keep], fmt.Sprintf("... %d lines omitted (all at log level debug) ...", cut)), lines[len(lines)-keep:]...)
	}
	return fmt.Errorf("the kernel's verifier rejected the datapath: %v\n%s", ve.Cause, strings.Join(lines, "\n"))
}

// Run passes one frame through the program (BPF_PROG_TEST_RUN) and returns
// the XDP verdict.
func (d *Datapath) Run(frame []byte) (uint32, error) {
	ret, err := d.objs.Bulwark.Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		return 0, fmt.Errorf("test run: %w", err)
	}
	return ret, nil
}

// RunAt passes one frame through a program loaded for replay at time now
// (ns on the datapath's clock) and returns its decision and XDP verdict;
// see Runner.RunAt.
func (d *Datapath) RunAt(frame []byte, now uint64) (maps.Decision, uint32, error) {
	return d.NewRunner().RunAt(frame, now)
}

// Program is the XDP program, for attaching and benchmarks.
func (d *Datapath) Program() *ebpf.Program { return d.objs.Bulwark }

// PinDir is where the maps are pinned, "" if not.
func (d *Datapath) PinDir() string { return d.pinDir }

// Close releases this process's handles. Pinned maps and links stay, and
// with them an attached program.
func (d *Datapath) Close() error {
	var errs []error
	for _, l := range d.links {
		errs = append(errs, l.Close())
	}
	errs = append(errs, d.objs.Close())
	return errors.Join(errs...)
}
