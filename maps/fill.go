package maps

// MapFill is how full one map is: the entries it holds and its max_entries.
type MapFill struct {
	Map          string
	Entries, Max int
}

// ListFill is the fill of the allow and block lists' maps, from the tallies
// their writers keep (no map is read): entries whose TTL has passed still
// take their slot until they are deleted.
func (s *Set) ListFill() []MapFill {
	var out []MapFill
	for _, l := range []*List{s.Allow, s.Block} {
		t := &l.tally
		t.mu.Lock()
		h4, n4, h6, n6 := t.hosts4, t.ipv4-t.hosts4, t.hosts6, t.ipv6-t.hosts6
		t.mu.Unlock()
		out = append(out,
			MapFill{l.name + "_hosts4", h4, int(l.hosts4.MaxEntries())},
			MapFill{l.name + "_nets4", n4, int(l.nets4.MaxEntries())},
			MapFill{l.name + "_hosts6", h6, int(l.hosts6.MaxEntries())},
			MapFill{l.name + "_nets6", n6, int(l.nets6.MaxEntries())})
	}
	return out
}

// MaxSources is the sources map's max_entries.
func (s *Set) MaxSources() int { return int(s.m.Sources.MaxEntries()) }

// MaxVerdicts is the verdicts map's max_entries.
func (s *Set) MaxVerdicts() int { return int(s.m.Verdicts.MaxEntries()) }
