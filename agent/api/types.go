package api

import (
	"net/netip"
	"time"
)

// Error is the body of every error reply.
type Error struct {
	Error string `json:"error"`
}

// ListRequest adds or deletes list entries (POST and DELETE /v1/lists/{list}).
type ListRequest struct {
	CIDRs  []string `json:"cidrs"`
	TTL    string   `json:"ttl,omitempty"`
	Reason string   `json:"reason,omitempty"`
	// Fleet publishes a block to the whole fleet instead of adding a
	// run-time entry (block list only; needs a fleet block that publishes
	// "cli"); TTL defaults to, and is capped at, the fleet's max_ttl.
	Fleet bool `json:"fleet,omitempty"`
}

// ListEntry is one entry as the API shows it (GET /v1/lists/{list}).
type ListEntry struct {
	CIDR      string  `json:"cidr"`
	List      string  `json:"list"`
	Origin    string  `json:"origin"`
	ExpiresIn float64 `json:"expires_in_seconds,omitempty"`
}

// Added is the reply of POST /v1/lists/{list}.
type Added struct {
	Added int `json:"added"`
}

// Deleted is the reply of DELETE /v1/lists/{list} and DELETE /v1/verdicts.
type Deleted struct {
	Deleted int `json:"deleted"`
}

// Reload results.
const (
	ReloadOK       = "ok"
	ReloadRejected = "rejected"
)

// ReloadReply is the body of a reload reply: ReloadOK, or ReloadRejected
// (HTTP 422) with the config's diagnostics.
type ReloadReply struct {
	Result      string `json:"result"`
	Diagnostics string `json:"diagnostics,omitempty"`
}

// Status is the reply of GET /v1/status.
type Status struct {
	Version       string                       `json:"version"`
	UptimeSeconds float64                      `json:"uptime_seconds"`
	Mode          string                       `json:"mode"`
	Interfaces    []InterfaceStatus            `json:"interfaces"`
	Packets       map[string]map[string]uint64 `json:"packets"` // action -> reason -> packets, all interfaces
	Lists         map[string]map[string]int    `json:"list_entries"`
	Verdicts      map[string]int               `json:"verdicts_active"`
	// Missing lists the config's interface blocks that name no interface on
	// this host: while there are any the agent waits, attached nowhere.
	Missing []MissingInterface `json:"missing_interfaces,omitempty"`
}

// MissingInterface is an interface block of the config that names no
// interface on the host.
type MissingInterface struct {
	Config string `json:"config"` // the block's name: an interface, "auto" or a pattern
	Detail string `json:"detail"` // why it names none
}

// InterfaceStatus is one interface in Status.
type InterfaceStatus struct {
	Name           string `json:"name"`
	Attach         string `json:"attach"`
	TrackedSources int    `json:"tracked_sources"`
	// PinsPersistent is whether the pins outlive the agent (fail-static);
	// PinsDetail says why not and what to do.
	PinsPersistent bool   `json:"pins_persistent"`
	PinsDetail     string `json:"pins_detail,omitempty"`
	// KernelMemoryBytes is the kernel memory of the interface's maps, as the kernel reports it (memlock).
	KernelMemoryBytes uint64 `json:"kernel_memory_bytes"`
}

// Verdict is one verdict in force as the API shows it (GET /v1/verdicts).
type Verdict struct {
	Source    string  `json:"source"`
	Action    string  `json:"action"`
	Origin    string  `json:"origin"`
	Score     uint16  `json:"score"`
	ExpiresIn float64 `json:"expires_in_seconds"`
}

// VerdictsRequest deletes verdicts (DELETE /v1/verdicts).
type VerdictsRequest struct {
	Sources []string `json:"sources"`
	// Fleet also revokes the fleet's verdicts on these targets (as
	// `verdicts list` shows them) on every host.
	Fleet bool `json:"fleet,omitempty"`
}

// FleetStatus is the reply of GET /v1/fleet: the fleet client's state.
type FleetStatus struct {
	Node            string    `json:"node"`
	Connected       bool      `json:"connected"`
	Server          string    `json:"server,omitempty"` // the server connected to
	Servers         []string  `json:"servers"`
	Publish         []string  `json:"publish"` // which local verdicts are published: scorer, cli
	AppliedRevision uint64    `json:"applied_revision"`
	BucketRevision  uint64    `json:"bucket_revision"`
	Lag             uint64    `json:"lag"` // revisions not applied yet
	Buffered        int       `json:"buffered"`
	Active          int       `json:"active"`
	LastApplied     time.Time `json:"last_applied,omitzero"`
	// Digest is of the merged set this agent applied; BucketDigest of the
	// bucket's current state (empty, with BucketError, when the bus is not
	// reachable). InSync is whether they are equal.
	Digest       string `json:"digest"`
	BucketDigest string `json:"bucket_digest,omitempty"`
	BucketError  string `json:"bucket_error,omitempty"`
	InSync       bool   `json:"in_sync"`
}

// SourcesReply is the reply of GET /v1/sources.
type SourcesReply struct {
	Interval float64  `json:"interval_seconds"`
	Measured bool     `json:"measured"` // false until a scoring cycle has run
	Sources  []Source `json:"sources"`
}

// Source is one source as `bulwark top` shows it.
type Source struct {
	Source       string  `json:"source"`
	PPS          float64 `json:"pps"`           // packets per second reaching the rate limiter
	DeliveredPPS float64 `json:"delivered_pps"` // of those, passed
	RatelimitPPS float64 `json:"ratelimit_pps"` // dropped by the rate limits
	SYNShare     float64 `json:"syn_share"`
	Ports        int     `json:"ports_per_second"`
	Score        float64 `json:"score"`
	Verdict      string  `json:"verdict,omitempty"`
	TTLSeconds   float64 `json:"verdict_ttl_seconds,omitempty"`
}

// SourceOrder is how sources are ranked by key ("pps", "dropped" or
// "score"): by the key, then by packet rate.
func SourceOrder(by string) func(a, b Source) bool {
	return func(a, b Source) bool {
		switch by {
		case "score":
			if a.Score != b.Score {
				return a.Score > b.Score
			}
		case "dropped":
			if a.RatelimitPPS != b.RatelimitPPS {
				return a.RatelimitPPS > b.RatelimitPPS
			}
		}
		return a.PPS > b.PPS
	}
}

// Explanation is why a source scores what it scores (GET /v1/explain/{ip}).
type Explanation struct {
	Source     netip.Prefix       `json:"source"`
	Tracked    bool               `json:"tracked"`
	Exempt     bool               `json:"exempt"`
	Score      float64            `json:"score"`
	ScoreFrom  string             `json:"score_from"`     // ScoreLive, ScoreVerdict or ScoreNone
	Note       string             `json:"note,omitempty"` // why there is no live score, when there is none
	Components []Component        `json:"components"`
	Observed   map[string]float64 `json:"observed"`
	Baseline   map[string]float64 `json:"baseline"`
	Feeds      []FeedHit          `json:"feeds"`
	Location   *Location          `json:"location,omitempty"`
	Active     *VerdictRecord     `json:"active_verdict,omitempty"`
	History    []VerdictRecord    `json:"history"`
	Thresholds map[string]float64 `json:"thresholds"`
	// Fleet is the fleet-wide detection's verdict in force on the source
	// (issuer aggregate), nil for none.
	Fleet *FleetFinding `json:"fleet,omitempty"`
}

// FleetFinding is a fleet aggregator's verdict on a source, with its
// reason, e.g. "fleet: seen on 14 hosts, 3 ports each (42 distinct) in 60 s".
type FleetFinding struct {
	Target   string    `json:"target"`
	Action   string    `json:"action"`
	Issuer   string    `json:"issuer"`
	Reason   string    `json:"reason"`
	IssuedAt time.Time `json:"issued_at"`
	Expires  time.Time `json:"expires"`
}

// Where an Explanation's score and components come from.
const (
	// ScoreLive: the engine's state of the source, as of its last cycle.
	ScoreLive = "live"
	// ScoreVerdict: the verdict in force, as it was issued. The engine keeps
	// no state for a source whose packets a verdict or list stops before
	// the rate limiter, so this is the score that blocked it.
	ScoreVerdict = "verdict"
	// ScoreNone: no state and no verdict of the engine: no score.
	ScoreNone = "none"
)

// Component is one component of a score: its observed value and what it
// contributed, out of its weight.
type Component struct {
	Name         string  `json:"name"`
	Value        float64 `json:"value"`
	Contribution float64 `json:"contribution"`
	Weight       float64 `json:"weight"`
	// Detail says what was observed in words, where a component has more
	// to say than its value ("touched 240 addresses on port 22 in 1m2s").
	Detail string `json:"detail,omitempty"`
}

// FeedHit is a score-feed a source is in, with its weight.
type FeedHit struct {
	Feed   string
	Weight float64
}

// Location is where the location databases put a source.
type Location struct {
	Country string
	ASN     uint32
	ASOrg   string
}

// VerdictRecord is one verdict the scorer issued (or, in shadow mode,
// would have).
type VerdictRecord struct {
	Source     netip.Prefix       `json:"source"`
	Action     string             `json:"action"`
	Score      float64            `json:"score"`
	At         time.Time          `json:"at"`
	For        time.Duration      `json:"for_ns"`
	Enforced   bool               `json:"enforced"`
	Components map[string]float64 `json:"components"`
	// Details are the components' Detail texts at the verdict (only
	// those that have one).
	Details map[string]string `json:"details,omitempty"`
}

// Why is the reply of GET /v1/why/{ip}: which step of the datapath's
// decision (bpf/bulwark.c, first match wins: allow list, block list,
// verdict, new-source ceiling, rate limits, pass) would decide a packet
// from the source now, and the state of each step. It is read from the
// maps and changes nothing; it needs no reputation engine.
type Why struct {
	Source      string      `json:"source"`       // the address asked about
	TrackingKey string      `json:"tracking_key"` // its per-source key: the IPv4 host or the IPv6 prefix
	Interface   string      `json:"interface"`    // whose datapath was read
	Mode        string      `json:"mode"`         // enforce or monitor (a drop is then a would_drop)
	Packet      WhyPacket   `json:"packet"`
	Decision    WhyStep     `json:"decision"`
	Allow       *WhyEntry   `json:"allow_entry,omitempty"` // the live allow-list entry that matches
	Block       *WhyEntry   `json:"block_entry,omitempty"` // the live block-list entry that matches
	Verdict     *WhyVerdict `json:"verdict,omitempty"`     // the live verdict on the source
	Tracked     bool        `json:"tracked"`               // the source has per-source state in the datapath
	Class       string      `json:"class,omitempty"`       // the source's class, "" for none
	ClassMult   float64     `json:"class_multiplier"`      // 1 outside every class
	Limits      []WhyLimit  `json:"limits"`                // in the order the datapath takes from them
	Score       *WhyScore   `json:"score,omitempty"`       // the reputation engine's view; nil when it is off
	// Signatures are the attack signatures in force that a packet of this protocol and port may match (by its
	// other headers): they decide after the allow list, before the block list.
	Signatures []string `json:"signatures,omitempty"`
}

// WhyPacket is the packet Why was asked for.
type WhyPacket struct {
	Proto string `json:"proto,omitempty"` // tcp, udp, icmp; "": none (no protocol rule applies)
	Port  uint16 `json:"port,omitempty"`
	SYN   bool   `json:"syn,omitempty"` // tcp: a SYN without ACK, the first packet of a connection
	Bytes uint32 `json:"bytes"`         // the frame's length, for byte limits
}

// WhyStep is the step that decides: the datapath's action and reason (the
// labels of the packet counters and bulwark_packets_total), and what it is.
type WhyStep struct {
	Action string `json:"action"` // pass, drop or would_drop
	Reason string `json:"reason"` // allowlist, blocklist, verdict, ratelimit or passed
	Detail string `json:"detail"` // the list, verdict or rule, in words
	Rule   string `json:"rule,omitempty"`
}

// WhyEntry is a list entry that matches the source.
type WhyEntry struct {
	CIDR      string  `json:"cidr"`
	List      string  `json:"list"`
	Origin    string  `json:"origin"` // config, file, feed or runtime
	ExpiresIn float64 `json:"expires_in_seconds,omitempty"`
}

// WhyVerdict is the verdict in force on the source, with the score it was
// issued at.
type WhyVerdict struct {
	Action    string  `json:"action"` // block or throttle
	Origin    string  `json:"origin"`
	Score     uint16  `json:"score"`
	ExpiresIn float64 `json:"expires_in_seconds"`
}

// WhyLimit is one limit the packet meets and its bucket now. Tokens and
// ByteTokens are what the bucket holds at the rates scaled by Multiplier;
// absent when the limit has no such rate.
type WhyLimit struct {
	Rule        string   `json:"rule"`             // default, a rule's name, aggregate or new_sources
	Bucket      string   `json:"bucket,omitempty"` // whose bucket: the source or its aggregate prefix ("" for the global new-sources ceiling)
	PPS         uint64   `json:"pps,omitempty"`
	Burst       uint64   `json:"burst,omitempty"`
	BytesPerSec uint64   `json:"bytes_per_second,omitempty"`
	ByteBurst   uint64   `json:"byte_burst,omitempty"`
	Multiplier  float64  `json:"multiplier"`
	Tokens      *float64 `json:"tokens,omitempty"`
	ByteTokens  *float64 `json:"byte_tokens,omitempty"`
	Fresh       bool     `json:"fresh"`    // the bucket has no state yet: it is full
	Conforms    bool     `json:"conforms"` // the packet fits in the bucket now
	Reached     bool     `json:"reached"`  // the datapath gets to it (an earlier exceeded limit decides first)
}

// WhyScore is the source's risk score when the reputation engine runs.
type WhyScore struct {
	Score      float64 `json:"score"`
	Tracked    bool    `json:"tracked"` // the engine has state for the source
	ThrottleAt float64 `json:"throttle_at"`
	BlockAt    float64 `json:"block_at"`
	Exempt     bool    `json:"exempt"`
}

// CrowdSecStatus is the reply of GET /v1/crowdsec: the CrowdSec bouncer's
// (and source's) state.
type CrowdSecStatus struct {
	LAPI      string `json:"lapi"`
	Reachable bool   `json:"reachable"` // the last pull worked
	// Decisions is how many decisions the bouncer holds; Active how many
	// sources and ranges it has in force (one per target, the strongest).
	Decisions int       `json:"decisions"`
	Active    int       `json:"active"`
	Pulls     uint64    `json:"pulls"`
	Startups  uint64    `json:"startup_pulls"` // full pulls: the first, and each after an error
	LastPull  time.Time `json:"last_pull"`
	// LastStartupApplySeconds is how long applying the last full pull took.
	LastStartupApplySeconds float64 `json:"last_startup_apply_seconds"`
	// LastStartupAnswerSeconds is how long the LAPI took to begin its
	// answer to the last full pull (the request to its headers): its own
	// listing of every decision, before any of it reaches the agent.
	LastStartupAnswerSeconds float64   `json:"last_startup_answer_seconds"`
	Errors                   uint64    `json:"errors"`
	LastError                string    `json:"last_error,omitempty"`
	LastErrorAt              time.Time `json:"last_error_at,omitzero"`
	// Source says whether verdicts are pushed to the LAPI as alerts.
	Source        bool   `json:"source"`
	AlertsPushed  uint64 `json:"alerts_pushed"`
	AlertsDropped uint64 `json:"alerts_dropped"`
	AlertsQueued  int    `json:"alerts_queued"`
	PushErrors    uint64 `json:"push_errors"`
	LastPushError string `json:"last_push_error,omitempty"`
}
