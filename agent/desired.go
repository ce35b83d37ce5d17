package agent

import (
	"fmt"
	"net/netip"
	"path/filepath"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/loader"
	"github.com/bulwark-filter/bulwark/maps"
)

// List ids. Runtime entries (the CLI and API) and config entries are kept
// apart by id: a config reconcile never deletes a runtime entry.
const (
	ListRuntimeAllow uint32 = 0
	ListRuntimeBlock uint32 = 1
	ListConfigAllow  uint32 = 2
	ListConfigBlock  uint32 = 3
	firstFileList    uint32 = maps.FirstFileList
)

// desired is what a config asks of the datapath.
type desired struct {
	policy    maps.Policy
	allow     map[netip.Prefix]uint32 // prefix -> list id
	block     map[netip.Prefix]uint32
	listNames map[uint32]string
	feedIDs   map[string]uint32 // list id of each block feed
	sizes     loader.Sizes
}

func limitFrom(l config.Limit) maps.Limit {
	return maps.Limit{PPS: l.PPS, Burst: l.Burst, BytesPerSec: l.BytesPerSec, ByteBurst: l.ByteBurst}
}

// sizesFrom maps the config's map sizes to the loader's.
func sizesFrom(c *config.Config) loader.Sizes {
	s := loader.DefaultSizes()
	m := c.Maps
	s.Sources, s.RuleBuckets, s.Verdicts = m.Sources, m.RuleBuckets, m.Verdicts
	s.AllowHosts, s.AllowPrefixes = m.AllowHosts, m.AllowPrefixes
	s.BlockHosts, s.BlockPrefixes = m.BlockHosts, m.BlockPrefixes
	s.Classes = m.Classes
	s.Aggregates = m.Aggregates
	s.EventsBytes = m.EventsRingKiB * 1024
	return s
}

// desiredFrom compiles a config into the datapath's desired state.
func desiredFrom(c *config.Config) (*desired, error) {
	d := &desired{
		allow: map[netip.Prefix]uint32{}, block: map[netip.Prefix]uint32{},
		listNames: map[uint32]string{
			ListRuntimeAllow: "runtime-allow", ListRuntimeBlock: "runtime-block",
			ListConfigAllow: "allow", ListConfigBlock: "block",
		},
		sizes: sizesFrom(c),
	}
	p := &d.policy
	if c.Mode == "monitor" {
		p.Mode = maps.ModeMonitor
	}
	p.MalformedPass = c.Malformed == "pass"
	p.IPv6Prefix = c.Limits.IPv6Prefix
	p.ThrottleMultiplier = c.Limits.ThrottleMultiplier
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
		return nil, err
	}

	next := firstFileList
	add := func(into map[netip.Prefix]uint32, list config.List, inline uint32, kind string) error {
		for _, pfx := range list.CIDRs {
			into[pfx] = inline
		}
		for _, f := range list.Files {
			if next >= firstFeedList {
				return fmt.Errorf("too many list files: at most %d", firstFeedList-firstFileList)
			}
			d.listNames[next] = kind + ":" + filepath.Base(f.Path)
			for _, pfx := range f.Entries {
				into[pfx] = next
			}
			next++
		}
		return nil
	}
	if err := add(d.allow, c.Allow, ListConfigAllow, "allow"); err != nil {
		return nil, err
	}
	if err := add(d.block, c.Block, ListConfigBlock, "block"); err != nil {
		return nil, err
	}
	d.feedIDs = feedListIDs(c, d.listNames)
	if n := uint32(len(d.feedIDs)); n > 0 && firstFeedList+n > d.sizes.Lists {
		return nil, fmt.Errorf("%d block feeds: at most %d", n, d.sizes.Lists-firstFeedList)
	}
	return d, nil
}

// runtimeList reports whether a list id belongs to runtime entries.
func runtimeList(id uint32) bool { return id == ListRuntimeAllow || id == ListRuntimeBlock }

// configList reports whether a list id belongs to the config (not to the
// CLI, not to a feed): only those entries does a config reconcile delete.
func configList(id uint32) bool { return !runtimeList(id) && id < firstFeedList }

// reconcileList makes the config-owned part of l equal want: every wanted
// entry is written first, then stale config entries are deleted. Runtime
// and feed entries are left alone unless the config names the same prefix
// (then the config's entry replaces it).
func reconcileList(l *maps.List, want map[netip.Prefix]uint32) (added, removed int, err error) {
	cur, err := l.Entries()
	if err != nil {
		return 0, 0, err
	}
	have := make(map[netip.Prefix]maps.Entry, len(cur))
	for _, e := range cur {
		have[e.Prefix] = e
	}
	var put []maps.Entry
	for pfx, id := range want {
		if e, ok := have[pfx]; ok && e.ListID == id && e.ExpiresNS == 0 {
			continue
		}
		put = append(put, maps.Entry{Prefix: pfx, ListID: id})
	}
	if err := l.Add(put); err != nil {
		return 0, 0, err
	}
	var stale []netip.Prefix
	for pfx, e := range have {
		if _, ok := want[pfx]; !ok && configList(e.ListID) {
			stale = append(stale, pfx)
		}
	}
	if err := l.Delete(stale); err != nil {
		return len(put), 0, err
	}
	return len(put), len(stale), nil
}
