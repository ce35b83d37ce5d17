package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/bulwark-filter/bulwark/agent/api"
)

type signaturesCmd struct {
	List    sigListCmd    `cmd:"" help:"List the attack signatures in the datapath with their counters."`
	Add     sigAddCmd     `cmd:"" help:"Add an attack signature (or replace one added before under the same name)."`
	Del     sigDelCmd     `cmd:"" help:"Delete an attack signature added with 'signatures add' or found by detection."`
	Explain sigExplainCmd `cmd:"" help:"Show one signature: its fields, action, counters, coverage and collateral estimates, start and expiry."`
}

type sigListCmd struct {
	JSON bool `help:"Print JSON."`
}

func (sigListCmd) Help() string {
	return "ORIGIN is config (a signature block), cli (signatures add) or detect. DROPPED counts would-drops in monitor " +
		"mode; a count action (and detection in shadow mode) only matches.\n\nExample:\n  bulwark signatures list"
}

func (c *sigListCmd) Run(g *cli) error {
	ss, raw, err := g.client().Signatures(context.Background())
	if err != nil {
		return err
	}
	return printTable(c.JSON, raw, ss, "NAME\tORIGIN\tACTION\tMATCHED\tDROPPED\tEXPIRES IN\tMATCH", func(s api.Signature) []any {
		exp := "never"
		if s.Expires != nil {
			exp = time.Until(*s.Expires).Round(time.Second).String()
		}
		return []any{s.Name, s.Origin, action(s), s.Matched, s.Dropped, exp, s.Match}
	})
}

func action(s api.Signature) string {
	if s.Action == "limit" {
		return fmt.Sprintf("limit %d/s burst %d", s.PPS, s.Burst)
	}
	return s.Action
}

type sigAddCmd struct {
	Name   string   `arg:"" help:"Name, ^[a-z0-9][a-z0-9_.-]{0,31}$."`
	Match  []string `arg:"" help:"key=value words, all must hold: protocol, dst_port, src_port, ttl, ip_length, df, ip_id_zero, tcp_flags, window, tcp_options_length, icmp_type, data (see docs/datapath.md, 'Attack signatures')."`
	Action string   `help:"drop, limit (with --pps and --burst: one bucket for every matching packet) or count." default:"drop" enum:"drop,limit,count"`
	PPS    uint64   `help:"Packets per second of a limit."`
	Burst  uint64   `help:"Burst of a limit in packets (default: --pps)."`
	TTL    string   `help:"Delete it after this long (e.g. 10m, 1h); default never."`
}

func (sigAddCmd) Help() string {
	return "Examples:\n  bulwark signatures add syn80 protocol=tcp dst_port=80 tcp_flags=syn ttl=240-255 tcp_options_length=0 --ttl 1h\n" +
		"  bulwark signatures add dns-flood protocol=udp dst_port=53 ip_length=60-80 ttl=50-60 --action limit --pps 500"
}

func (c *sigAddCmd) Run(g *cli) error {
	s, err := g.client().AddSignature(context.Background(), api.SignatureRequest{Name: c.Name,
		Match: strings.Join(c.Match, " "), Action: c.Action, PPS: c.PPS, Burst: c.Burst, TTL: c.TTL})
	if err != nil {
		return err
	}
	fmt.Printf("added %s: %s %s\n", s.Name, action(s), s.Match)
	return nil
}

type sigDelCmd struct {
	Name string `arg:"" help:"The signature's name."`
}

func (sigDelCmd) Help() string { return "Example:\n  bulwark signatures del syn80" }

func (c *sigDelCmd) Run(g *cli) error {
	d, err := g.client().DeleteSignature(context.Background(), c.Name)
	if err != nil {
		return err
	}
	if d.Deleted == 0 {
		return fmt.Errorf("no signature %s", c.Name)
	}
	fmt.Printf("deleted %s\n", c.Name)
	return nil
}

type sigExplainCmd struct {
	Name string `arg:"" help:"The signature's name."`
}

func (sigExplainCmd) Help() string { return "Example:\n  bulwark signatures explain detect-tcp-80-1" }

func (c *sigExplainCmd) Run(g *cli) error {
	ss, _, err := g.client().Signatures(context.Background())
	if err != nil {
		return err
	}
	for _, s := range ss {
		if s.Name != c.Name {
			continue
		}
		fmt.Printf("signature %s (from %s)\n  action:   %s\n  added:    %s\n", s.Name, s.Origin, action(s), s.Added.Format(time.RFC3339))
		if s.Expires != nil {
			fmt.Printf("  expires:  %s (in %s)\n", s.Expires.Format(time.RFC3339), time.Until(*s.Expires).Round(time.Second))
		} else {
			fmt.Println("  expires:  never")
		}
		fmt.Println("  matches every packet with:")
		for _, w := range strings.Fields(s.Match) {
			fmt.Printf("    %s\n", w)
		}
		fmt.Printf("  matched %d packets, dropped %d\n", s.Matched, s.Dropped)
		if s.Coverage != nil && s.Collateral != nil {
			fmt.Printf("  coverage: %.1f%% of the attack sample; collateral: %.2f%% of the pre-attack sample\n",
				100**s.Coverage, 100**s.Collateral)
		}
		if s.Why != "" {
			fmt.Printf("  why:      %s\n", s.Why)
		}
		return nil
	}
	return fmt.Errorf("no signature %s", c.Name)
}
