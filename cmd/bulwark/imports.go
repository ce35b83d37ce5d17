package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/bulwark-filter/bulwark/agent/api"
	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/importfmt"
)

type listImportCmd struct {
	File   string   `arg:"" help:"The file to read, or - for standard input."`
	Format string   `help:"The input's format: auto (detected), plain (one address or CIDR per line, # and ; comments), ipset ('ipset save' output), nft ('nft -j list set|sets|ruleset'), crowdsec ('cscli decisions list -o json': ban decisions on an Ip or Range)." enum:"auto,plain,ipset,nft,crowdsec" default:"auto"`
	Set    []string `help:"Take only these ipset or nft sets (by name, repeatable); default: every set of addresses." placeholder:"NAME"`
	TTL    string   `help:"Remove the imported entries after this long, 1s to 365d (as in block add)." name:"ttl" placeholder:"DURATION"`
	Reason string   `help:"Why, for the audit log (at most 256 characters)."`
	DryRun bool     `help:"Print what would change, entry by entry (+ added, = already present, with its origin), and change nothing."`
	list   string
}

func (c listImportCmd) Help() string {
	return "Entries the list holds already (of any origin) stay as they are; the others are added in one write, all or " +
		"nothing, as run-time entries. At most " + fmt.Sprint(api.MaxImportCIDRs) + " entries; ranges (ipset, nft) " +
		"become the fewest CIDRs that cover them.\n\nExamples:\n" +
		"  ipset save blocklist | bulwark " + c.list + " import - --dry-run\n" +
		"  nft -j list set inet filter blocklist > set.json && bulwark " + c.list + " import set.json --reason 'from nft'\n" +
		"  cscli decisions list -o json | bulwark " + c.list + " import - --ttl 4h"
}

// readInput reads the file named (- for standard input), bounded.
func readInput(name string) ([]byte, error) {
	var r io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, usageError{err}
		}
		defer f.Close()
		r = f
	}
	b, err := importfmt.ReadAll(r, importfmt.DefaultMaxBytes)
	if err != nil {
		return nil, usageError{fmt.Errorf("%s: %w", name, err)}
	}
	return b, nil
}

func (c *listImportCmd) Run(g *cli) error {
	if c.TTL != "" {
		if _, err := api.ParseTTL(c.TTL, config.ParseDuration); err != nil {
			return usageError{err}
		}
	}
	if len(c.Reason) > api.MaxReasonLen {
		return usageError{fmt.Errorf("--reason: %d characters, at most %d", len(c.Reason), api.MaxReasonLen)}
	}
	data, err := readInput(c.File)
	if err != nil {
		return err
	}
	res, err := importfmt.Parse(data, importfmt.Format(c.Format), importfmt.Options{Sets: c.Set, MaxEntries: api.MaxImportCIDRs})
	if err != nil {
		return usageError{fmt.Errorf("%s: %w", c.File, err)}
	}
	for _, n := range res.Notes {
		fmt.Fprintf(os.Stderr, "bulwark: note: %s\n", n)
	}
	if len(res.Prefixes) == 0 {
		return usageError{fmt.Errorf("%s: no addresses or CIDRs in the %s input", c.File, res.Format)}
	}
	fmt.Fprintf(os.Stderr, "bulwark: read %d entries (%s format, %d duplicates left out)\n", len(res.Prefixes), res.Format, res.Duplicates)
	req := api.ImportRequest{CIDRs: make([]string, len(res.Prefixes)), TTL: c.TTL, Reason: c.Reason, DryRun: c.DryRun}
	for i, p := range res.Prefixes {
		req.CIDRs[i] = p.String()
	}
	rep, err := g.client().Import(context.Background(), c.list, req)
	if err != nil {
		return err
	}
	if !c.DryRun {
		fmt.Printf("added %d, already present %d\n", rep.Added, rep.Present)
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "dry run: would add %d, already present %d\n", rep.Added, rep.Present)
	for _, ch := range rep.Changes {
		if ch.Action == api.ImportPresent {
			fmt.Fprintf(&b, "= %s (%s)\n", ch.CIDR, ch.Origin)
		} else {
			fmt.Fprintf(&b, "+ %s\n", ch.CIDR)
		}
	}
	_, err = os.Stdout.WriteString(b.String())
	return err
}

type listExportCmd struct {
	Format string `help:"plain: one CIDR per line (what import reads back); json: the entries with their list, origin and time left." enum:"plain,json" default:"plain"`
	list   string
}

func (c listExportCmd) Help() string {
	return "Writes every entry in force (config, run-time, feeds) to standard output.\n\nExample:\n" +
		"  bulwark " + c.list + " export > " + c.list + ".txt && bulwark " + c.list + " import " + c.list + ".txt --dry-run"
}

func (c *listExportCmd) Run(g *cli) error {
	es, _, err := g.client().ListEntries(context.Background(), c.list)
	if err != nil {
		return err
	}
	if c.Format == "json" {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(es)
	}
	var b strings.Builder
	for _, e := range es {
		b.WriteString(e.CIDR + "\n")
	}
	_, err = os.Stdout.WriteString(b.String())
	return err
}
