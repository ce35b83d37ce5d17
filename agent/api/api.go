// Package api is the wire format of the agent's control API and its client:
// the request and reply types of every endpoint, the bounds of their inputs
// and an HTTP client of the control socket. The agent's handlers encode these
// types; the CLI, the tests and remote tools import this package and nothing
// of the daemon, so a client does not link the datapath.
//
// It imports no other Bulwark package (a test of the import rules keeps it
// so). The endpoints, all JSON, on the unix socket (root only):
//
//	GET    /v1/status                  Status
//	GET    /v1/lists/{allow|block}     []ListEntry
//	POST   /v1/lists/{allow|block}     ListRequest -> Added
//	DELETE /v1/lists/{allow|block}     ListRequest -> Deleted
//	POST   /v1/lists/{allow|block}/import  ImportRequest -> ImportReply
//	POST   /v1/reload                  ReloadReply (422 when rejected)
//	GET    /v1/explain/{ip}            Explanation
//	GET    /v1/why/{ip}?proto=&port=&syn=&bytes=&interface=   Why
//	GET    /v1/verdicts                []Verdict
//	DELETE /v1/verdicts                VerdictsRequest -> Deleted
//	GET    /v1/capture?reason=&action=&count=&timeout=   []Event
//	GET    /v1/sources?sort=pps|dropped|score&limit=N    SourcesReply
//
// Every error reply is an [Error].
package api

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Bounds of the control API's inputs.
const (
	MaxBodyBytes   = 1 << 20
	MaxCIDRsPerReq = 10000
	MinTTL         = time.Second
	MaxTTL         = 365 * 24 * time.Hour
	MaxReasonLen   = 256
)

// Bounds of GET /v1/sources: the limit, and the limit when none is given.
const (
	MaxSources     = 1000
	DefaultSources = 20
)

// The frame length GET /v1/why/{ip} judges byte limits for, and its bounds.
const (
	DefaultWhyBytes = 64
	MinWhyBytes     = 14
	MaxWhyBytes     = 65535
)

// Bounds of a live capture request.
const (
	MaxCaptureCount   = 10000
	MaxCaptureTimeout = 5 * time.Minute
)

// ParseCIDR parses an address or CIDR as the API and list files accept it:
// a bare address is a host; host bits must be clear.
func ParseCIDR(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR", s)
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR: %v", s, err)
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%s has host bits set; did you mean %s?", s, p.Masked())
	}
	return p, nil
}

// ParseAddr parses a source address as the API accepts it: no zone; an
// IPv4-mapped IPv6 address is its IPv4 address.
func ParseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	return a.Unmap(), nil
}

// ParseTTL parses the time to live of a run-time list entry, from MinTTL to
// MaxTTL. parseDuration is the config's duration syntax ("90s", "10m",
// "7d"): the agent and the CLI pass config.ParseDuration, which this
// package does not import.
func ParseTTL(s string, parseDuration func(string) (time.Duration, error)) (time.Duration, error) {
	ttl, err := parseDuration(s)
	if err != nil || ttl < MinTTL || ttl > MaxTTL {
		return 0, fmt.Errorf("ttl %q: want a duration from %s to %dd, e.g. 10m or 7d", s, MinTTL, MaxTTL/(24*time.Hour))
	}
	return ttl, nil
}
