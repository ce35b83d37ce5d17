package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/desired"
	"github.com/bulwark-filter/bulwark/loader"
	"github.com/bulwark-filter/bulwark/loader/preflight"
)

type preflightCmd struct {
	Config     string `help:"Path of the HCL config (a file or a directory of *.hcl files): its interfaces, pin_dir and map sizes are checked." required:"" type:"path"`
	JSON       bool   `help:"Print JSON."`
	AttachTest bool   `help:"Attach a program that passes every packet to each interface that has no XDP program, in native mode (then generic if native fails), and detach it at once, to learn whether the driver supports native XDP. Some drivers reset the link when an XDP program is attached in native mode: use it before going live, not on a busy link."`
}

func (preflightCmd) Help() string {
	return "Checks that this host can run the datapath on the config's interfaces, without loading or attaching it: " +
		"the kernel version, every BPF feature the datapath uses (probed: program type, helpers, map types), bpf_link for XDP, " +
		"kernel BTF; for each interface its driver, the XDP program already attached (Bulwark's own is adopted, another one " +
		"makes the attach fail) and, with --attach-test, native XDP support; the kernel memory the configured map sizes need " +
		"against MemAvailable and the memory cgroup's limit, and RLIMIT_MEMLOCK on kernels before 5.11. Each check is ok, " +
		"warn or fail, with a fix. bulwark run runs the same checks at start (without --attach-test): it logs warnings and " +
		"failures, and refuses to start on a failure that makes loading or attaching impossible.\n\n" +
		"Exit status: 0 no check failed (perhaps with warnings), 1 a check failed or the config is invalid.\n\n" +
		"Examples:\n  bulwark preflight --config /etc/bulwark/bulwark.hcl\n  bulwark preflight --config /etc/bulwark/bulwark.hcl --attach-test --json"
}

func (c *preflightCmd) Run(g *cli) error {
	cfg, diags := config.Load(c.Config)
	if len(diags) > 0 {
		fmt.Fprintln(os.Stderr, strings.TrimRight(config.FormatDiagnostics(diags), "\n"))
	}
	if diags.HasErrors() {
		return exitError{exitFailed}
	}
	in := preflightInput(cfg, false)
	in.AttachTest = c.AttachTest
	r := preflight.Run(in)
	if c.JSON {
		out, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return err
		}
		fmt.Println(string(out))
	} else {
		fmt.Print(r.Text())
	}
	if r.Failed() {
		return exitError{exitFailed}
	}
	return nil
}

// preflightInput is what preflight checks of a config: the interfaces its
// blocks name on this host ("auto" and patterns resolved). A block that
// names none is checked under its own name (and found missing) unless
// skipMissing, which leaves it out.
func preflightInput(cfg *config.Config, skipMissing bool) preflight.Input {
	in := preflight.Input{PinRoot: cfg.PinDir, Sizes: desired.Sizes(cfg)}
	for _, i := range cfg.Interfaces {
		names, err := config.ResolveInterface(i.Name)
		if err != nil && !skipMissing {
			names = []string{i.Name}
		}
		for _, n := range names {
			in.Interfaces = append(in.Interfaces, preflight.Interface{Name: n, Attach: loader.AttachMode(i.Attach)})
		}
	}
	return in
}

// runPreflight runs the checks at the start of bulwark run: it logs every
// warning and failure, and returns an error naming the failures that make
// loading or attaching impossible, with their fixes. Interfaces that are
// not there are left out: the agent waits for them.
func runPreflight(cfg *config.Config, log hclog.Logger) error {
	r := preflight.Run(preflightInput(cfg, true))
	for _, c := range r.Checks {
		switch c.Status {
		case preflight.Warn:
			log.Warn("preflight: "+c.Name, "detail", c.Detail, "fix", c.Fix)
		case preflight.Fail:
			log.Error("preflight: "+c.Name, "detail", c.Detail, "fix", c.Fix)
		}
	}
	var errs []error
	for _, c := range r.Blocking() {
		errs = append(errs, fmt.Errorf("preflight: %s: %s; fix: %s", c.Name, c.Detail, c.Fix))
	}
	return errors.Join(errs...)
}
