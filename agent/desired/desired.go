// Package desired compiles a config into what it asks of the datapath: the
// policy, the allow and block entries under their list ids, the maps'
// sizes, and the scorer's settings. It owns the datapath's defaults (the
// map sizes a config leaves unset) and limits (rules, list ids, what each
// map holds), and refuses a config past them with a diagnostic at its
// position. The agent writes the state into the kernel (and reconciles it
// on a reload); replay loads it into a private copy of the datapath;
// `bulwark config check` compiles it to refuse what the agent refuses.
// None of them compiles a config any other way.
package desired

import (
	"path/filepath"

	"github.com/hashicorp/hcl/v2"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/listset"
	"github.com/bulwark-filter/bulwark/loader"
	"github.com/bulwark-filter/bulwark/maps"
)

// Limits the datapath puts on a config, owned by the maps and the loader.
var (
	// MaxListFiles is how many list files the allow and block blocks may name together: one list id each.
	MaxListFiles = maps.FirstFeedList - maps.FirstFileList
	// MaxBlockFeeds is how many feeds may have action "block": one list id each.
	MaxBlockFeeds = int(loader.DefaultSizes().Lists) - maps.FirstFeedList
)

// List ids. Runtime entries (the CLI and API) and config entries are kept
// apart by id: a config reconcile never deletes a runtime entry.
const (
	// ListRuntimeAllow holds allow entries added at run time.
	ListRuntimeAllow uint32 = 0
	// ListRuntimeBlock holds block entries added at run time.
	ListRuntimeBlock uint32 = 1
	// ListConfigAllow holds the config's inline allow CIDRs.
	ListConfigAllow uint32 = 2
	// ListConfigBlock holds the config's inline block CIDRs.
	ListConfigBlock uint32 = 3
	// ListFleetBlock holds the fleet's blocks on prefixes wider than one
	// source (written by the fleet's applier, with their expiry).
	ListFleetBlock uint32 = 4
	// ListCrowdSecBlock holds CrowdSec's range decisions (written by the
	// crowdsec bouncer, with their expiry).
	ListCrowdSecBlock uint32 = 5
)

// List files get ids from maps.FirstFileList (allow files first, then
// block files, in config order), block feeds from maps.FirstFeedList;
// config reconciles leave ids at or above maps.FirstFeedList to the
// feeds, as they leave the run-time ids to the CLI.

// State is what a config asks of the datapath.
type State struct {
	Policy    maps.Policy
	Allow     listset.Set // each prefix on its list id
	Block     listset.Set
	ListNames map[uint32]string
	FeedIDs   map[string]uint32 // list id of each block feed
	Sizes     loader.Sizes
	// Fleet is the fleet block's settings; nil without one.
	Fleet *Fleet
	// Signatures are the config's signature blocks, in config order.
	Signatures []NamedSignature
	// CrowdSec is the crowdsec block's settings; nil without one.
	CrowdSec *CrowdSec
}

func limitFrom(l config.Limit) maps.Limit {
	return maps.Limit{PPS: l.PPS, Burst: l.Burst, BytesPerSec: l.BytesPerSec, ByteBurst: l.ByteBurst}
}

// Sizes maps the config's map sizes to the loader's, the one place that
// does: this host's default (HostSizes) for each size the config leaves
// unset (zero).
func Sizes(c *config.Config) loader.Sizes {
	return SizesOver(c, HostSizes())
}

// SizesOver is Sizes with the defaults base: the config's sizes where it
// sets them, base's elsewhere.
func SizesOver(c *config.Config, s loader.Sizes) loader.Sizes {
	m := c.Maps
	for _, f := range []struct{ dst, v *uint32 }{
		{&s.Sources, &m.Sources}, {&s.RuleBuckets, &m.RuleBuckets}, {&s.Verdicts, &m.Verdicts},
		{&s.AllowHosts, &m.AllowHosts}, {&s.AllowPrefixes, &m.AllowPrefixes},
		{&s.BlockHosts, &m.BlockHosts}, {&s.BlockPrefixes, &m.BlockPrefixes},
		{&s.Classes, &m.Classes}, {&s.Aggregates, &m.Aggregates},
	} {
		if *f.v != 0 {
			*f.dst = *f.v
		}
	}
	if m.EventsRingKiB != 0 {
		s.EventsBytes = m.EventsRingKiB * 1024
	}
	return s
}

// Compile compiles a valid config (one config.Load returned without
// errors) into the datapath's desired state. It refuses, with error
// diagnostics at the config's positions, what the datapath cannot hold:
// more rules than maps.MaxRules, more list files or block feeds than there
// are list ids, more entries than a list's or the classes' maps hold, more
// verdicts than the verdict map holds. On errors the state is nil.
func Compile(c *config.Config) (*State, hcl.Diagnostics) {
	d := &State{
		ListNames: map[uint32]string{
			ListRuntimeAllow: "runtime-allow", ListRuntimeBlock: "runtime-block",
			ListConfigAllow: "allow", ListConfigBlock: "block", ListFleetBlock: "fleet-block",
			ListCrowdSecBlock: "crowdsec",
		},
		Sizes: Sizes(c),
	}
	d.Allow, d.Block = compileLists(c, d.ListNames)
	diags := checkLimits(c, d.Sizes, d.Allow, d.Block)
	var fleetDiags hcl.Diagnostics
	d.Fleet, fleetDiags = compileFleet(c, d.Sizes.Verdicts)
	diags = append(diags, fleetDiags...)
	var sigDiags hcl.Diagnostics
	d.Signatures, sigDiags = compileSignatures(c)
	diags = append(diags, sigDiags...)
	var csDiags hcl.Diagnostics
	d.CrowdSec, csDiags = compileCrowdSec(c, d.Sizes.Verdicts)
	if diags = append(diags, csDiags...); diags.HasErrors() {
		return nil, diags
	}
	p := &d.Policy
	if c.Mode == "monitor" {
		p.Mode = maps.ModeMonitor
	}
	p.MalformedPass = c.Malformed == "pass"
	p.IPv6Prefix = c.Limits.IPv6Prefix
	p.ThrottleMultiplier = c.Limits.ThrottleMultiplier
	p.ScanWindow = c.Reputation.ScanWindow
	p.SampleEvery = c.Events.SampleEvery
	p.SampleMaxPerSec = c.Events.MaxPerSecond
	p.Default = limitFrom(c.Limits.Default)
	p.Aggregate = limitFrom(c.Limits.Aggregate.Limit)
	p.AggregatePrefix4, p.AggregatePrefix6 = c.Limits.Aggregate.IPv4Prefix, c.Limits.Aggregate.IPv6Prefix
	p.NewSources = limitFrom(c.Limits.NewSources)
	for _, r := range c.Limits.Rules {
		mr := maps.Rule{Name: r.Name, Protocol: maps.Protocol(r.Protocol), SYN: r.SYN, Limit: limitFrom(r.Limit)}
		for _, pr := range r.Ports {
			mr.Ports = append(mr.Ports, maps.PortRange{Lo: pr.Lo, Hi: pr.Hi})
		}
		p.Rules = append(p.Rules, mr)
	}
	for _, cl := range c.Limits.Classes {
		p.Classes = append(p.Classes, maps.Class{Name: cl.Name, CIDRs: cl.CIDRs, Multiplier: cl.Multiplier})
	}
	if _, err := p.Compile(); err != nil {
		// The checks of config and checkLimits leave nothing for the policy's compiler to refuse.
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot compile the policy", Detail: err.Error()}}
	}

	d.FeedIDs = feedListIDs(c, d.ListNames)
	return d, nil
}

// compileLists returns the allow and block lists' entries, each prefix on
// one list id: the inline CIDRs on ListConfigAllow or ListConfigBlock, each
// file's on its own id from maps.FirstFileList (allow files first, then
// block files, in config order), named in names. A prefix named twice in a
// list is on the id of the last file that names it.
func compileLists(c *config.Config, names map[uint32]string) (allow, block listset.Set) {
	next := uint32(maps.FirstFileList)
	compile := func(list config.List, inline uint32, kind string) listset.Set {
		n := len(list.CIDRs)
		for _, f := range list.Files {
			n += len(f.Entries)
		}
		es := make([]listset.Entry, 0, n)
		for _, pfx := range list.CIDRs {
			es = append(es, listset.Entry{Key: listset.KeyOf(pfx), ID: inline})
		}
		for _, f := range list.Files {
			names[next] = kind + ":" + filepath.Base(f.Path)
			for _, k := range f.Entries {
				es = append(es, listset.Entry{Key: k, ID: next})
			}
			next++
		}
		// Ids grow in config order: the highest id of a prefix is its last source's.
		return listset.Build(es)
	}
	allow = compile(c.Allow, ListConfigAllow, "allow")
	block = compile(c.Block, ListConfigBlock, "block")
	return allow, block
}

// feedListIDs assigns each block feed a list id and name, by config order.
func feedListIDs(c *config.Config, names map[uint32]string) map[string]uint32 {
	ids := map[string]uint32{}
	next := uint32(maps.FirstFeedList)
	for _, f := range c.Feeds {
		if f.Action == "block" {
			ids[f.Name] = next
			names[next] = "feed:" + f.Name
			next++
		}
	}
	return ids
}
