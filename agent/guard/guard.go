// Package guard keeps prefixes that arrive from outside the operator's own
// config (threat feeds today; fleet verdicts, CrowdSec decisions and imports
// later) from cutting the host off. A Guard refuses an entry that is broader
// than the configured limit, or that overlaps protected space: the host's own
// addresses, its default gateways, the allow list and reputation.protect. An
// entry that overlaps protected space is refused whole, never narrowed: a
// narrowed entry would be a list the source never published. Growth bounds
// how much address space one update of a source may add at once.
package guard

import (
	"fmt"
	"math/big"
	"net/netip"
	"slices"
)

// Reasons an entry is refused; they are the values of Refusal.Reason and of
// the reason label of the metrics that count refusals.
const (
	// ReasonBroad is an entry shorter than the limit of its family.
	ReasonBroad = "too_broad"
	// ReasonProtected is an entry that overlaps protected space.
	ReasonProtected = "protected"
)

// Limits bound what an outside source may block.
type Limits struct {
	// MinBits4 and MinBits6 are the shortest prefix lengths accepted; a
	// broader entry is refused.
	MinBits4, MinBits6 int
	// MaxGrowth4 and MaxGrowth6 bound the growth of a source's coverage in
	// one update: at most the addresses of one /MaxGrowth4 (IPv4) or
	// /MaxGrowth6 (IPv6). Zero allows any growth.
	MaxGrowth4, MaxGrowth6 int
}

// Protected is a prefix no outside entry may overlap, and why it is
// protected (shown in logs).
type Protected struct {
	// Prefix is the protected space.
	Prefix netip.Prefix
	// Why names where it comes from, e.g. "host address" or "allow list".
	Why string
}

// Refusal is an entry a Guard refused.
type Refusal struct {
	// Prefix is the refused entry.
	Prefix netip.Prefix
	// Reason is ReasonBroad or ReasonProtected.
	Reason string
	// Overlaps is the protected space the entry overlaps (ReasonProtected).
	Overlaps Protected
}

// String describes the refusal for a log line.
func (r Refusal) String() string {
	if r.Reason == ReasonProtected {
		return fmt.Sprintf("%s overlaps %s (%s)", r.Prefix, r.Overlaps.Prefix, r.Overlaps.Why)
	}
	return fmt.Sprintf("%s is broader than the limit", r.Prefix)
}

// Guard judges entries against Limits and protected space. It is immutable
// and safe for concurrent use.
type Guard struct {
	limits Limits
	// sorted is the protected space sorted by address, to find the
	// protected prefixes that start inside an entry.
	sorted []Protected
	// exact and bits4/bits6 find the protected prefixes that contain an
	// entry: one map lookup per protected prefix length.
	exact        map[netip.Prefix]Protected
	bits4, bits6 []int
}

// New returns a Guard with limits l that protects protect.
func New(l Limits, protect []Protected) *Guard {
	g := &Guard{limits: l, exact: make(map[netip.Prefix]Protected, len(protect))}
	for _, p := range protect {
		q := normal(p.Prefix)
		if !q.IsValid() {
			continue
		}
		if _, dup := g.exact[q]; dup {
			continue
		}
		p.Prefix = q
		g.exact[q] = p
		g.sorted = append(g.sorted, p)
		if q.Addr().Is4() {
			g.bits4 = append(g.bits4, q.Bits())
		} else {
			g.bits6 = append(g.bits6, q.Bits())
		}
	}
	slices.SortFunc(g.sorted, func(a, b Protected) int { return a.Prefix.Addr().Compare(b.Prefix.Addr()) })
	for _, bs := range []*[]int{&g.bits4, &g.bits6} {
		slices.Sort(*bs)
		*bs = slices.Compact(*bs)
	}
	return g
}

// normal masks p and unmaps an IPv4-mapped prefix.
func normal(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked()
}

// Check judges one entry: ok, or the reason it is refused.
func (g *Guard) Check(p netip.Prefix) (r Refusal, ok bool) {
	p = normal(p)
	r.Prefix = p
	minBits, bits := g.limits.MinBits4, g.bits4
	if !p.Addr().Is4() {
		minBits, bits = g.limits.MinBits6, g.bits6
	}
	if p.Bits() < minBits {
		r.Reason = ReasonBroad
		return r, false
	}
	r.Reason = ReasonProtected
	// A protected prefix that contains the entry.
	for _, b := range bits {
		if b > p.Bits() {
			break
		}
		if pr, in := g.exact[netip.PrefixFrom(p.Addr(), b).Masked()]; in {
			r.Overlaps = pr
			return r, false
		}
	}
	// A protected prefix that starts inside the entry.
	i, _ := slices.BinarySearchFunc(g.sorted, p.Addr(), func(e Protected, a netip.Addr) int { return e.Prefix.Addr().Compare(a) })
	if i < len(g.sorted) && p.Contains(g.sorted[i].Prefix.Addr()) {
		r.Overlaps = g.sorted[i]
		return r, false
	}
	return Refusal{}, true
}

// Screen returns the entries of ps the Guard accepts, in order, and the
// refused ones.
func (g *Guard) Screen(ps []netip.Prefix) (kept []netip.Prefix, refused []Refusal) {
	kept = make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		if r, ok := g.Check(p); !ok {
			refused = append(refused, r)
			continue
		}
		kept = append(kept, p)
	}
	return kept, refused
}

// Growth returns an error when what the Guard accepts of next covers more
// space than what it accepts of prev, by more than its limits allow in one
// update (Limits.CheckGrowth). Refused entries do not count: a poisoned
// 0.0.0.0/0 is refused on its own, not a reason to hold back the rest.
func (g *Guard) Growth(prev, next []netip.Prefix) error {
	kp, _ := g.Screen(prev)
	kn, _ := g.Screen(next)
	return g.limits.CheckGrowth(kp, kn)
}

// Coverage is the number of addresses a list of prefixes covers, per
// family, overlaps counted once.
type Coverage struct {
	// V4 and V6 are the covered IPv4 and IPv6 addresses.
	V4, V6 *big.Int
}

// CoverageOf returns the coverage of ps.
func CoverageOf(ps []netip.Prefix) Coverage {
	c := Coverage{V4: new(big.Int), V6: new(big.Int)}
	sorted := make([]netip.Prefix, len(ps))
	for i, p := range ps {
		sorted[i] = normal(p)
	}
	// By address, the broader first at equal addresses: a prefix is inside
	// the last one counted, or disjoint from everything counted. Feed lists
	// come sorted so.
	if !slices.IsSortedFunc(sorted, netip.Prefix.Compare) {
		slices.SortFunc(sorted, netip.Prefix.Compare)
	}
	var last netip.Prefix
	size := new(big.Int)
	for _, p := range sorted {
		if !p.IsValid() || (last.IsValid() && last.Contains(p.Addr())) {
			continue
		}
		last = p
		sum := c.V6
		if p.Addr().Is4() {
			sum = c.V4
		}
		sum.Add(sum, size.Lsh(big.NewInt(1), uint(p.Addr().BitLen()-p.Bits())))
	}
	return c
}

// CheckGrowth returns an error when the coverage of next exceeds that of
// prev (nil: nothing before) by more than the limits allow in one update.
func (l Limits) CheckGrowth(prev, next []netip.Prefix) error {
	before, after := CoverageOf(prev), CoverageOf(next)
	for _, f := range []struct {
		name          string
		width, max    int
		before, after *big.Int
	}{
		{"IPv4", 32, l.MaxGrowth4, before.V4, after.V4},
		{"IPv6", 128, l.MaxGrowth6, before.V6, after.V6},
	} {
		if f.max == 0 {
			continue
		}
		growth := new(big.Int).Sub(f.after, f.before)
		limit := new(big.Int).Lsh(big.NewInt(1), uint(f.width-f.max))
		if growth.Cmp(limit) > 0 {
			return fmt.Errorf("%s coverage would grow at once from %s to %s addresses: by %s (at least a /%d), more than the limit of one /%d (%s)",
				f.name, f.before, f.after, growth, f.width-growth.BitLen()+1, f.max, limit)
		}
	}
	return nil
}
