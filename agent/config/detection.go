package config

import (
	"time"

	"github.com/hashicorp/hcl/v2"
)

// FleetDetection is the fleet block's detection sub-block as written: fleet-wide detection of what no single
// host sees. Keys left out stay zero: their defaults are the compile step's (agent/fleet/detect.DefaultConfig).
type FleetDetection struct {
	// Role is "none" (default), "publish" (publish this host's window summaries) or "aggregate" (publish them and
	// merge the fleet's into verdicts); "" is the default.
	Role string `hcl:"role"`
	// Window is the summaries' window, whole seconds, 1s..1h.
	Window time.Duration `hcl:"window"`
	// MinHosts (2..100000) and MinPorts (2..200): a source seen on at least MinHosts hosts and MinPorts distinct
	// destination ports fleet-wide in one window gets a fleet verdict.
	MinHosts int `hcl:"min_hosts"`
	MinPorts int `hcl:"min_ports"`
	// Action is the aggregator's verdict, "block" or "throttle"; TTL its life from the window's end, 1s..30d.
	Action string        `hcl:"action"`
	TTL    time.Duration `hcl:"ttl"`
	// Grace is how long after a window's end its summaries still count, 1s..1h (at most the window).
	Grace time.Duration `hcl:"grace"`
	// MaxSources caps the sources an aggregator merges per window, 1..100000000.
	MaxSources int `hcl:"max_sources"`
}

// fleetDetection decodes the detection sub-block of the fleet block.
func (d *decoder) fleetDetection(b *hcl.Block, cfg *Config, f *FleetDetection) {
	c := d.content(b.Body, &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "role"}, {Name: "window"}, {Name: "min_hosts"}, {Name: "min_ports"}, {Name: "action"}, {Name: "ttl"},
		{Name: "grace"}, {Name: "max_sources"},
	}})
	attrs := c.Attributes
	d.enumAttr(attrs["role"], &f.Role, "none", "publish", "aggregate")
	if a := attrs["window"]; d.durationAttr(a, &f.Window, time.Second, time.Hour) && f.Window%time.Second != 0 {
		d.errorf(a.Expr.Range(), "Invalid window", "window must be whole seconds (windows start at multiples of it on every host); got %s.", f.Window)
	}
	uintAttr(d, attrs["min_hosts"], &f.MinHosts, "min_hosts", 2, 100_000)
	uintAttr(d, attrs["min_ports"], &f.MinPorts, "min_ports", 2, 200)
	d.enumAttr(attrs["action"], &f.Action, "block", "throttle")
	d.durationAttr(attrs["ttl"], &f.TTL, time.Second, 30*24*time.Hour)
	d.durationAttr(attrs["grace"], &f.Grace, time.Second, time.Hour)
	uintAttr(d, attrs["max_sources"], &f.MaxSources, "max_sources", 1, 100_000_000)
	cfg.Set["fleet.detection"] = Setting{Range: b.DefRange, Value: b.DefRange}
	for name, a := range attrs {
		record(cfg, "fleet.detection."+name, a)
	}
}
