package maps

import (
	"fmt"
	"hash/maphash"
	"math/bits"

	"github.com/bulwark-filter/bulwark/bpf"
)

// verdictFilter is a Bloom filter of the sources the verdict map may hold
// an entry on. It is filled by one batch walk of the map at its first use
// (pinned maps keep the entries of an earlier run) and by every verdict
// the Set writes after that. Only the Set's writers add verdicts (the
// datapath only deletes the expired ones, and the pin directory's lock
// keeps a second agent out), so a source the filter does not hold has no
// entry in the map: a writer that merges with what the map holds (the
// fleet applier) looks up only the others. Deleted and expired entries
// stay in it until it is built again; it is, by a walk, once half its bits
// are set. s.mu guards it.
type verdictFilter struct {
	words []uint64 // the filter's bits; nil until the first walk
	set   int      // bits set in words
	seed  maphash.Seed
	// found is the entries the last walk found, added the sources added
	// since: a filter over half full is built again only after as many
	// adds as the walk found, so the walks cost no more than the writes.
	found, added int
	// full: the last walk found too many entries for the filter's size
	// (over filterMaxBits/filterBitsPer): every source may be held.
	full bool
}

// The filter's shape: filterBitsPer bits per entry of the map (rounded up
// to a power of two in all, at most filterMaxBits, 8 MiB), filterProbes
// bits per source. A filter over a full map then answers "may hold" for a
// source it does not hold about once in a thousand ((1-e^(-6/16))^6 for an
// unblocked filter, a little more in blocks); a walk that leaves over
// filterFullAt of its bits set (a map larger than the cap allows) makes it
// answer "may hold" for every source instead.
const (
	filterBitsPer  = 16
	filterProbes   = 6
	filterFullAt   = 0.75
	filterMinWords = 64
)

// filterMaxBits caps the filter's size (a variable for the tests of a map
// over the cap).
var filterMaxBits uint64 = 1 << 26

// Where a source's bits are: the filter is blocked, every source's
// filterProbes bits are in one block of blockWords words (a cache line),
// so a test costs one cache miss, not one per bit.
const (
	blockWords = 8
	blockBits  = 9 // bits of a bit's index in its block (512 bits)
)

// place is the index of key's block (its first word) and a word whose
// top filterProbes*blockBits bits are the indexes of its bits there.
func (f *verdictFilter) place(key *[16]byte) (block int, idx uint64) {
	h := maphash.Bytes(f.seed, key[:])
	block = int(h&uint64(len(f.words)/blockWords-1)) * blockWords
	// The indexes from a remix of h (splitmix64's), not from the bits
	// that chose the block.
	idx = (h ^ h>>31) * 0xbf58476d1ce4e5b9
	return block, idx ^ idx>>27
}

// add records that the map may hold an entry on key.
func (f *verdictFilter) add(key *[16]byte) {
	if f.words == nil {
		return // the first walk will find it
	}
	f.added++
	block, idx := f.place(key)
	for range filterProbes {
		i := idx >> (64 - blockBits)
		idx <<= blockBits
		if w := &f.words[block+int(i>>6)]; *w&(1<<(i&63)) == 0 {
			*w |= 1 << (i & 63)
			f.set++
		}
	}
}

// mayHold is whether the map may hold an entry on key: false is sure.
func (f *verdictFilter) mayHold(key *[16]byte) bool {
	if f.full {
		return true
	}
	block, idx := f.place(key)
	for range filterProbes {
		i := idx >> (64 - blockBits)
		idx <<= blockBits
		if f.words[block+int(i>>6)]&(1<<(i&63)) == 0 {
			return false
		}
	}
	return true
}

// stale is whether the filter is to be built (again) before it answers:
// never built, or over half its bits set after enough adds.
func (f *verdictFilter) stale() bool {
	if f.words == nil {
		return true
	}
	crowded := f.full || f.set*2 > len(f.words)*64
	return crowded && f.added >= max(f.found, filterMinWords*64)
}

// filterWords is the size of the filter of a map of maxEntries entries,
// in words of 64 bits: filterBitsPer bits an entry, rounded up to a power
// of two, at least filterMinWords words and at most filterMaxBits bits.
func filterWords(maxEntries uint32) int {
	n := max(uint64(maxEntries), 1) * filterBitsPer
	return int(min(max(uint64(1)<<bits.Len64(n-1), filterMinWords*64), filterMaxBits) / 64)
}

// buildVerdictFilterLocked fills the verdict filter anew from one batch
// walk of the verdict map; s.mu must be held (no verdict is added during
// the walk; the datapath's deletes may or may not be seen, which only
// leaves a source in the filter). After a failed walk the filter is not
// built: the next use walks again.
func (s *Set) buildVerdictFilterLocked() error {
	f := &s.vf
	words := f.words
	if words == nil {
		words = make([]uint64, filterWords(s.m.Verdicts.MaxEntries()))
	} else {
		clear(words)
	}
	f.words, f.set, f.found, f.added, f.full = nil, 0, 0, 0, false
	g := verdictFilter{words: words, seed: maphash.MakeSeed()}
	err := walk(s.m.Verdicts, func(ks []bpf.BulwarkSrcKey, _ []bpf.BulwarkVerdict) {
		for i := range ks {
			g.add(&ks[i].Addr)
		}
	})
	if err != nil {
		return fmt.Errorf("read the verdict map's sources: %w", err)
	}
	g.found, g.added = g.added, 0
	g.full = float64(g.set) > filterFullAt*float64(len(words)*64)
	*f = g
	return nil
}

// MayHoldVerdicts appends to may, for each of vs, whether the verdict map
// may hold an entry (expired or not) on its Source: false is sure, the map
// held none when the call returned (a writer may add one after). A writer that merges a verdict with the one the
// map holds (Verdict) needs the lookup only where it is true. The first
// call walks the map once (batch reads); an error of that walk is returned
// with every answer true.
func (s *Set) MayHoldVerdicts(vs []VerdictEntry, may []bool) ([]bool, error) {
	prefix := s.IPv6Prefix()
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	if s.vf.stale() {
		err = s.buildVerdictFilterLocked()
	}
	for _, v := range vs {
		key := SourceKey(v.Source.Addr(), prefix)
		may = append(may, err != nil || s.vf.mayHold(&key))
	}
	return may, err
}
