package desired

import (
	"net/netip"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/reputation"
)

// Scorer is the reputation engine's settings from a config.
func Scorer(c *config.Config) reputation.Config {
	r := c.Reputation
	return reputation.Config{
		Mode: r.Mode, Interval: r.Interval,
		ThrottleScore: float64(r.ThrottleScore), BlockScore: float64(r.BlockScore),
		ThrottleFor: r.ThrottleFor, BlockFor: r.BlockFor, MaxBlockFor: r.MaxBlockFor,
		MaxVerdicts: int(r.MaxVerdicts),
		Weights: reputation.Weights{RateAnomaly: r.Weights.RateAnomaly, SYNRatio: r.Weights.SYNRatio,
			PortScan: r.Weights.PortScan, RatelimitDrops: r.Weights.RatelimitDrops,
			Malformed: r.Weights.Malformed, Repeat: r.Weights.Repeat},
	}
}

// Exempt is the config's part of the space no feed or scorer may block:
// the allow list and its files, and reputation.protect. (The agent adds
// the run-time allow entries.)
func Exempt(c *config.Config) []netip.Prefix {
	var ps []netip.Prefix
	ps = append(ps, c.Reputation.Protect...)
	ps = append(ps, c.Allow.CIDRs...)
	for _, f := range c.Allow.Files {
		ps = append(ps, f.Entries...)
	}
	return ps
}

// ExemptOverlap reports prefixes that would block allow-listed or
// protected space: a feed entry inside exempt space (the set of list), or
// containing some of it.
func ExemptOverlap(p netip.Prefix, exempt *reputation.PrefixSet, list []netip.Prefix) bool {
	if exempt.Contains(p.Addr()) {
		return true
	}
	for _, e := range list {
		if p.Contains(e.Addr()) {
			return true
		}
	}
	return false
}
