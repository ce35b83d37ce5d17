// Command bulwark is Bulwark's one binary: the agent (run) and the commands
// that operate it through its control socket.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kong"
	"github.com/hashicorp/go-hclog"

	"github.com/bulwark-filter/bulwark/agent"
	"github.com/bulwark-filter/bulwark/agent/api"
	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/desired"
	"github.com/bulwark-filter/bulwark/agent/replay"
	"github.com/bulwark-filter/bulwark/loader"
)

// cli is the command line; kong builds the parser and --help from it.
type cli struct {
	Socket string `help:"Path of the agent's control socket." default:"${socket}" type:"path"`

	Run        runCmd        `cmd:"" help:"Run the agent in the foreground (logs to stderr)."`
	Config     configCmd     `cmd:"" help:"Work with config files."`
	Status     statusCmd     `cmd:"" help:"Show interfaces, mode, counters, list sizes and verdicts."`
	Block      listCmd       `cmd:"" help:"Add, delete or list run-time block-list entries."`
	Allow      listCmd       `cmd:"" help:"Add, delete or list run-time allow-list entries."`
	Reload     reloadCmd     `cmd:"" help:"Have the agent re-read its config (as SIGHUP does) and wait for its answer; exit 1 with the diagnostics if rejected."`
	Explain    explainCmd    `cmd:"" help:"Explain a source's risk score: components, baseline, feeds, location, verdict history."`
	Why        whyCmd        `cmd:"" help:"Show which step would decide a packet from a source now: allow or block list entry, verdict, rate limits and their buckets."`
	Replay     replayCmd     `cmd:"" help:"Run a candidate config over captures through the real datapath, on capture time; show what it would do."`
	Capture    captureCmd    `cmd:"" help:"Pull live samples of dropped packets from the agent's flight recorder into a pcap file."`
	Top        topCmd        `cmd:"" help:"Live view of the busiest and riskiest sources (plain text when not a terminal)."`
	Verdicts   verdictsCmd   `cmd:"" help:"List or delete dynamic verdicts (throttle, block)."`
	Signatures signaturesCmd `cmd:"" help:"List, add, delete or explain attack signatures (masked-header rules checked before per-source state)."`
	Fleet      fleetCmd      `cmd:"" help:"Show how this agent shares verdicts with its fleet (the config's fleet block)."`
	CrowdSec   crowdSecCmd   `cmd:"" name:"crowdsec" help:"Show the CrowdSec bouncer's state (the config's crowdsec block)."`
	Detach     detachCmd     `cmd:"" help:"Remove the program and pins from an interface (works with no agent running)."`
	Version    versionCmd    `cmd:"" help:"Print the version."`

	Completion completionCmd `cmd:"" help:"Print the shell completion script for bash, zsh or fish."`
	Man        manCmd        `cmd:"" help:"Print the man page (roff), generated from the command definitions."`

	Preflight preflightCmd `cmd:"" help:"Check that this host can run the datapath on the config's interfaces: kernel, BPF features, XDP, memory."`
}

type runCmd struct {
	Config                string `help:"Path of the HCL config: a file, or a directory whose *.hcl files are merged in lexical order." required:"" type:"path"`
	RequirePersistentPins bool   `help:"Refuse to start when the pins would not outlive the agent (a bpffs of its own mount namespace, as under 'ip netns exec'); without it the agent starts and logs an error."`
}

func (runCmd) Help() string {
	return "Before loading anything it makes the checks of `bulwark preflight` (without --attach-test): it logs warnings " +
		"and failures, and exits 1 with the fix on a failure that makes loading or attaching impossible.\n\n" +
		"Example:\n  bulwark run --config /etc/bulwark/bulwark.hcl"
}

func (c *runCmd) Run(g *cli) error {
	// An interface that is not there is no error: the agent waits for it.
	cfg, diags := config.LoadWithOptions(c.Config, config.Options{SkipInterfaceCheck: true})
	level, format := "info", "text"
	if !diags.HasErrors() {
		level, format = cfg.Log.Level, cfg.Log.Format
	}
	log := hclog.New(&hclog.LoggerOptions{
		Name: "bulwark", Level: hclog.LevelFromString(level), JSONFormat: format == "json", Output: os.Stderr,
	})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if !diags.HasErrors() {
		if err := runPreflight(cfg, log); err != nil {
			return err
		}
	}
	ag := agent.New(c.Config, log)
	ag.RequirePersistentPins = c.RequirePersistentPins
	if err := ag.Run(ctx, hup); err != nil {
		return err
	}
	return nil
}

type configCmd struct {
	Check checkCmd `cmd:"" help:"Validate a config without touching the kernel; exit 1 with file:line:col errors."`
}

type checkCmd struct {
	Path           string `arg:"" help:"Config file, or a directory whose *.hcl files are merged in lexical order (as bulwark run --config takes it)." type:"path"`
	Offline        bool   `help:"Check only what the file says, not this host: skip the checks that the interfaces exist and that list files, feed files and GeoIP databases exist and can be read (files that exist are still read and checked). For validating a fleet's configs in CI on another machine."`
	SkipInterfaces bool   `help:"Do not check that the interfaces exist on this host (all other checks run)."`
}

func (checkCmd) Help() string {
	return "Checks everything the agent checks before it starts: syntax, values, limits (the number of rules, list files and feeds, list sizes " +
		"against the maps block), and, unless --offline, this host's facts: the interfaces exist, list " +
		"files, feed files and GeoIP databases can be read. Warnings (e.g. a CIDR in both allow and block) are " +
		"printed to stderr also when the config is valid; they do not change the exit status.\n\n" +
		"Exit status: 0 valid (perhaps with warnings), 1 invalid.\n\n" +
		"A directory is checked as the agent loads it: its *.hcl files merged, and a key or block set in two files is an error naming both.\n\n" +
		"Examples:\n  bulwark config check /etc/bulwark/bulwark.hcl\n  bulwark config check /etc/bulwark/conf.d\n  bulwark config check --offline fleet/web-01.hcl"
}

func (c *checkCmd) Run(g *cli) error {
	cfg, diags := config.LoadWithOptions(c.Path, config.Options{SkipInterfaceCheck: c.SkipInterfaces, Offline: c.Offline})
	if !diags.HasErrors() {
		// What the agent would refuse when it compiles the config for the datapath, and, on the host,
		// the GeoIP databases it would fail to open.
		_, compiled := desired.Compile(cfg)
		diags = append(diags, compiled...)
		if !c.Offline {
			diags = append(diags, desired.CheckHost(cfg)...)
		}
	}
	if len(diags) > 0 {
		fmt.Fprintln(os.Stderr, strings.TrimRight(config.FormatDiagnostics(diags), "\n"))
	}
	if diags.HasErrors() {
		return exitError{exitFailed}
	}
	fmt.Printf("%s: ok\n", c.Path)
	return nil
}

type statusCmd struct {
	JSON bool `help:"Print JSON."`
}

func (statusCmd) Help() string { return "Example:\n  bulwark status --json" }

func (c *statusCmd) Run(g *cli) error {
	st, raw, err := g.client().Status(context.Background())
	if err != nil {
		return err
	}
	if c.JSON {
		os.Stdout.Write(raw)
		return nil
	}
	fmt.Printf("bulwark %s, up %s, mode %s\n", st.Version, time.Duration(st.UptimeSeconds*float64(time.Second)).Round(time.Second), st.Mode)
	for _, m := range st.Missing {
		fmt.Printf("WAITING: interface %q names no interface on this host (%s); nothing is filtered until it does\n", m.Config, m.Detail)
	}
	for _, i := range st.Interfaces {
		fmt.Printf("interface %s: attached %s, %d sources tracked, kernel memory %.1f MiB\n", i.Name, i.Attach, i.TrackedSources,
			float64(i.KernelMemoryBytes)/(1<<20))
		if !i.PinsPersistent {
			fmt.Printf("  WARNING: fail-static is off, the pins will not outlive the agent: %s\n", i.PinsDetail)
		}
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACTION\tREASON\tPACKETS")
	for _, act := range sortedKeys(st.Packets) {
		for _, r := range sortedKeys(st.Packets[act]) {
			fmt.Fprintf(tw, "%s\t%s\t%d\n", act, r, st.Packets[act][r])
		}
	}
	tw.Flush()
	for _, l := range sortedKeys(st.Lists) {
		fmt.Printf("%s list: %d IPv4, %d IPv6 entries\n", l, st.Lists[l]["ipv4"], st.Lists[l]["ipv6"])
	}
	fmt.Printf("verdicts: %d block, %d throttle\n", st.Verdicts["block"], st.Verdicts["throttle"])
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

type listCmd struct {
	Add  listAddCmd  `cmd:"" help:"Add entries (CIDRs or addresses)."`
	Del  listDelCmd  `cmd:"" help:"Delete run-time entries."`
	List listListCmd `cmd:"" help:"List the entries, config and run-time."`

	Import listImportCmd `cmd:"" help:"Add the entries of a file or stdin: a plain list, ipset save, nft -j JSON or cscli decisions JSON."`
	Export listExportCmd `cmd:"" help:"Write the entries in force, as plain CIDRs or JSON."`
}

// newListCmd is the block or allow command (list is its name), so that
// its subcommands know their list and show it in their examples.
func newListCmd(list string) listCmd {
	return listCmd{Add: listAddCmd{list: list}, Del: listDelCmd{list: list}, List: listListCmd{list: list},
		Import: listImportCmd{list: list}, Export: listExportCmd{list: list}}
}

type listAddCmd struct {
	CIDRs  []string `arg:"" name:"cidr" help:"Addresses or CIDRs."`
	TTL    string   `help:"Remove the entries after this long, 1s to 365d, written as in the config: 90s, 10m, 12h, 7d, 1d12h (expiry is kept in the kernel). With --fleet: default and at most the fleet's max_ttl." name:"ttl" placeholder:"DURATION"`
	Reason string   `help:"Why, for the audit log (at most 256 characters); with --fleet it travels with the verdict."`
	Fleet  bool     `help:"Block on every host of the fleet (block only): publish a fleet verdict, applied here at once, instead of a run-time entry. Needs a fleet block whose publish includes \"cli\"; refused (exit 4) without one. Undo with 'bulwark verdicts del --fleet'."`
	list   string
}

func (c listAddCmd) Help() string {
	help := fmt.Sprintf("Example:\n  bulwark %s add 198.18.66.7 2001:2::/64 --ttl 7d --reason '%s'", c.list, map[string]string{
		"block": "scanner", "allow": "monitoring"}[c.list])
	if c.list == "block" {
		help += "\n  bulwark block add 198.18.66.7 --fleet --ttl 1h --reason 'scanner seen on edge-1'"
	}
	return help
}

func (c *listAddCmd) Run(g *cli) error {
	if err := checkCIDRs(c.CIDRs); err != nil {
		return err
	}
	if c.Fleet && c.list != "block" {
		return usageError{errors.New("--fleet is for block add only: every host keeps its own allow list")}
	}
	if c.TTL != "" {
		if _, err := api.ParseTTL(c.TTL, config.ParseDuration); err != nil {
			return usageError{err}
		}
	}
	if len(c.Reason) > api.MaxReasonLen {
		return usageError{fmt.Errorf("--reason: %d characters, at most %d", len(c.Reason), api.MaxReasonLen)}
	}
	req := api.ListRequest{CIDRs: c.CIDRs, Reason: c.Reason, TTL: c.TTL, Fleet: c.Fleet}
	out, err := g.client().AddToList(context.Background(), c.list, req)
	if err != nil {
		return err
	}
	if c.Fleet {
		fmt.Printf("published %d to the fleet\n", out.Added)
		return nil
	}
	fmt.Printf("added %d\n", out.Added)
	return nil
}

// checkCIDRs checks addresses and CIDRs as the agent will, so that a typo
// is a usage error, also when no agent runs.
func checkCIDRs(cidrs []string) error {
	if len(cidrs) > api.MaxCIDRsPerReq {
		return usageError{fmt.Errorf("%d addresses or CIDRs: at most %d at a time", len(cidrs), api.MaxCIDRsPerReq)}
	}
	for _, s := range cidrs {
		if _, err := api.ParseCIDR(s); err != nil {
			return usageError{err}
		}
	}
	return nil
}

type listDelCmd struct {
	CIDRs []string `arg:"" name:"cidr" help:"Addresses or CIDRs to delete."`
	list  string
}

func (c listDelCmd) Help() string { return "Example:\n  bulwark " + c.list + " del 198.18.66.7" }

func (c *listDelCmd) Run(g *cli) error {
	if err := checkCIDRs(c.CIDRs); err != nil {
		return err
	}
	out, err := g.client().DeleteFromList(context.Background(), c.list, api.ListRequest{CIDRs: c.CIDRs})
	if err != nil {
		return err
	}
	fmt.Printf("deleted %d\n", out.Deleted)
	return nil
}

type listListCmd struct {
	JSON bool `help:"Print JSON."`
	list string
}

func (c listListCmd) Help() string { return "Example:\n  bulwark " + c.list + " list --json" }

func (c *listListCmd) Run(g *cli) error {
	es, raw, err := g.client().ListEntries(context.Background(), c.list)
	if err != nil {
		return err
	}
	if c.JSON {
		os.Stdout.Write(raw)
		return nil
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CIDR\tLIST\tORIGIN\tEXPIRES IN")
	for _, e := range es {
		exp := "never"
		if e.ExpiresIn > 0 {
			exp = time.Duration(e.ExpiresIn * float64(time.Second)).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.CIDR, e.List, e.Origin, exp)
	}
	return tw.Flush()
}

type reloadCmd struct{}

func (reloadCmd) Help() string {
	return "Waits for the agent's answer: exit 0 when the new config is in force, 1 when the agent rejects it\n" +
		"(the running config stays), 3 when no agent answers. systemctl reload runs it.\n\n" +
		"A reload writes only what changed in the allow and block lists; a reload of an unchanged config\n" +
		"(its list files included) also reads the lists back from the kernel and repairs what another\n" +
		"process wrote there (the log says so).\n\n" +
		"Example:\n  bulwark reload"
}

func (c *reloadCmd) Run(g *cli) error {
	rep, err := g.client().Reload(context.Background())
	var re *api.ReplyError
	if errors.As(err, &re) && rep.Result == api.ReloadRejected {
		fmt.Fprintf(os.Stderr, "reload rejected; the running policy is unchanged:\n%s\n", strings.TrimRight(rep.Diagnostics, "\n"))
		return exitError{exitFailed}
	}
	if err != nil {
		return err
	}
	fmt.Println("reloaded")
	return nil
}

type detachCmd struct {
	Interface string `help:"Interface to detach from." required:""`
	PinDir    string `help:"Pin root directory (the config's pin_dir)." default:"/sys/fs/bpf/bulwark"`
}

func (detachCmd) Help() string { return "Example:\n  bulwark detach --interface eth0" }

func (c *detachCmd) Run(g *cli) error {
	if err := loader.Detach(loader.PinDir(c.PinDir, c.Interface)); err != nil {
		return err
	}
	fmt.Printf("detached from %s\n", c.Interface)
	return nil
}

type explainCmd struct {
	IP   string `arg:"" help:"Source address."`
	JSON bool   `help:"Print JSON."`
}

func (explainCmd) Help() string { return "Example:\n  bulwark explain 198.18.3.66" }

func (c *explainCmd) Run(g *cli) error {
	if _, err := api.ParseAddr(c.IP); err != nil {
		return usageError{err}
	}
	x, raw, err := g.client().Explain(context.Background(), c.IP)
	if err != nil {
		return err
	}
	if c.JSON {
		os.Stdout.Write(raw)
		return nil
	}
	from := map[string]string{api.ScoreLive: "", api.ScoreVerdict: " (as the verdict in force was issued)", api.ScoreNone: " (no score)"}[x.ScoreFrom]
	fmt.Printf("source %s: score %.1f of 100%s (throttle at %.0f, block at %.0f)\n", x.Source, x.Score, from, x.Thresholds["throttle"], x.Thresholds["block"])
	if x.Exempt {
		fmt.Println("  exempt: allow-listed or protected; never throttled or blocked")
	}
	if x.Note != "" {
		fmt.Printf("  %s\n", x.Note)
	}
	if x.Active != nil {
		fmt.Printf("  verdict in force: %s for %s since %s (score %.1f)\n", x.Active.Action, x.Active.For, x.Active.At.Format(time.RFC3339), x.Active.Score)
	}
	if f := x.Fleet; f != nil {
		fmt.Printf("  fleet: %s on %s by %s until %s: %s\n", f.Action, f.Target, f.Issuer, f.Expires.Format(time.RFC3339), f.Reason)
	}
	if len(x.Components) > 0 {
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  COMPONENT\tVALUE\tCONTRIBUTION\tOF WEIGHT")
		for _, comp := range x.Components {
			fmt.Fprintf(tw, "  %s\t%g\t%.1f\t%g\n", comp.Name, comp.Value, comp.Contribution, comp.Weight)
		}
		tw.Flush()
		for _, comp := range x.Components {
			if comp.Detail != "" {
				fmt.Printf("  %s: %s\n", comp.Name, comp.Detail)
			}
		}
	}
	fmt.Printf("  observed: %s\n", kv(x.Observed))
	fmt.Printf("  baseline (this host's median source): %s\n", kv(x.Baseline))
	for _, f := range x.Feeds {
		fmt.Printf("  in feed %s (weight %g)\n", f.Feed, f.Weight)
	}
	if x.Location != nil && (x.Location.Country != "" || x.Location.ASN != 0) {
		fmt.Printf("  location: country %q, AS%d %s\n", x.Location.Country, x.Location.ASN, x.Location.ASOrg)
	}
	for _, v := range x.History {
		fmt.Printf("  history: %s %s for %s, score %.1f, enforced %v\n", v.At.Format(time.RFC3339), v.Action, v.For, v.Score, v.Enforced)
	}
	return nil
}

func kv(m map[string]float64) string {
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s=%.4g", k, m[k]))
	}
	return strings.Join(parts, " ")
}

type verdictsCmd struct {
	List verdictsListCmd `cmd:"" help:"List the verdicts in force."`
	Del  verdictsDelCmd  `cmd:"" help:"Delete verdicts (the scorer may judge the source again)."`
}

type verdictsListCmd struct {
	JSON bool `help:"Print JSON."`
}

func (verdictsListCmd) Help() string {
	return "ORIGIN is who put the verdict in place: scorer, cli, fleet:<issuer> (the fleet node that published it), or crowdsec:<origin>/<scenario> (a CrowdSec decision).\n\n" +
		"Example:\n  bulwark verdicts list"
}

func (c *verdictsListCmd) Run(g *cli) error {
	vs, raw, err := g.client().Verdicts(context.Background())
	if err != nil {
		return err
	}
	return printTable(c.JSON, raw, vs, "SOURCE\tACTION\tORIGIN\tSCORE\tEXPIRES IN", func(v api.Verdict) []any {
		return []any{v.Source, v.Action, v.Origin, v.Score, time.Duration(v.ExpiresIn * float64(time.Second)).Round(time.Second)}
	})
}

// printTable prints raw (a JSON reply) when asJSON, else items as a table
// under header, one row of tab-separated cells each.
func printTable[T any](asJSON bool, raw []byte, items []T, header string, row func(T) []any) error {
	if asJSON {
		os.Stdout.Write(raw)
		return nil
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, it := range items {
		cells := row(it)
		for i, c := range cells {
			sep := "\t"
			if i == len(cells)-1 {
				sep = "\n"
			}
			fmt.Fprint(tw, c, sep)
		}
	}
	return tw.Flush()
}

type verdictsDelCmd struct {
	Sources []string `arg:"" name:"source" help:"Source addresses; with --fleet, the targets as 'verdicts list' or 'block add --fleet' name them (an address, an IPv6 source prefix, a blocked prefix)."`
	Fleet   bool     `help:"Also revoke the fleet's verdicts on these targets on every host: a revoke cancels every fleet verdict on the target issued before it, whoever issued it. Needs a fleet block whose publish includes \"cli\"; refused (exit 4) without one."`
}

func (verdictsDelCmd) Help() string {
	return "Example:\n  bulwark verdicts del 198.18.3.66\n  bulwark verdicts del --fleet 198.18.3.66 198.18.64.0/24"
}

func (c *verdictsDelCmd) Run(g *cli) error {
	if err := checkCIDRs(c.Sources); err != nil {
		return err
	}
	out, err := g.client().DeleteVerdicts(context.Background(), api.VerdictsRequest{Sources: c.Sources, Fleet: c.Fleet})
	if err != nil {
		return err
	}
	fmt.Printf("deleted %d\n", out.Deleted)
	return nil
}

type replayCmd struct {
	Config       string          `help:"The candidate config: a file or a directory of *.hcl files." required:"" type:"path"`
	JSON         bool            `help:"Print one JSON document."`
	WriteDropped string          `help:"Write every dropped frame, with its original timestamp, to this pcap file." name:"write-dropped" placeholder:"OUT.pcap"`
	Top          int             `help:"Sources in the text table." default:"20"`
	CPUs         int             `help:"CPUs to run frames on; 0: all (at most 8). Results are the same for any value." name:"cpus" default:"0"`
	Merge        bool            `help:"Interleave the captures by time instead of playing them one after another: each starts at the first one's start (plus its --offset), e.g. your normal traffic plus an attack."`
	Offset       []time.Duration `help:"With --merge, one per capture: how long after the first capture's start each one starts (e.g. --offset 0s --offset 10s)." name:"offset"`
	Captures     []string        `arg:"" name:"capture" help:"pcap or pcapng files (Ethernet, raw IPv4/IPv6, Linux cooked), replayed in order." type:"existingfile"`
}

func (replayCmd) Help() string {
	return "Loads a fresh copy of the datapath (nothing attached, nothing pinned: a running agent is not touched),\n" +
		"fills its maps from the config and runs every frame through it in capture order, on capture time.\n\n" +
		"With a signatures block whose detect is shadow or enforce, signature detection runs on capture time too, and the\n" +
		"signatures it would write are listed.\n\n" +
		"Examples:\n  bulwark replay --config /etc/bulwark/bulwark.hcl --write-dropped dropped.pcap incident.pcap\n" +
		"  bulwark replay --config candidate.hcl --merge --offset 0s --offset 30s normal-day.pcap syn-flood.pcap"
}

func (c *replayCmd) Run(g *cli) error {
	if c.Top < 0 {
		return usageError{fmt.Errorf("--top %d: want 0 or more", c.Top)}
	}
	if c.CPUs < 0 {
		return usageError{fmt.Errorf("--cpus %d: want 0 (all) or more", c.CPUs)}
	}
	if len(c.Offset) > 0 && (!c.Merge || len(c.Offset) != len(c.Captures)) {
		return usageError{fmt.Errorf("--offset: give one per capture, with --merge")}
	}
	rep, err := replay.Run(replay.Options{Config: c.Config, Captures: c.Captures, WriteDropped: c.WriteDropped,
		CPUs: c.CPUs, Merge: c.Merge, Offsets: c.Offset, Logger: hclog.New(&hclog.LoggerOptions{Name: "replay", Level: hclog.Warn, Output: os.Stderr})})
	var ce *config.Error
	if errors.As(err, &ce) {
		fmt.Fprintln(os.Stderr, strings.TrimRight(ce.Text, "\n"))
		return exitError{exitFailed}
	}
	if err != nil {
		return err
	}
	if c.JSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printReplay(rep, c.Top)
	return nil
}

func printReplay(rep *replay.Report, top int) {
	fmt.Printf("%d packets over %s: pass %d, drop %d, would_drop %d\n", rep.Packets, rep.Duration,
		rep.Actions["pass"], rep.Actions["drop"], rep.Actions["would_drop"])
	fmt.Print("by reason:")
	for _, r := range []string{"passed", "allowlist", "signature", "blocklist", "verdict", "ratelimit", "malformed", "non_ip"} {
		fmt.Printf(" %s %d", r, rep.Reasons[r])
	}
	fmt.Println()
	if rep.Runts > 0 {
		fmt.Printf("(%d frames shorter than an Ethernet header, counted as malformed)\n", rep.Runts)
	}
	for _, k := range sortedKeys(rep.Rules) {
		fmt.Printf("rule %s: %d over the limit\n", k, rep.Rules[k])
	}
	for _, k := range sortedKeys(rep.Lists) {
		fmt.Printf("list %s: %d hits\n", k, rep.Lists[k])
	}
	if top > 0 && len(rep.Sources) > 0 {
		fmt.Println()
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SOURCE\tPACKETS\tPASSED\tDROPPED\tBY REASON")
		for i, s := range rep.Sources {
			if i == top {
				break
			}
			var rs []string
			for _, r := range sortedKeys(s.Reasons) {
				rs = append(rs, fmt.Sprintf("%s %d", r, s.Reasons[r]))
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\n", s.Source, s.Packets, s.Passed, s.Dropped, strings.Join(rs, ", "))
		}
		tw.Flush()
		if len(rep.Sources) > top {
			fmt.Printf("(%d more sources; --json lists all)\n", len(rep.Sources)-top)
		}
	}
	if len(rep.Signatures) > 0 {
		fmt.Println("\nsignature detection wrote:")
		for _, s := range rep.Signatures {
			fmt.Printf("  %s at %s until %s (%s): %s\n    %s\n", s.Name, s.At, s.Until, s.Action, s.Match, s.Why)
		}
	}
	if len(rep.Verdicts) > 0 {
		fmt.Println("\nthe scorer would have issued:")
		for _, v := range rep.Verdicts {
			enf := ""
			if !v.Enforced {
				enf = " (shadow: not enforced)"
			}
			var cs []string
			for _, k := range sortedKeys(v.Components) {
				if v.Components[k] > 0 {
					cs = append(cs, fmt.Sprintf("%s %.1f", k, v.Components[k]))
				}
			}
			fmt.Printf("  %s %s %s for %s, score %.1f%s: %s\n", v.At, v.Action, v.Source, v.For, v.Score, enf, strings.Join(cs, ", "))
		}
	}
}

type captureCmd struct {
	Reason  string        `help:"Only this reason (blocklist, verdict, ratelimit, malformed, ...)."`
	Action  string        `help:"Only this action (drop, would_drop)."`
	Count   int           `help:"Stop after this many samples (1 to 10000)." default:"100"`
	Timeout time.Duration `help:"Stop after this long even with fewer samples (up to 5m)." default:"30s"`
	Write   string        `short:"w" help:"Write the samples to this pcap file." required:"" placeholder:"FILE"`
}

func (captureCmd) Help() string {
	return "Samples are the datapath's sampled drops (events.sample_every, events.max_per_second).\n\n" +
		"Example:\n  bulwark capture --reason ratelimit --count 50 -w ratelimited.pcap"
}

func (c *captureCmd) Run(g *cli) error {
	f := api.CaptureFilter{Reason: c.Reason, Action: c.Action}
	if err := f.Validate(); err != nil {
		return usageError{err}
	}
	if c.Count < 1 || c.Count > api.MaxCaptureCount {
		return usageError{fmt.Errorf("--count %d: want 1 to %d", c.Count, api.MaxCaptureCount)}
	}
	if c.Timeout <= 0 || c.Timeout > api.MaxCaptureTimeout {
		return usageError{fmt.Errorf("--timeout %s: want more than 0 and at most %s", c.Timeout, api.MaxCaptureTimeout)}
	}
	events, err := g.client().Capture(context.Background(), f, c.Count, c.Timeout)
	if err != nil {
		return err
	}
	out, err := os.OpenFile(c.Write, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err := api.WritePcap(out, events); err != nil {
		out.Close()
		return fmt.Errorf("write %s: %w", c.Write, err)
	}
	if err := out.Close(); err != nil {
		return err
	}
	for _, e := range events {
		fmt.Printf("%s %s\n", e.Time.Format(time.RFC3339Nano), e.Comment())
	}
	fmt.Printf("%d samples written to %s\n", len(events), c.Write)
	return nil
}

type versionCmd struct{}

func (c *versionCmd) Run() error {
	fmt.Println("bulwark", agent.Version)
	return nil
}

// Exit codes of every command (exitHelp says what they mean in --help).
const (
	exitFailed      = 1 // the command failed: an invalid or rejected config, or any other error
	exitUsage       = 2 // a bad command line or argument; nothing was sent to the agent
	exitUnreachable = 3 // no agent answers on the control socket
	exitRefused     = 4 // the agent refused the request; its reply says why
)

// exitHelp is the exit codes' part of --help; the README has the same table.
var exitHelp = fmt.Sprintf("Exit status: 0 done; %d failed (an invalid or rejected config, or another error); "+
	"%d usage error (bad command, flag or argument: nothing was sent to the agent); "+
	"%d agent not reachable on the control socket; %d request refused by the agent (the message says why).",
	exitFailed, exitUsage, exitUnreachable, exitRefused)

// exitError ends the process with a code, having printed its own message.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// ExitCode is the process's exit code.
func (e exitError) ExitCode() int { return e.code }

// usageError is a bad command line or argument, found before the agent
// is asked.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// ExitCode is the process's exit code.
func (usageError) ExitCode() int { return exitUsage }

// client is the control API's client of the socket named on the command
// line.
func (g *cli) client() *api.Client { return api.NewClient(g.Socket, 60*time.Second) }

func main() {
	c := cli{Block: newListCmd("block"), Allow: newListCmd("allow")}
	parser, err := newParser(&c)
	if err != nil {
		panic(err) // a defect of the cli struct's tags
	}
	k, err := parser.Parse(os.Args[1:])
	if err != nil {
		parser.FatalIfErrorf(usageError{err}) // prints the usage and the error, exits 2
	}
	os.Exit(exitCode(k.Run(&c, k)))
}

// newParser builds the parser of the command line c, with opts last.
func newParser(c *cli, opts ...kong.Option) (*kong.Kong, error) {
	return kong.New(c, append([]kong.Option{
		kong.Name("bulwark"),
		kong.Description("Bulwark: an XDP traffic filter with per-source rate limits, allow/block lists and verdicts.\n\n" + exitHelp),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
		kong.UsageOnError(),
		kong.Vars{"socket": config.DefaultControlSocket, "defbytes": strconv.Itoa(api.DefaultWhyBytes),
			"minbytes": strconv.Itoa(api.MinWhyBytes), "maxbytes": strconv.Itoa(api.MaxWhyBytes)},
		kong.Bind(c),
	}, opts...)...)
}

// exitCode prints err (unless the command printed its own message) and
// returns the process's exit code.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	fmt.Fprintln(os.Stderr, "bulwark:", err)
	var ec interface{ ExitCode() int }
	var ue *api.UnreachableError
	var re *api.ReplyError
	switch {
	case errors.As(err, &ec):
		return ec.ExitCode()
	case errors.As(err, &ue):
		return exitUnreachable
	case errors.As(err, &re):
		return exitRefused
	}
	return exitFailed
}

type crowdSecCmd struct {
	Status crowdSecStatusCmd `cmd:"" help:"Show whether the CrowdSec LAPI is read, the decisions held and in force, the last pull and error, and the alerts pushed."`
}

type crowdSecStatusCmd struct {
	JSON bool `help:"Print JSON."`
}

func (crowdSecStatusCmd) Help() string {
	return "Without a crowdsec block in the config the agent refuses (exit 4). When the LAPI cannot be read the " +
		"decisions applied stay in force; the next pull that works is a full (startup) pull.\n\n" +
		"Example:\n  bulwark crowdsec status\n  bulwark crowdsec status --json"
}

func (c *crowdSecStatusCmd) Run(g *cli) error {
	st, raw, err := g.client().CrowdSecStatus(context.Background())
	if err != nil {
		return err
	}
	if c.JSON {
		os.Stdout.Write(raw)
		return nil
	}
	reach := "reachable"
	if !st.Reachable {
		reach = "NOT reachable (enforcing what was applied)"
	}
	fmt.Printf("lapi %s: %s\n", st.LAPI, reach)
	fmt.Printf("decisions held %d, sources and ranges in force %d\n", st.Decisions, st.Active)
	fmt.Printf("pulls %d (startup %d, the last answered by the LAPI in %.3f s and applied in %.3f s)", st.Pulls, st.Startups,
		st.LastStartupAnswerSeconds, st.LastStartupApplySeconds)
	if !st.LastPull.IsZero() {
		fmt.Printf(", last %s", st.LastPull.Format(time.RFC3339))
	}
	fmt.Println()
	if st.Errors > 0 {
		fmt.Printf("errors %d", st.Errors)
		if st.LastError != "" {
			fmt.Printf(", last at %s: %s", st.LastErrorAt.Format(time.RFC3339), st.LastError)
		}
		fmt.Println()
	}
	if st.Source {
		fmt.Printf("source: alerts pushed %d, queued %d, dropped %d, push errors %d\n", st.AlertsPushed, st.AlertsQueued, st.AlertsDropped, st.PushErrors)
		if st.LastPushError != "" {
			fmt.Printf("last push error: %s\n", st.LastPushError)
		}
	}
	return nil
}

type fleetCmd struct {
	Status    fleetStatusCmd    `cmd:"" help:"Show the fleet connection, the last applied revision, the lag, buffered and active verdicts, and whether this agent's set matches the bucket's."`
	Aggregate fleetAggregateCmd `cmd:"" help:"Run a standalone fleet aggregator: merge the agents' window summaries and issue fleet verdicts for what no single host sees."`
}

type fleetStatusCmd struct {
	JSON bool `help:"Print JSON."`
}

func (fleetStatusCmd) Help() string {
	return "Without a fleet block in the config the agent refuses (exit 4). IN SYNC compares the digest of the verdicts " +
		"this agent applied with the digest of the bucket's current state, read fresh.\n\n" +
		"Example:\n  bulwark fleet status\n  bulwark fleet status --json"
}

func (c *fleetStatusCmd) Run(g *cli) error {
	st, raw, err := g.client().FleetStatus(context.Background())
	if err != nil {
		return err
	}
	if c.JSON {
		os.Stdout.Write(raw)
		return nil
	}
	conn := "not connected (fail-static: enforcing what it has; own verdicts buffered)"
	if st.Connected {
		conn = "connected to " + st.Server
	}
	fmt.Printf("node %s: %s\n", st.Node, conn)
	fmt.Printf("servers: %s\n", strings.Join(st.Servers, ", "))
	publishes := "nothing"
	if len(st.Publish) > 0 {
		publishes = strings.Join(st.Publish, ", ")
	}
	fmt.Printf("publishes: %s\n", publishes)
	fmt.Printf("applied revision %d of %d (lag %d)", st.AppliedRevision, st.BucketRevision, st.Lag)
	if !st.LastApplied.IsZero() {
		fmt.Printf(", last applied %s", st.LastApplied.Format(time.RFC3339))
	}
	fmt.Println()
	fmt.Printf("active fleet verdicts %d, buffered for publishing %d\n", st.Active, st.Buffered)
	switch {
	case st.BucketError != "":
		fmt.Printf("digest %s; the bucket's cannot be read: %s\n", st.Digest, st.BucketError)
	case st.InSync:
		fmt.Printf("digest %s: in sync with the bucket\n", st.Digest)
	default:
		fmt.Printf("digest %s: NOT in sync with the bucket's %s\n", st.Digest, st.BucketDigest)
	}
	return nil
}
