package config

import (
	"net/netip"

	"github.com/hashicorp/hcl/v2"

	"github.com/bulwark-filter/bulwark/loader"
	"github.com/bulwark-filter/bulwark/maps"
)

// Limits the datapath puts on a config, owned by the maps and the loader; the agent refuses a config past them,
// so the check does too.
var (
	// MaxListFiles is how many list files the allow and block blocks may name together: one list id each.
	MaxListFiles = maps.FirstFeedList - maps.FirstFileList
	// MaxBlockFeeds is how many feeds may have action "block": one list id each.
	MaxBlockFeeds = int(loader.DefaultSizes().Lists) - maps.FirstFeedList
)

// maxOverlapWarnings is how many allow/block overlaps are reported one by one; the rest are counted.
const maxOverlapWarnings = 10

// warnAllowedBlocks warns about block entries that the allow list overrides: the same prefix in both lists, or a
// blocked prefix inside an allowed one. The allow list wins, so such a block entry does nothing there.
func (d *decoder) warnAllowedBlocks(allow, block List, at listSources) {
	allowed := map[netip.Prefix]bool{}
	lengths := map[bool]map[int]bool{true: {}, false: {}} // by Is4: the allow list's prefix lengths
	addAllowed := func(p netip.Prefix) {
		allowed[p] = true
		lengths[p.Addr().Is4()][p.Bits()] = true
	}
	for _, p := range allow.CIDRs {
		addAllowed(p)
	}
	for _, f := range allow.Files {
		for _, p := range f.Entries {
			addAllowed(p)
		}
	}
	if len(allowed) == 0 {
		return
	}
	n := 0
	check := func(p netip.Prefix, rng hcl.Range, where string) {
		if allowed[p] {
			n++
			if n <= maxOverlapWarnings {
				d.warnf(rng, "Allowed and blocked", "%s%s is in the allow list too; the allow list wins, so it is never blocked", p, where)
			}
			return
		}
		for bits := range lengths[p.Addr().Is4()] {
			if bits >= p.Bits() {
				continue
			}
			if outer := netip.PrefixFrom(p.Addr(), bits).Masked(); allowed[outer] {
				n++
				if n <= maxOverlapWarnings {
					d.warnf(rng, "Blocked inside allowed", "%s%s lies inside %s of the allow list; the allow list wins, so it is never blocked", p, where, outer)
				}
				return
			}
		}
	}
	for i, p := range block.CIDRs {
		check(p, at.cidrs[i], "")
	}
	for i, f := range block.Files {
		for _, p := range f.Entries {
			check(p, at.files[i], " (in "+f.Path+")")
		}
	}
	if n > maxOverlapWarnings {
		d.warnf(at.block, "Allowed and blocked", "%d more block entries overlap the allow list", n-maxOverlapWarnings)
	}
}

// checkCapacity refuses what the datapath cannot hold: more list files or block feeds than there are list ids,
// more entries of a kind than the map that holds them, more class prefixes than the class maps. mapsAttrs are the
// maps block's attributes, named in the messages when set.
func (d *decoder) checkCapacity(cfg *Config, allowAt, blockAt listSources, mapsAttrs hcl.Attributes) {
	files := append(append([]hcl.Range(nil), allowAt.files...), blockAt.files...)
	if len(files) > MaxListFiles {
		d.errorf(files[MaxListFiles], "Too many list files", "At most %d list files are allowed, allow and block together; this is file %d",
			MaxListFiles, MaxListFiles+1)
	}
	blockFeeds := 0
	for _, f := range cfg.Feeds {
		if f.Action != "block" {
			continue
		}
		if blockFeeds++; blockFeeds == MaxBlockFeeds+1 {
			d.errorf(f.Range, "Too many block feeds", `At most %d feeds may have action = "block"; this is block feed %d`,
				MaxBlockFeeds, blockFeeds)
		}
	}
	d.checkListCapacity("allow", cfg.Allow, allowAt.block, cfg.Maps.AllowHosts, cfg.Maps.AllowPrefixes, mapsAttrs)
	d.checkListCapacity("block", cfg.Block, blockAt.block, cfg.Maps.BlockHosts, cfg.Maps.BlockPrefixes, mapsAttrs)

	perFamily := map[bool]uint32{}
	for _, c := range cfg.Limits.Classes {
		for _, p := range c.CIDRs {
			perFamily[p.Addr().Is4()]++
		}
		for is4, n := range perFamily {
			if n > cfg.Maps.Classes {
				d.errorf(c.Range, "Class map too small", "The classes hold %d %s prefixes up to here, more than their map holds: maps classes is %d entries; raise it%s",
					n, family(is4), cfg.Maps.Classes, setAt(mapsAttrs["classes"]))
				return
			}
		}
	}
}

// checkListCapacity refuses a list with more distinct hosts or prefixes of one family than its maps hold
// (hosts and prefixes, IPv4 and IPv6, are four maps, each of the size the maps block gives).
func (d *decoder) checkListCapacity(name string, l List, rng hcl.Range, hosts, prefixes uint32, mapsAttrs hcl.Attributes) {
	type kind struct {
		is4, host bool
	}
	seen := map[netip.Prefix]bool{}
	count := map[kind]uint32{}
	add := func(p netip.Prefix) {
		if !seen[p] {
			seen[p] = true
			count[kind{p.Addr().Is4(), p.IsSingleIP()}]++
		}
	}
	for _, p := range l.CIDRs {
		add(p)
	}
	for _, f := range l.Files {
		for _, p := range f.Entries {
			add(p)
		}
	}
	for _, is4 := range []bool{true, false} {
		if n := count[kind{is4, true}]; n > hosts {
			key := name + "_hosts"
			d.errorf(rng, "List map too small", "The %s list has %d %s hosts, more than its map holds: maps %s is %d entries; raise it%s",
				name, n, family(is4), key, hosts, setAt(mapsAttrs[key]))
		}
		if n := count[kind{is4, false}]; n > prefixes {
			key := name + "_prefixes"
			d.errorf(rng, "List map too small", "The %s list has %d %s prefixes, more than its map holds: maps %s is %d entries; raise it%s",
				name, n, family(is4), key, prefixes, setAt(mapsAttrs[key]))
		}
	}
}

// family names an address family in messages.
func family(is4 bool) string {
	if is4 {
		return "IPv4"
	}
	return "IPv6"
}

// setAt says where a maps key is set, or that it takes its default.
func setAt(a *hcl.Attribute) string {
	if a == nil {
		return " in the maps block (it is the default now)"
	}
	return " (set at " + at(a.Range) + ")"
}
