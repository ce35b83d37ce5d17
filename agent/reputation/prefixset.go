package reputation

import (
	"net/netip"
	"slices"
)

// PrefixSet answers "is this address in any of these prefixes" with one
// map lookup per distinct prefix length (at most 33 for IPv4, 129 for
// IPv6), whatever the number of prefixes.
type PrefixSet struct {
	bits4, bits6 []int
	set          map[netip.Prefix]struct{}
}

// NewPrefixSet builds a set; IPv4-mapped prefixes are unmapped.
func NewPrefixSet(ps []netip.Prefix) *PrefixSet {
	s := &PrefixSet{set: make(map[netip.Prefix]struct{}, len(ps))}
	seen4, seen6 := map[int]bool{}, map[int]bool{}
	for _, p := range ps {
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		p = p.Masked()
		s.set[p] = struct{}{}
		if p.Addr().Is4() {
			if !seen4[p.Bits()] {
				seen4[p.Bits()] = true
				s.bits4 = append(s.bits4, p.Bits())
			}
		} else if !seen6[p.Bits()] {
			seen6[p.Bits()] = true
			s.bits6 = append(s.bits6, p.Bits())
		}
	}
	slices.Sort(s.bits4)
	slices.Sort(s.bits6)
	return s
}

// Len is the number of prefixes.
func (s *PrefixSet) Len() int {
	if s == nil {
		return 0
	}
	return len(s.set)
}

// Contains reports whether a is in one of the prefixes.
func (s *PrefixSet) Contains(a netip.Addr) bool {
	if s == nil {
		return false
	}
	a = a.Unmap()
	lens := s.bits6
	if a.Is4() {
		lens = s.bits4
	}
	for _, b := range lens {
		p, _ := a.Prefix(b)
		if _, ok := s.set[p]; ok {
			return true
		}
	}
	return false
}
