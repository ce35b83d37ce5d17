package summary

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"
)

// Defaults of the detection rule (the fleet block's detection sub-block).
const (
	DefaultMinHosts = 3
	DefaultMinPorts = 12
)

// Rule flags a source seen on at least MinHosts hosts and at least MinPorts
// distinct destination ports (fleet-wide, the merged sketch's estimate) in
// one window.
type Rule struct {
	MinHosts, MinPorts int
}

// Validate refuses a rule that would flag any single host's traffic.
func (r Rule) Validate() error {
	if r.MinHosts < 2 || r.MinHosts > 100000 {
		return fmt.Errorf("min_hosts %d: want 2 to 100000 (one host flags alone)", r.MinHosts)
	}
	if r.MinPorts < 2 || r.MinPorts > 200 {
		return fmt.Errorf("min_ports %d: want 2 to 200 (a 256-bit sketch counts within 5%% up to 200)", r.MinPorts)
	}
	return nil
}

// source is the merged view of one source in a window.
type source struct {
	ports   Sketch // OR of every host's sketch
	hosts   uint32 // hosts that reported it
	portSum uint64 // sum over hosts of each host's distinct ports (rounded estimate)
	packets uint64 // sum over hosts (saturating)
}

// Window merges the summaries of one window from many agents. Each node
// counts once: a second summary from a node already merged is ignored, so
// redelivery cannot inflate a count. Without a MaxSources cap, merging is
// commutative and associative: the result depends only on the set of
// summaries; with a cap, which sources are dropped depends on the order
// (the aggregator merges in stream order, the same for every aggregator).
type Window struct {
	Start  time.Time
	Length time.Duration
	// MaxSources caps the sources held (0: no cap); a new source over it is
	// counted in Dropped and not merged.
	MaxSources int
	// Dropped counts sources left out by MaxSources; Omitted adds up what
	// the agents left out of their summaries.
	Dropped, Omitted uint64

	nodes   map[string]struct{}
	sources map[netip.Prefix]*source
}

// NewWindow starts merging the window at start of length.
func NewWindow(start time.Time, length time.Duration, maxSources int) (*Window, error) {
	if err := checkWindow(start, length); err != nil {
		return nil, fmt.Errorf("%s: %w", errPrefix, err)
	}
	return &Window{Start: start.UTC(), Length: length, MaxSources: maxSources,
		nodes: map[string]struct{}{}, sources: map[netip.Prefix]*source{}}, nil
}

// End is the window's end.
func (w *Window) End() time.Time { return w.Start.Add(w.Length) }

// Nodes are the nodes merged, sorted.
func (w *Window) Nodes() []string {
	out := make([]string, 0, len(w.nodes))
	for n := range w.nodes {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Add merges s; it reports false (and changes nothing) when s's node is
// already merged, and an error when s is of another window.
func (w *Window) Add(s *Summary) (bool, error) {
	if !s.Start.Equal(w.Start) || s.Length != w.Length {
		return false, fmt.Errorf("%s from %s: window %s+%s, not %s+%s", errPrefix, s.Node,
			s.Start.UTC().Format(time.RFC3339), s.Length, w.Start.Format(time.RFC3339), w.Length)
	}
	if _, dup := w.nodes[s.Node]; dup {
		return false, nil
	}
	w.nodes[s.Node] = struct{}{}
	w.Omitted = addSat(w.Omitted, s.OmittedSources)
	for _, e := range s.Entries {
		w.merge(e.Source, source{ports: e.Ports, hosts: 1, portSum: uint64(e.Ports.Ports()), packets: e.Packets})
	}
	return true, nil
}

func (w *Window) merge(p netip.Prefix, x source) {
	m, ok := w.sources[p]
	if !ok {
		if w.MaxSources > 0 && len(w.sources) >= w.MaxSources {
			w.Dropped += uint64(x.hosts)
			return
		}
		m = &source{}
		w.sources[p] = m
	}
	m.ports.Or(x.ports)
	m.hosts += x.hosts
	m.portSum += x.portSum
	m.packets = addSat(m.packets, x.packets)
}

// Merge adds o (the same window, merged from other nodes) into w. Windows
// that share a node cannot be merged (its sources would count twice).
func (w *Window) Merge(o *Window) error {
	if !o.Start.Equal(w.Start) || o.Length != w.Length {
		return errors.New("summary: merge of different windows")
	}
	for n := range o.nodes {
		if _, dup := w.nodes[n]; dup {
			return fmt.Errorf("summary: merge: node %s is in both windows", n)
		}
	}
	for n := range o.nodes {
		w.nodes[n] = struct{}{}
	}
	w.Omitted = addSat(w.Omitted, o.Omitted)
	w.Dropped += o.Dropped
	// Merge in address order so that a MaxSources cap drops the same
	// sources whatever the map order.
	keys := make([]netip.Prefix, 0, len(o.sources))
	for p := range o.sources {
		keys = append(keys, p)
	}
	slices.SortFunc(keys, comparePrefix)
	for _, p := range keys {
		w.merge(p, *o.sources[p])
	}
	return nil
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// Finding is a source the rule flags in a window.
type Finding struct {
	Source netip.Prefix
	// Hosts that saw it; Ports its distinct destination ports fleet-wide;
	// PortsEach the mean distinct ports per host (rounded); Packets the
	// packets all hosts saw from it.
	Hosts, Ports, PortsEach int
	Packets                 uint64
	// Window is the window's length.
	Window time.Duration
}

// Reason explains the finding, e.g. "fleet: seen on 14 hosts, 3 ports each
// (42 distinct) in 60 s".
func (f Finding) Reason() string {
	return fmt.Sprintf("fleet: seen on %d hosts, %d ports each (%d distinct) in %s", f.Hosts, f.PortsEach, f.Ports, seconds(f.Window))
}

func seconds(d time.Duration) string {
	return fmt.Sprintf("%g s", math.Round(d.Seconds()*1000)/1000)
}

// Findings applies r to the merged window: the flagged sources, by address.
func (w *Window) Findings(r Rule) []Finding {
	var out []Finding
	for p, s := range w.sources {
		if int(s.hosts) < r.MinHosts {
			continue
		}
		if s.ports.Ports() < r.MinPorts {
			continue
		}
		out = append(out, Finding{Source: p, Hosts: int(s.hosts), Ports: s.ports.Ports(),
			PortsEach: int((s.portSum + uint64(s.hosts)/2) / uint64(s.hosts)), Packets: s.packets, Window: w.Length})
	}
	slices.SortFunc(out, func(a, b Finding) int { return comparePrefix(a.Source, b.Source) })
	return out
}
