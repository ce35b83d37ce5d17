// Package replay runs packet captures through a fresh copy of the datapath
// loaded with a candidate config, on capture time, and reports what the
// policy would have done: `bulwark replay`. Nothing is attached or pinned,
// so a running agent is not touched.
//
// A replay goes through four stages, each in its file: read (read.go,
// pcap.go: the captures as Ethernet frames on one timeline), datapath
// (datapath.go: the datapath filled from the config, and the scorer), run
// (run.go, pool.go: every frame through it, on one CPU or several) and
// report (report.go, dropped.go: the counts, and the dropped frames as a
// pcap).
package replay

import (
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/desired"
)

// Options say what to replay.
type Options struct {
	Config       string   // the candidate config
	Captures     []string // pcap or pcapng files, replayed in this order
	WriteDropped string   // "" or a pcap file for every dropped frame
	// CPUs caps the CPUs the replay runs frames on: 0 means all of them
	// (at most 8). The result is the same for any value (pool.go).
	CPUs int
	// Merge interleaves the captures by time instead of playing them one
	// after another: each starts at the first one's start, plus its entry
	// in Offsets (one per capture; nil: none).
	Merge   bool
	Offsets []time.Duration
	Logger  hclog.Logger
}

// Run replays the captures through a fresh copy of the datapath loaded
// with the candidate config. A config that fails validation is a
// *config.Error.
func Run(o Options) (*Report, error) {
	log := o.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	cfg, diags := config.LoadWithOptions(o.Config, config.Options{SkipInterfaceCheck: true})
	if diags.HasErrors() {
		return nil, &config.Error{Text: config.FormatDiagnostics(diags)}
	}
	want, diags := desired.Compile(cfg)
	if diags.HasErrors() {
		return nil, &config.Error{Text: config.FormatDiagnostics(diags)}
	}
	if len(o.Captures) == 0 {
		return nil, errors.New("no capture given")
	}
	if o.CPUs < 0 {
		return nil, fmt.Errorf("cpus %d: want 0 (all) or more", o.CPUs)
	}
	if o.Offsets != nil && (!o.Merge || len(o.Offsets) != len(o.Captures)) {
		return nil, fmt.Errorf("%d offsets for %d captures: with merge, give one per capture", len(o.Offsets), len(o.Captures))
	}
	for _, off := range o.Offsets {
		if off < 0 {
			return nil, fmt.Errorf("offset %s: want 0 or more", off)
		}
	}
	lay := layout{merge: o.Merge, offsets: o.Offsets}

	sc, err := scanCaptures(o.Captures, want, lay)
	if err != nil {
		return nil, err
	}
	dp, err := loadDatapath(cfg, want, sc.sizes, log)
	if err != nil {
		return nil, err
	}
	defer dp.Close()

	var dropped *droppedWriter
	if o.WriteDropped != "" {
		if dropped, err = newDroppedWriter(o.WriteDropped); err != nil {
			return nil, err
		}
		defer dropped.Close() // a second Close, after the one below, does nothing
	}
	rep := newCollector(want, dropped)
	p := newPool(dp.Datapath, workers(&want.Policy, sc.sources, o.CPUs), &want.Policy)
	log.Debug("replay", "cpus", len(p.runners), "sources", sc.sources)

	frames, stop, err := sc.stream(o.Captures, want, lay)
	if err != nil {
		return nil, err
	}
	defer stop()
	if err := runFrames(frames, p, dp, cfg.Reputation.Interval, maxSegmentSpan(&want.Policy), rep); err != nil {
		return nil, err
	}
	if dropped != nil {
		if err := dropped.Close(); err != nil {
			return nil, err
		}
	}
	r := rep.report()
	if dp.sigs != nil {
		r.Signatures = dp.sigs.signatures()
	}
	return r, nil
}
