// Package detect runs fleet-wide detection over NATS JetStream: agents with
// the publish or aggregate role publish a summary of each window
// (agent/fleet/summary) to the summary stream under their own node's
// subject; an aggregator (an agent with the aggregate role, or the
// standalone `bulwark fleet aggregate`) merges each window's summaries and
// writes a fleet verdict, issuer "aggregate", for each source the rule
// flags. Every aggregator merges the same summaries (chosen by the
// server-assigned stream timestamps) and writes the same bytes (IssuedAt is
// the window's end), so two aggregators give one verdict, not two.
package detect

import (
	"errors"
	"fmt"
	"time"

	"github.com/bulwark-filter/bulwark/agent/fleet"
	"github.com/bulwark-filter/bulwark/agent/fleet/summary"
)

// Role is what an agent does in fleet-wide detection.
type Role string

// Roles: none (the default), publish (publish this host's summaries),
// aggregate (publish them and aggregate the fleet's).
const (
	RoleNone      Role = "none"
	RolePublish   Role = "publish"
	RoleAggregate Role = "aggregate"
)

// Issuer and Origin of the aggregator's verdicts.
const (
	Issuer = "aggregate"
	Origin = "aggregate"
)

// Config is the fleet block's detection sub-block, defaults filled in.
type Config struct {
	// Role is none, publish or aggregate.
	Role Role
	// Window is the summaries' window: whole seconds, 1 s to 1 h.
	Window time.Duration
	// Rule flags a source seen on MinHosts hosts and MinPorts distinct
	// ports fleet-wide in one window.
	Rule summary.Rule
	// Action (block or throttle) and TTL (from the window's end) of the
	// aggregator's verdicts.
	Action fleet.Action
	TTL    time.Duration
	// Grace is how long after a window's end (by the server's message
	// timestamps) its summaries are still merged; a later one is counted
	// late and left out. Default: a quarter of the window, at least 2 s.
	Grace time.Duration
	// MaxSources caps the sources an aggregator merges per window.
	MaxSources int
}

// DefaultConfig is the detection sub-block's defaults: role none, window
// 1 min, min_hosts 3, min_ports 12, action block, ttl 1 h, grace 15 s,
// max_sources 1,000,000.
func DefaultConfig() Config {
	return Config{Role: RoleNone, Window: summary.DefaultWindow,
		Rule:   summary.Rule{MinHosts: summary.DefaultMinHosts, MinPorts: summary.DefaultMinPorts},
		Action: fleet.ActionBlock, TTL: time.Hour, Grace: DefaultGrace(summary.DefaultWindow), MaxSources: 1_000_000}
}

// DefaultGrace is the grace of a window's length: a quarter, at least 2 s.
func DefaultGrace(window time.Duration) time.Duration {
	return max(window/4, 2*time.Second)
}

// Validate checks c; the error names the key.
func (c Config) Validate() error {
	switch c.Role {
	case RoleNone, RolePublish, RoleAggregate:
	default:
		return fmt.Errorf("role %q: want none, publish or aggregate", c.Role)
	}
	if c.Window < time.Second || c.Window > time.Hour || c.Window%time.Second != 0 {
		return fmt.Errorf("window %s: want whole seconds, 1s to 1h", c.Window)
	}
	if err := c.Rule.Validate(); err != nil {
		return err
	}
	if c.Action != fleet.ActionBlock && c.Action != fleet.ActionThrottle {
		return fmt.Errorf("action %q: want block or throttle", c.Action)
	}
	if c.TTL < c.Window || c.TTL > 30*24*time.Hour {
		return fmt.Errorf("ttl %s: want at least the window (%s) and at most 30d", c.TTL, c.Window)
	}
	if c.Grace <= 0 || c.Grace > c.Window {
		return fmt.Errorf("grace %s: want more than 0 and at most the window (%s)", c.Grace, c.Window)
	}
	if c.MaxSources < 1 || c.MaxSources > 100_000_000 {
		return fmt.Errorf("max_sources %d: want 1 to 100000000", c.MaxSources)
	}
	return nil
}

// Subject is where node publishes its summaries on stream: "<stream>.<node>"
// (grant each host publish on its own subject only).
func Subject(stream, node string) string { return stream + "." + node }

// errNoBucket says the verdict bucket does not exist yet (the fleet
// clients create it).
var errNoBucket = errors.New("the verdict bucket does not exist yet")
