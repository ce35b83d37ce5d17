// Package crowdsec talks to a CrowdSec local API (LAPI): as a bouncer it
// pulls decisions from /v1/decisions/stream and merges them into the
// verdicts Bulwark should enforce (Book); as a source (a CrowdSec
// "machine") it pushes Bulwark's own verdicts as alerts with decisions
// (Source). It knows nothing of the datapath: the agent applies what a
// Book's changes say.
package crowdsec

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Action is what Bulwark does with a decision's target.
type Action string

// Actions a decision type may map to.
const (
	ActionBlock    Action = "block"
	ActionThrottle Action = "throttle"
)

// Scopes of the decisions Bulwark takes.
const (
	ScopeIP    = "ip"
	ScopeRange = "range"
)

// Decision is one decision as the LAPI's stream returns it.
type Decision struct {
	ID       int64  `json:"id"`
	Origin   string `json:"origin"`
	Scenario string `json:"scenario"`
	Scope    string `json:"scope"`
	Type     string `json:"type"`
	Value    string `json:"value"`
	Duration string `json:"duration"`
}

// Stream is one answer of /v1/decisions/stream.
type Stream struct {
	New     []Decision `json:"new"`
	Deleted []Decision `json:"deleted"`
}

// Entry is a decision Bulwark enforces: its target (an IPv4 or IPv6
// address as a full-length prefix, or a range), the action of its type,
// its expiry on the wall clock, and where it came from.
type Entry struct {
	ID       int64
	Target   netip.Prefix
	Action   Action
	Expires  time.Time
	Origin   string
	Scenario string
}

// Label is how listings show where the entry came from:
// crowdsec:<origin>/<scenario>.
func (e Entry) Label() string {
	return "crowdsec:" + e.Origin + "/" + e.Scenario
}

// Target parses a decision's value in its scope: an address for "ip", a
// CIDR for "range" (masked; an IPv4-mapped IPv6 value is taken as IPv4).
func Target(scope, value string) (netip.Prefix, error) {
	switch strings.ToLower(scope) {
	case ScopeIP:
		a, err := netip.ParseAddr(value)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("ip decision %q: %w", value, err)
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("ip decision %q: an address with a zone", value)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	case ScopeRange:
		p, err := netip.ParsePrefix(value)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("range decision %q: %w", value, err)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	return netip.Prefix{}, fmt.Errorf("decision scope %q: want ip or range", scope)
}
