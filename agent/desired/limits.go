package desired

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/listset"
	"github.com/bulwark-filter/bulwark/loader"
	"github.com/bulwark-filter/bulwark/maps"
)

// limits collects the diagnostics of the datapath's limits.
type limits struct {
	c     *config.Config
	diags hcl.Diagnostics
}

func (l *limits) errorf(rng hcl.Range, summary, format string, args ...any) {
	l.diags = append(l.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary,
		Detail: fmt.Sprintf(format, args...), Subject: rng.Ptr()})
}

// checkLimits refuses what the datapath cannot hold with maps of the given sizes: more rules than there are rule
// ids, more list files or block feeds than there are list ids, more entries of a kind than the map that holds
// them, more class prefixes than the class maps, more verdicts than the verdict map.
func checkLimits(c *config.Config, sizes loader.Sizes, allow, block listset.Set) hcl.Diagnostics {
	l := &limits{c: c}
	if rules := c.Limits.Rules; len(rules) > maps.MaxRules {
		l.errorf(rules[maps.MaxRules].Range, "Too many rules", "At most %d rules are allowed; this is rule %d.", maps.MaxRules, maps.MaxRules+1)
	}
	var files []hcl.Range
	for _, f := range append(append([]config.ListFile(nil), c.Allow.Files...), c.Block.Files...) {
		files = append(files, f.Range)
	}
	if len(files) > MaxListFiles {
		l.errorf(files[MaxListFiles], "Too many list files", "At most %d list files are allowed, allow and block together; this is file %d.",
			MaxListFiles, MaxListFiles+1)
	}
	blockFeeds := 0
	for _, f := range c.Feeds {
		if f.Action != "block" {
			continue
		}
		if blockFeeds++; blockFeeds == MaxBlockFeeds+1 {
			l.errorf(f.Range, "Too many block feeds", `At most %d feeds may have action = "block"; this is block feed %d.`,
				MaxBlockFeeds, blockFeeds)
		}
	}
	l.listCapacity("allow", c.Allow.Range, allow, sizes.AllowHosts, sizes.AllowPrefixes)
	l.listCapacity("block", c.Block.Range, block, sizes.BlockHosts, sizes.BlockPrefixes)
	l.classCapacity(sizes.Classes)
	if r := c.Reputation; r.Mode != "off" && r.MaxVerdicts > sizes.Verdicts {
		// The defaults fit each other, so one of the two is set.
		rng := c.Set["maps.verdicts"].Value
		if s, ok := c.Set["reputation.max_verdicts"]; ok {
			rng = s.Value
		}
		l.errorf(rng, "Verdict map too small", "reputation max_verdicts (%d) must not exceed the verdict map's size, maps verdicts (%d).",
			r.MaxVerdicts, sizes.Verdicts)
	}
	return l.diags
}

// listCapacity refuses a list with more distinct hosts or prefixes of one family than its maps hold (hosts and
// prefixes, IPv4 and IPv6, are four maps, each of the size the maps block gives).
func (l *limits) listCapacity(name string, rng hcl.Range, list listset.Set, hosts, prefixes uint32) {
	var count [2][2]uint32 // by IPv4, by host
	b := func(v bool) int {
		if v {
			return 1
		}
		return 0
	}
	for _, e := range list {
		count[b(e.Key.Is4())][b(e.Key.IsHost())]++
	}
	for _, is4 := range []bool{true, false} {
		if n := count[b(is4)][1]; n > hosts {
			key := name + "_hosts"
			l.errorf(rng, "List map too small", "The %s list has %d %s hosts, more than its map holds: maps %s is %d entries; raise it%s.",
				name, n, family(is4), key, hosts, l.setAt(key))
		}
		if n := count[b(is4)][0]; n > prefixes {
			key := name + "_prefixes"
			l.errorf(rng, "List map too small", "The %s list has %d %s prefixes, more than its map holds: maps %s is %d entries; raise it%s.",
				name, n, family(is4), key, prefixes, l.setAt(key))
		}
	}
}

// classCapacity refuses more class prefixes of one family than the class maps hold, at the class that passes the
// size.
func (l *limits) classCapacity(size uint32) {
	perFamily := map[bool]uint32{}
	for _, c := range l.c.Limits.Classes {
		for _, p := range c.CIDRs {
			perFamily[p.Addr().Is4()]++
		}
		for is4, n := range perFamily {
			if n > size {
				l.errorf(c.Range, "Class map too small", "The classes hold %d %s prefixes up to here, more than their map holds: maps classes is %d entries; raise it%s.",
					n, family(is4), size, l.setAt("classes"))
				return
			}
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
func (l *limits) setAt(key string) string {
	s, ok := l.c.Set["maps."+key]
	if !ok {
		return " in the maps block (it is the default now)"
	}
	r := s.Range
	return fmt.Sprintf(" (set at %s:%d:%d)", r.Filename, r.Start.Line, r.Start.Column)
}
