// Package fleet shares verdicts between the Bulwark agents of a fleet over
// a NATS JetStream key-value bucket. Each agent publishes the verdicts it
// reaches (engine verdicts, operator actions with --fleet) under its own
// node name, and applies every agent's verdicts to its own kernel maps with
// the absolute expiry carried in the value, so the kernel expires them on
// its own clock whatever the server version.
//
// A Client never flushes what it enforces when the bus is down: it keeps
// its applied set, buffers its own verdicts (bounded, coalesced per target)
// and publishes them when the bus returns; it resumes from the last
// revision it applied, and resynchronises from the bucket's current state
// when that revision is no longer held.
package fleet

import (
	"net/netip"
	"time"
)

// Action is what a fleet verdict asks of every host.
type Action string

// Actions, weakest first; Revoke cancels the verdicts on the same target
// issued before it.
const (
	ActionThrottle Action = "throttle"
	ActionBlock    Action = "block"
	ActionRevoke   Action = "revoke"
)

// Verdict is one fleet verdict as it travels in the bucket.
type Verdict struct {
	// Target is the source or prefix the verdict is on (masked).
	Target netip.Prefix `json:"target"`
	// Action is block, throttle or revoke.
	Action Action `json:"action"`
	// Issuer is the node name of the agent that published it.
	Issuer string `json:"issuer"`
	// Origin says which part of the issuer reached it: scorer, cli,
	// aggregate.
	Origin string `json:"origin"`
	// Reason explains the verdict (the engine's components, the operator's
	// --reason, the aggregator's finding).
	Reason string `json:"reason,omitempty"`
	// Score is the engine's score (0 for operator actions).
	Score uint16 `json:"score,omitempty"`
	// IssuedAt and Expires are wall-clock times; Expires is absolute.
	IssuedAt time.Time `json:"issued_at"`
	Expires  time.Time `json:"expires"`
}

// Change is one difference between the merged fleet set and what the
// Applier was last given: Put (Remove false) or Remove the target.
type Change struct {
	Target netip.Prefix
	Remove bool
	// Winner is the verdict in force on Target after merging (nil when
	// Remove); it is shared with the Client: read only.
	Winner *Verdict
}

// Applier writes the merged fleet set into the kernel. Apply gets the
// changes in one batch; it returns the targets it refused (e.g. locally
// allowed or protected space) with the reason, which the Client counts and
// reports. Apply must not block on the network, nor keep changes after it
// returns (the Client reuses the slice).
type Applier interface {
	Apply(changes []Change) (refused map[netip.Prefix]string)
}

// Refusal is a fleet verdict the Client would not apply or publish, and
// why; the agent audits it.
type Refusal struct {
	Verdict Verdict
	// Reason is one of the Refused* constants.
	Reason string
}

// Reasons a verdict is refused; values of Refusal.Reason and of the reason
// label of bulwark_fleet_refused_total.
const (
	RefusedRate      = "issuer_rate" // the issuer is over its rate cap
	RefusedActiveCap = "active_cap"  // the fleet set is at max_active
	RefusedLocal     = "local_allow" // the Applier refused: allowed or protected here
	RefusedInvalid   = "invalid"     // an undecodable or inconsistent value
	RefusedTTL       = "ttl"         // expiry beyond max_ttl or already past
	RefusedBuffer    = "buffer_full" // publish buffer full while the bus is down
)

// TLS is where the client's TLS material is; empty fields are unused.
type TLS struct {
	CAFile, CertFile, KeyFile string
}

// Options configure a Client (from the config's fleet block).
type Options struct {
	// Servers are NATS URLs, e.g. nats://198.19.0.1:4222.
	Servers []string
	TLS     TLS
	// CredsFile is a NATS credentials file (JWT and nkey seed); User and
	// Password are the alternative. At most one of them is set.
	CredsFile      string
	User, Password string
	// Node is this agent's issuer name: [A-Za-z0-9_-], 1 to 64 characters.
	Node string
	// Bucket is the key-value bucket of verdicts; SummaryStream is the
	// stream of detection summaries.
	Bucket, SummaryStream string
	// Replicas is the bucket's replica count when the Client creates it.
	Replicas int
	// MaxTTL bounds the life of a verdict; it is also the bucket's MaxAge
	// where the server has no per-key TTL.
	MaxTTL time.Duration
	// IssuerRate and IssuerBurst cap the verdicts one issuer may publish
	// (per second, and at once); over it they are refused everywhere.
	IssuerRate  float64
	IssuerBurst int
	// MaxActive caps the active fleet verdicts (the merged set).
	MaxActive int
	// Buffer bounds the verdicts kept for publishing while the bus is down.
	Buffer int
}

// Status is what `bulwark fleet status` shows.
type Status struct {
	Node            string    `json:"node"`
	Connected       bool      `json:"connected"`
	Server          string    `json:"server,omitempty"`
	Servers         []string  `json:"servers"`
	AppliedRevision uint64    `json:"applied_revision"`
	BucketRevision  uint64    `json:"bucket_revision"`
	Lag             uint64    `json:"lag"`
	Buffered        int       `json:"buffered"`
	Active          int       `json:"active"`
	Digest          string    `json:"digest"`
	LastApplied     time.Time `json:"last_applied,omitzero"`
}
