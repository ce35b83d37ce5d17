package desired

import (
	"net/netip"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/guard"
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
			Malformed: r.Weights.Malformed, Repeat: r.Weights.Repeat,
			PortScanLong: r.Weights.PortScanLong, HorizontalScan: r.Weights.HorizontalScan, Uniform: r.Weights.UniformFlood},
		ScanWindow: r.ScanWindow,
	}
}

// Exempt is the config's part of the space no feed or scorer may block,
// each prefix with where it comes from: reputation.protect, the allow list
// and its files. (The agent adds the run-time allow entries.)
func Exempt(c *config.Config) []guard.Protected {
	var ps []guard.Protected
	add := func(why string, l []netip.Prefix) {
		for _, p := range l {
			ps = append(ps, guard.Protected{Prefix: p, Why: why})
		}
	}
	add("reputation.protect", c.Reputation.Protect)
	add("allow list", c.Allow.CIDRs)
	for _, f := range c.Allow.Files {
		for _, k := range f.Entries {
			ps = append(ps, guard.Protected{Prefix: k.Prefix(), Why: "allow file " + f.Path})
		}
	}
	return ps
}

// FeedGuard is the safety rails feed entries pass: the config's safety
// limits, and the space no feed may overlap: Exempt and more (the agent's
// run-time allow entries, the host's own addresses and default gateways;
// none in a replay, which runs for the capture's host, not this one).
func FeedGuard(c *config.Config, more ...guard.Protected) *guard.Guard {
	l := guard.Limits{MinBits4: c.Safety.MinPrefixIPv4, MinBits6: c.Safety.MinPrefixIPv6,
		MaxGrowth4: c.Safety.MaxGrowthIPv4, MaxGrowth6: c.Safety.MaxGrowthIPv6}
	return guard.New(l, append(Exempt(c), more...))
}
