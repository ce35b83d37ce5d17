package config

import (
	"net/netip"

	"github.com/hashicorp/hcl/v2"
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
		for _, k := range f.Entries {
			addAllowed(k.Prefix())
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
		for _, k := range f.Entries {
			check(k.Prefix(), at.files[i], " (in "+f.Path+")")
		}
	}
	if n > maxOverlapWarnings {
		d.warnf(at.block, "Allowed and blocked", "%d more block entries overlap the allow list", n-maxOverlapWarnings)
	}
}
