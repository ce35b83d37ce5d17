// Package preflight checks, before anything is loaded or attached, that
// this host can run Bulwark's datapath on the configured interfaces: the
// kernel's BPF features the object uses (probed, not read from the version
// string), kernel BTF, each interface's driver and the XDP programs already
// on it, and the kernel memory the configured map sizes need against what
// the host has. Each finding is ok, warn or fail, with a fix.
package preflight

import (
	"fmt"
	"strings"

	"github.com/bulwark-filter/bulwark/loader"
)

// Status is the outcome of one check.
type Status string

// The outcomes. Fail means loading or attaching would fail (or the host
// would run out of memory); warn means Bulwark runs, but not as well as it
// could or with a risk the operator should know.
const (
	OK   Status = "ok"
	Warn Status = "warn"
	Fail Status = "fail"
)

// Check is one finding.
type Check struct {
	// Name says what was checked, e.g. "kernel" or "interface eth0: xdp programs".
	Name string `json:"name"`
	// Status is ok, warn or fail.
	Status Status `json:"status"`
	// Detail is what was found, in plain words.
	Detail string `json:"detail"`
	// Fix says what to do, for warn and fail.
	Fix string `json:"fix,omitempty"`
	// Blocking marks a failure that makes loading or attaching impossible:
	// bulwark run refuses to start on it.
	Blocking bool `json:"blocking,omitempty"`
}

// Interface is one configured interface.
type Interface struct {
	Name   string
	Attach loader.AttachMode
}

// Input is what the checks look at: the config's interfaces, pin root and
// map sizes.
type Input struct {
	Interfaces []Interface
	// PinRoot is the config's pin_dir; each interface's pins are under
	// loader.PinDir(PinRoot, name).
	PinRoot string
	Sizes   loader.Sizes
	// AttachTest attaches a program that passes every packet to each
	// interface that has no XDP program, in native mode and then generic
	// mode, and detaches it at once, to learn whether the driver supports
	// native XDP. Some drivers reset the link when a program is attached
	// in native mode, so it is only done when asked.
	AttachTest bool
}

// Report is the outcome of every check.
type Report struct {
	// Kernel is the running kernel's release (uname -r).
	Kernel string `json:"kernel"`
	// Checks are the findings, in a fixed order.
	Checks []Check `json:"checks"`
}

// Failed reports whether any check failed.
func (r *Report) Failed() bool { return r.count(Fail) > 0 }

func (r *Report) count(s Status) int {
	n := 0
	for _, c := range r.Checks {
		if c.Status == s {
			n++
		}
	}
	return n
}

// Blocking is the failed checks that make loading or attaching
// impossible.
func (r *Report) Blocking() []Check {
	var out []Check
	for _, c := range r.Checks {
		if c.Status == Fail && c.Blocking {
			out = append(out, c)
		}
	}
	return out
}

// Summary is one line: how many checks passed, warned and failed.
func (r *Report) Summary() string {
	return fmt.Sprintf("%d ok, %d warn, %d fail", r.count(OK), r.count(Warn), r.count(Fail))
}

// Text is the report for people: one line per check, its fix indented
// below it.
func (r *Report) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "kernel %s\n", r.Kernel)
	for _, c := range r.Checks {
		fmt.Fprintf(&b, "%-4s  %s: %s\n", strings.ToUpper(string(c.Status)), c.Name, c.Detail)
		if c.Fix != "" {
			fmt.Fprintf(&b, "      fix: %s\n", c.Fix)
		}
	}
	fmt.Fprintf(&b, "%s\n", r.Summary())
	return b.String()
}

// Run runs every check.
func Run(in Input) *Report {
	r := &Report{Kernel: kernelRelease()}
	r.Checks = append(r.Checks, kernelChecks()...)
	for _, i := range in.Interfaces {
		r.Checks = append(r.Checks, interfaceChecks(i, in.PinRoot, in.AttachTest)...)
	}
	r.Checks = append(r.Checks, memoryChecks(in.Sizes, len(in.Interfaces), ownPins(in))...)
	return r
}
