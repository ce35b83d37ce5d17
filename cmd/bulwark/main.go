// Command bulwark is Bulwark's one binary: the agent (run) and the commands
// that operate it through its control socket.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
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
	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/recorder"
	"github.com/bulwark-filter/bulwark/agent/replay"
	"github.com/bulwark-filter/bulwark/agent/reputation"
	"github.com/bulwark-filter/bulwark/loader"
)

// cli is the command line; kong builds the parser and --help from it.
type cli struct {
	Socket string `help:"Path of the agent's control socket." default:"/run/bulwark/bulwark.sock" type:"path"`

	Run      runCmd      `cmd:"" help:"Run the agent in the foreground (logs to stderr)."`
	Config   configCmd   `cmd:"" help:"Work with config files."`
	Status   statusCmd   `cmd:"" help:"Show interfaces, mode, counters, list sizes and verdicts."`
	Block    listCmd     `cmd:"" help:"Add, delete or list run-time block-list entries."`
	Allow    listCmd     `cmd:"" help:"Add, delete or list run-time allow-list entries."`
	Reload   reloadCmd   `cmd:"" help:"Re-read the config (same as SIGHUP); prints the diagnostics if rejected."`
	Explain  explainCmd  `cmd:"" help:"Explain a source's risk score: components, baseline, feeds, location, verdict history."`
	Replay   replayCmd   `cmd:"" help:"Run a candidate config over captures through the real datapath, on capture time; show what it would do."`
	Capture  captureCmd  `cmd:"" help:"Pull live samples of dropped packets from the agent's flight recorder into a pcap file."`
	Top      topCmd      `cmd:"" help:"Live view of the busiest and riskiest sources (plain text when not a terminal)."`
	Verdicts verdictsCmd `cmd:"" help:"List or delete dynamic verdicts (throttle, block)."`
	Detach   detachCmd   `cmd:"" help:"Remove the program and pins from an interface (works with no agent running)."`
	Version  versionCmd  `cmd:"" help:"Print the version."`
}

type runCmd struct {
	Config                string `help:"Path of the HCL config." required:"" type:"existingfile"`
	RequirePersistentPins bool   `help:"Refuse to start when the pins would not outlive the agent (a bpffs of its own mount namespace, as under 'ip netns exec'); without it the agent starts and logs an error."`
}

func (runCmd) Help() string {
	return "Example:\n  bulwark run --config /etc/bulwark/bulwark.hcl"
}

func (c *runCmd) Run(g *cli) error {
	cfg, diags := config.Load(c.Config)
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
	Path           string `arg:"" help:"Config file." type:"path"`
	SkipInterfaces bool   `help:"Do not check that the interfaces exist on this host."`
}

func (checkCmd) Help() string {
	return "Example:\n  bulwark config check /etc/bulwark/bulwark.hcl"
}

func (c *checkCmd) Run(g *cli) error {
	_, diags := config.LoadWithOptions(c.Path, config.Options{SkipInterfaceCheck: c.SkipInterfaces})
	if diags.HasErrors() {
		fmt.Fprintln(os.Stderr, strings.TrimRight(config.FormatDiagnostics(diags), "\n"))
		return exitError{1}
	}
	fmt.Printf("%s: ok\n", c.Path)
	return nil
}

type statusCmd struct {
	JSON bool `help:"Print JSON."`
}

func (statusCmd) Help() string { return "Example:\n  bulwark status --json" }

func (c *statusCmd) Run(g *cli) error {
	var st agent.Status
	raw, err := call(g.Socket, "GET", "/v1/status", nil, &st)
	if err != nil {
		return err
	}
	if c.JSON {
		os.Stdout.Write(raw)
		return nil
	}
	fmt.Printf("bulwark %s, up %s, mode %s\n", st.Version, time.Duration(st.UptimeSeconds*float64(time.Second)).Round(time.Second), st.Mode)
	for _, i := range st.Interfaces {
		fmt.Printf("interface %s: attached %s, %d sources tracked\n", i.Name, i.Attach, i.TrackedSources)
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
}

// listName is the command's parent: block or allow.
func listName(k *kong.Context) string {
	for _, p := range k.Path {
		if p.Command != nil && (p.Command.Name == "block" || p.Command.Name == "allow") {
			return p.Command.Name
		}
	}
	return ""
}

type listAddCmd struct {
	CIDRs  []string `arg:"" name:"cidr" help:"Addresses or CIDRs."`
	TTL    string   `help:"Remove the entries after this long, 1s to 8760h, e.g. 10m (expiry is kept in the kernel)." name:"ttl" placeholder:"DURATION"`
	Reason string   `help:"Why, for the audit log."`
}

func (listAddCmd) Help() string {
	return "Example:\n  bulwark block add 198.18.66.7 2001:2::/64 --ttl 10m --reason 'scanner'"
}

func (c *listAddCmd) Run(g *cli, k *kong.Context) error {
	req := agent.ListRequest{CIDRs: c.CIDRs, Reason: c.Reason, TTL: c.TTL}
	var out map[string]int
	if _, err := call(g.Socket, "POST", "/v1/lists/"+listName(k), req, &out); err != nil {
		return err
	}
	fmt.Printf("added %d\n", out["added"])
	return nil
}

type listDelCmd struct {
	CIDRs []string `arg:"" name:"cidr" help:"Addresses or CIDRs to delete."`
}

func (listDelCmd) Help() string { return "Example:\n  bulwark block del 198.18.66.7" }

func (c *listDelCmd) Run(g *cli, k *kong.Context) error {
	var out map[string]int
	if _, err := call(g.Socket, "DELETE", "/v1/lists/"+listName(k), agent.ListRequest{CIDRs: c.CIDRs}, &out); err != nil {
		return err
	}
	fmt.Printf("deleted %d\n", out["deleted"])
	return nil
}

type listListCmd struct {
	JSON bool `help:"Print JSON."`
}

func (listListCmd) Help() string { return "Example:\n  bulwark block list --json" }

func (c *listListCmd) Run(g *cli, k *kong.Context) error {
	var es []agent.ListEntry
	raw, err := call(g.Socket, "GET", "/v1/lists/"+listName(k), nil, &es)
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

func (reloadCmd) Help() string { return "Example:\n  bulwark reload" }

func (c *reloadCmd) Run(g *cli) error {
	var rep agent.ReloadReply
	_, err := call(g.Socket, "POST", "/v1/reload", struct{}{}, &rep)
	var ae *apiError
	if errors.As(err, &ae) && rep.Result == "rejected" {
		fmt.Fprintf(os.Stderr, "reload rejected; the running policy is unchanged:\n%s\n", strings.TrimRight(rep.Diagnostics, "\n"))
		return exitError{1}
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
	var x reputation.Explanation
	raw, err := call(g.Socket, "GET", "/v1/explain/"+url.PathEscape(c.IP), nil, &x)
	if err != nil {
		return err
	}
	if c.JSON {
		os.Stdout.Write(raw)
		return nil
	}
	fmt.Printf("source %s: score %.1f of 100 (throttle at %.0f, block at %.0f)\n", x.Source, x.Score, x.Thresholds["throttle"], x.Thresholds["block"])
	switch {
	case x.Exempt:
		fmt.Println("  exempt: allow-listed or protected; never throttled or blocked")
	case !x.Tracked:
		fmt.Println("  not tracked: no traffic from it reached the rate limiter recently")
	}
	if x.Active != nil {
		fmt.Printf("  verdict in force: %s for %s since %s (score %.1f)\n", x.Active.Action, x.Active.For, x.Active.At.Format(time.RFC3339), x.Active.Score)
	}
	if len(x.Components) > 0 {
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  COMPONENT\tVALUE\tCONTRIBUTION\tOF WEIGHT")
		for _, comp := range x.Components {
			fmt.Fprintf(tw, "  %s\t%g\t%.1f\t%g\n", comp.Name, comp.Value, comp.Contribution, comp.Weight)
		}
		tw.Flush()
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

func (verdictsListCmd) Help() string { return "Example:\n  bulwark verdicts list" }

func (c *verdictsListCmd) Run(g *cli) error {
	var vs []agent.VerdictView
	raw, err := call(g.Socket, "GET", "/v1/verdicts", nil, &vs)
	if err != nil {
		return err
	}
	if c.JSON {
		os.Stdout.Write(raw)
		return nil
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tACTION\tORIGIN\tSCORE\tEXPIRES IN")
	for _, v := range vs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", v.Source, v.Action, v.Origin, v.Score,
			time.Duration(v.ExpiresIn*float64(time.Second)).Round(time.Second))
	}
	return tw.Flush()
}

type verdictsDelCmd struct {
	Sources []string `arg:"" name:"source" help:"Source addresses."`
}

func (verdictsDelCmd) Help() string { return "Example:\n  bulwark verdicts del 198.18.3.66" }

func (c *verdictsDelCmd) Run(g *cli) error {
	var out map[string]int
	if _, err := call(g.Socket, "DELETE", "/v1/verdicts", agent.VerdictsRequest{Sources: c.Sources}, &out); err != nil {
		return err
	}
	fmt.Printf("deleted %d\n", out["deleted"])
	return nil
}

type replayCmd struct {
	Config       string   `help:"The candidate config." required:"" type:"existingfile"`
	JSON         bool     `help:"Print one JSON document."`
	WriteDropped string   `help:"Write every dropped frame, with its original timestamp, to this pcap file." name:"write-dropped" placeholder:"OUT.pcap"`
	Top          int      `help:"Sources in the text table." default:"20"`
	CPUs         int      `help:"CPUs to run frames on; 0: all (at most 8). Results are the same for any value." name:"cpus" default:"0"`
	Captures     []string `arg:"" name:"capture" help:"pcap or pcapng files (Ethernet, raw IPv4/IPv6, Linux cooked), replayed in order." type:"existingfile"`
}

func (replayCmd) Help() string {
	return "Loads a fresh copy of the datapath (nothing attached, nothing pinned: a running agent is not touched),\n" +
		"fills its maps from the config and runs every frame through it in capture order, on capture time.\n\n" +
		"Example:\n  bulwark replay --config /etc/bulwark/bulwark.hcl --write-dropped dropped.pcap incident.pcap"
}

func (c *replayCmd) Run(g *cli) error {
	if c.Top < 0 {
		return fmt.Errorf("--top %d: want 0 or more", c.Top)
	}
	if c.CPUs < 0 {
		return fmt.Errorf("--cpus %d: want 0 (all) or more", c.CPUs)
	}
	rep, err := replay.Run(replay.Options{Config: c.Config, Captures: c.Captures, WriteDropped: c.WriteDropped,
		CPUs: c.CPUs, Logger: hclog.New(&hclog.LoggerOptions{Name: "replay", Level: hclog.Warn, Output: os.Stderr})})
	var ce *config.Error
	if errors.As(err, &ce) {
		fmt.Fprintln(os.Stderr, strings.TrimRight(ce.Text, "\n"))
		return exitError{1}
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
	for _, r := range []string{"passed", "allowlist", "blocklist", "verdict", "ratelimit", "malformed", "non_ip"} {
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
	q := url.Values{}
	q.Set("count", strconv.Itoa(c.Count))
	q.Set("timeout", c.Timeout.String())
	if c.Reason != "" {
		q.Set("reason", c.Reason)
	}
	if c.Action != "" {
		q.Set("action", c.Action)
	}
	var events []recorder.Event
	if _, err := call(g.Socket, "GET", "/v1/capture?"+q.Encode(), nil, &events); err != nil {
		return err
	}
	f, err := os.OpenFile(c.Write, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err := recorder.WritePcap(f, events); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", c.Write, err)
	}
	if err := f.Close(); err != nil {
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

// exitError ends the process with a code, having printed its own message.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// apiError is an error reply of the control API.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return fmt.Sprintf("%s (HTTP %d)", e.msg, e.status) }

// call does one control API request over the unix socket. out receives
// the reply body (also on errors with a JSON body); raw is returned too.
func call(socket, method, path string, in, out any) ([]byte, error) {
	client := &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}},
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://bulwark"+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w (is the agent running? is this root?)", socket, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("read reply: %w", err)
	}
	if resp.StatusCode >= 300 {
		var e agent.APIError
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return raw, &apiError{resp.StatusCode, e.Error}
		}
		if out != nil {
			_ = json.Unmarshal(raw, out)
		}
		return raw, &apiError{resp.StatusCode, strings.TrimSpace(string(raw))}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return raw, fmt.Errorf("bad reply: %w", err)
		}
	}
	return raw, nil
}

func main() {
	var c cli
	k := kong.Parse(&c,
		kong.Name("bulwark"),
		kong.Description("Bulwark: an XDP traffic filter with per-source rate limits, allow/block lists and verdicts."),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
		kong.UsageOnError(),
		kong.Bind(&c),
	)
	err := k.Run(&c, k)
	var ee exitError
	if errors.As(err, &ee) {
		os.Exit(ee.code)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bulwark:", err)
		os.Exit(1)
	}
}
