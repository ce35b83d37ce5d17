package api

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// Actions are the names of the datapath's actions, in the order of its
// enum (the agent's tests check them against the datapath's).
var Actions = []string{"pass", "drop", "would_drop"}

// Reasons are the names of the datapath's reasons, in the order of its
// enum (the agent's tests check them against the datapath's).
var Reasons = []string{"passed", "allowlist", "blocklist", "verdict", "ratelimit", "malformed", "non_ip", "signature"}

// SnapLen is how many bytes of a dropped frame a sample carries at most
// (the agent's tests check it against the datapath's).
const SnapLen = 128

// Event is one sampled drop (GET /v1/capture; also what the flight
// recorder writes).
type Event struct {
	// Time is the wall-clock time the XDP program saw the packet.
	Time time.Time `json:"time"`
	// Iface is the name of the receiving interface ("if<N>" if unknown).
	Iface string `json:"iface"`
	// Action is one of Actions: "pass", "drop" or "would_drop".
	Action string `json:"action"`
	// Reason is one of Reasons, e.g. "ratelimit" or "blocklist".
	Reason string `json:"reason"`
	// Rule is the rule id (reason ratelimit) or the list id (reasons
	// allowlist and blocklist); 0 otherwise.
	Rule uint32 `json:"rule"`
	// RuleName is the name of Rule, if the agent knows it.
	RuleName string `json:"rule_name,omitempty"`
	// PktLen is the original length of the frame.
	PktLen int `json:"pkt_len"`
	// Data is the start of the frame (Ethernet), at most SnapLen bytes.
	Data []byte `json:"data"`
}

// Comment returns the pcapng packet comment describing e, e.g.
// "reason=ratelimit rule=dns rule_id=3 action=drop iface=eth0 len=1514".
// rule is the rule name if known, else the id; rule and rule_id are left
// out when the reason carries no rule or list id and Rule is 0.
func (e Event) Comment() string {
	var b strings.Builder
	b.WriteString("reason=")
	b.WriteString(e.Reason)
	if e.Rule != 0 || e.RuleName != "" || reasonHasRule(e.Reason) {
		id := strconv.FormatUint(uint64(e.Rule), 10)
		b.WriteString(" rule=")
		if e.RuleName != "" {
			b.WriteString(e.RuleName)
		} else {
			b.WriteString(id)
		}
		b.WriteString(" rule_id=")
		b.WriteString(id)
	}
	b.WriteString(" action=")
	b.WriteString(e.Action)
	b.WriteString(" iface=")
	b.WriteString(e.Iface)
	b.WriteString(" len=")
	b.WriteString(strconv.Itoa(e.PktLen))
	return b.String()
}

// reasonHasRule reports the reasons whose Rule is a rule or list id.
func reasonHasRule(reason string) bool {
	switch reason {
	case "ratelimit", "allowlist", "blocklist":
		return true
	}
	return false
}

// CaptureFilter selects sampled drops. An empty field matches anything.
type CaptureFilter struct {
	// Reason is one of Reasons, e.g. "ratelimit".
	Reason string `json:"reason,omitempty"`
	// Action is one of Actions, e.g. "drop".
	Action string `json:"action,omitempty"`
}

// Validate reports an unknown reason or action name, so that a filter that
// would never match is refused.
func (f CaptureFilter) Validate() error {
	if f.Reason != "" && !slices.Contains(Reasons, f.Reason) {
		return fmt.Errorf("unknown reason %q (want one of %s)", f.Reason, strings.Join(Reasons, ", "))
	}
	if f.Action != "" && !slices.Contains(Actions, f.Action) {
		return fmt.Errorf("unknown action %q (want one of %s)", f.Action, strings.Join(Actions, ", "))
	}
	return nil
}

// Match reports whether e passes the filter.
func (f CaptureFilter) Match(e Event) bool {
	return (f.Reason == "" || f.Reason == e.Reason) && (f.Action == "" || f.Action == e.Action)
}

// WritePcap writes events to w as a classic pcap file (LinkType Ethernet,
// nanosecond timestamps) with each event's original time and length, for
// `bulwark capture -w FILE`. Reason and rule are not representable in
// classic pcap; a client can print Event.Comment alongside.
func WritePcap(w io.Writer, events []Event) error {
	snap := uint32(SnapLen)
	for _, e := range events {
		if len(e.Data) > int(snap) {
			snap = uint32(len(e.Data))
		}
	}
	pw := pcapgo.NewWriterNanos(w)
	if err := pw.WriteFileHeader(snap, layers.LinkTypeEthernet); err != nil {
		return fmt.Errorf("write pcap header: %w", err)
	}
	for i, e := range events {
		ci := gopacket.CaptureInfo{
			Timestamp:     e.Time,
			CaptureLength: len(e.Data),
			Length:        max(e.PktLen, len(e.Data)),
		}
		if err := pw.WritePacket(ci, e.Data); err != nil {
			return fmt.Errorf("write pcap packet %d: %w", i, err)
		}
	}
	return nil
}
