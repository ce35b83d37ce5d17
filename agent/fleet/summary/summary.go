// Package summary holds the mergeable window summaries of fleet-wide
// detection: what one agent saw in one window (per source, the distinct
// destination ports it probed and the packets it sent), their compact
// encoding bounded to MaxSize, and their merge across agents with the rule
// that flags a source no single host flags: seen on at least MinHosts hosts
// and at least MinPorts distinct ports fleet-wide in one window.
//
// Distinct ports are the datapath's own 256-bit sketch (bpf/sources.h: each
// destination port sets bit (port*2654435761)>>24), OR-ed over the window on
// each host and across hosts, and counted by linear counting. The hash is
// the same on every host, so the OR of two hosts' sketches is the sketch of
// the union of their ports: merging is exact up to the sketch's collisions.
package summary

import (
	"fmt"
	"math"
	"math/bits"
	"net/netip"
	"time"
)

// SketchBits is the width of a port sketch.
const SketchBits = 256

// Sketch is a set of destination ports hashed into 256 bits, laid out as
// the datapath's src_state.port_bits.
type Sketch [4]uint64

// AddPort adds port p as the datapath does.
func (s *Sketch) AddPort(p uint16) {
	h := (uint32(p) * 2654435761) >> 24
	s[(h>>6)&3] |= 1 << (h & 63)
}

// Or adds every port of o.
func (s *Sketch) Or(o Sketch) {
	for i := range s {
		s[i] |= o[i]
	}
}

// Bits is the number of bits set.
func (s Sketch) Bits() int {
	n := 0
	for _, w := range s {
		n += bits.OnesCount64(w)
	}
	return n
}

// Estimate is the distinct ports the sketch holds, by linear counting:
// m ln(m / zeros), m = 256; a full sketch reads as m ln m (about 1420).
func (s Sketch) Estimate() float64 {
	zeros := max(SketchBits-s.Bits(), 1)
	return SketchBits * math.Log(float64(SketchBits)/float64(zeros))
}

// Ports is Estimate rounded to the nearest integer.
func (s Sketch) Ports() int { return int(math.Round(s.Estimate())) }

// Entry is one source in one agent's window.
type Entry struct {
	// Source is an IPv4 host (/32) or an IPv6 prefix (the tracking prefix).
	Source netip.Prefix
	// Ports are the destination ports it probed on this host in the window.
	Ports Sketch
	// Packets it sent to this host in the window.
	Packets uint64
}

// Summary is what one agent saw in one window.
type Summary struct {
	// Node is the agent's fleet node name.
	Node string
	// Start is the window's start (wall clock, a multiple of Length since
	// the Unix epoch, so every agent's windows coincide); Length its length.
	Start  time.Time
	Length time.Duration
	// Entries are the sources it kept, most distinct ports first, then most
	// packets, then by address.
	Entries []Entry
	// OmittedSources and OmittedPackets are what was left out to keep the
	// summary within MaxSize (or the collector's source cap).
	OmittedSources, OmittedPackets uint64
}

// End is the window's end.
func (s *Summary) End() time.Time { return s.Start.Add(s.Length) }

// validNode reports whether n is a fleet node name: [A-Za-z0-9_-], 1 to 64
// characters.
func validNode(n string) bool {
	if len(n) == 0 || len(n) > 64 {
		return false
	}
	for _, c := range []byte(n) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// checkWindow validates a window's start and length.
func checkWindow(start time.Time, length time.Duration) error {
	if length < time.Second || length > time.Hour || length%time.Second != 0 {
		return fmt.Errorf("window length %s: want whole seconds, 1s to 1h", length)
	}
	if start.UnixNano()%int64(length) != 0 {
		return fmt.Errorf("window start %s is not a multiple of its length %s", start.UTC().Format(time.RFC3339Nano), length)
	}
	return nil
}

// WindowStart is the start of the window of length that holds t.
func WindowStart(t time.Time, length time.Duration) time.Time {
	ns := t.UnixNano()
	return time.Unix(0, ns-ns%int64(length)).UTC()
}
