package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/hashicorp/go-hclog"

	"github.com/bulwark-filter/bulwark/agent"
	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/desired"
)

type fleetAggregateCmd struct {
	Config string `help:"Path of an HCL config with a fleet block (the agent's format; its interfaces are not used): a file, or a directory whose *.hcl files are merged in lexical order." required:"" type:"path"`
}

func (fleetAggregateCmd) Help() string {
	return "Runs a fleet aggregator in the foreground (logs to stderr), without a datapath: it reads the window " +
		"summaries the agents publish (fleet detection role publish or aggregate) from the summary stream, merges " +
		"each window and writes a fleet verdict (issuer \"aggregate\") for every source seen on at least min_hosts " +
		"hosts and min_ports distinct ports fleet-wide, with the fleet block's detection settings (its role is not " +
		"used). Two aggregators write the same verdict, not two: run two for availability. Its NATS user needs " +
		"publish on $KV.<bucket>.aggregate.> and read access to the summary stream.\n\n" +
		"Example:\n  bulwark fleet aggregate --config /etc/bulwark/aggregator.hcl"
}

func (c *fleetAggregateCmd) Run(g *cli) error {
	cfg, diags := config.LoadWithOptions(c.Config, config.Options{SkipInterfaceCheck: true})
	var st *desired.State
	if !diags.HasErrors() {
		st, diags = desired.Compile(cfg)
	}
	if diags.HasErrors() {
		fmt.Fprintln(os.Stderr, strings.TrimRight(config.FormatDiagnostics(diags), "\n"))
		return exitError{exitFailed}
	}
	if st.Fleet == nil {
		return fmt.Errorf("%s: no fleet block: the aggregator needs the fleet's servers", c.Config)
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "bulwark-aggregate", Level: hclog.LevelFromString(cfg.Log.Level),
		JSONFormat: cfg.Log.Format == "json", Output: os.Stderr})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return agent.RunAggregator(ctx, st.Fleet, log)
}
