// Package listset holds large allow and block lists compactly: each prefix
// as a fixed-size Key (18 bytes, no pointers, so the garbage collector does
// not scan them), kept in slices sorted by key. A million-entry list costs
// about 18 MB as Keys and 24 MB as a Set, where a map[netip.Prefix]uint32
// costs several times that; sorted slices are also what the agent's
// reconcile merges against the kernel's entries.
package listset

import (
	"cmp"
	"encoding/binary"
	"iter"
	"net/netip"
	"slices"
)

// Key is a normalised prefix (masked, IPv4-mapped IPv6 unmapped, no zone)
// in a fixed size: the address in 16 bytes (an IPv4 address in the first
// four), its length in bits and its family.
type Key struct {
	addr [16]byte
	bits uint8
	v6   bool
}

// KeyOf returns the key of p, which must be normalised (as the config's
// parser and maps.List return prefixes); its zone, if any, is dropped.
func KeyOf(p netip.Prefix) Key {
	k := Key{bits: uint8(p.Bits())}
	if a := p.Addr(); a.Is4() {
		a4 := a.As4()
		copy(k.addr[:], a4[:])
	} else {
		k.addr, k.v6 = a.As16(), true
	}
	return k
}

// Prefix returns the prefix k stands for.
func (k Key) Prefix() netip.Prefix {
	if !k.v6 {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte(k.addr[:4])), int(k.bits))
	}
	return netip.PrefixFrom(netip.AddrFrom16(k.addr), int(k.bits))
}

// Is4 reports whether k is an IPv4 prefix.
func (k Key) Is4() bool { return !k.v6 }

// IsHost reports whether k is a single address (a /32 or a /128).
func (k Key) IsHost() bool { return (!k.v6 && k.bits == 32) || k.bits == 128 }

// Compare orders keys: IPv4 before IPv6, then by address, then by length.
func Compare(a, b Key) int {
	if a.v6 != b.v6 {
		if a.v6 {
			return 1
		}
		return -1
	}
	if c := cmp.Compare(binary.BigEndian.Uint64(a.addr[:8]), binary.BigEndian.Uint64(b.addr[:8])); c != 0 {
		return c
	}
	if c := cmp.Compare(binary.BigEndian.Uint64(a.addr[8:]), binary.BigEndian.Uint64(b.addr[8:])); c != 0 {
		return c
	}
	return cmp.Compare(a.bits, b.bits)
}

// SortKeys sorts keys and removes repeated ones, in place, and returns the
// result; when that leaves much of the array unused (repeats, or a
// capacity sized by lines that held comments) the result is a copy of its
// own size. IPv4 keys, the bulk of large lists, are sorted as 40-bit
// numbers (address and length) by a radix sort, IPv6 keys by Compare.
func SortKeys(keys []Key) []Key {
	v4 := make([]uint64, 0, len(keys))
	var v6 []Key
	for _, k := range keys {
		if k.v6 {
			v6 = append(v6, k)
		} else {
			v4 = append(v4, uint64(binary.BigEndian.Uint32(k.addr[:4]))<<8|uint64(k.bits))
		}
	}
	radixSort(v4, 5)
	slices.SortFunc(v6, Compare)
	keys = keys[:0]
	for i, u := range v4 {
		if i == 0 || u != v4[i-1] {
			k := Key{bits: uint8(u)}
			binary.BigEndian.PutUint32(k.addr[:4], uint32(u>>8))
			keys = append(keys, k)
		}
	}
	keys = append(keys, slices.Compact(v6)...)
	if cap(keys)-len(keys) > len(keys)/8 {
		return slices.Clone(keys)
	}
	return slices.Clip(keys)
}

// radixSort sorts a, whose values have at most width low bytes set, by a
// least-significant-digit radix sort, a byte a pass; a pass in which every
// value has the same byte is skipped.
func radixSort(a []uint64, width int) {
	if len(a) < 2 {
		return
	}
	src, dst := a, make([]uint64, len(a))
	for shift := 0; shift < 8*width; shift += 8 {
		var at [256]int
		for _, v := range src {
			at[byte(v>>shift)]++
		}
		if at[byte(src[0]>>shift)] == len(src) {
			continue
		}
		pos := 0
		for d, n := range at {
			at[d], pos = pos, pos+n
		}
		for _, v := range src {
			d := byte(v >> shift)
			dst[at[d]] = v
			at[d]++
		}
		src, dst = dst, src
	}
	copy(a, src)
}

// Entry is a key on a list id.
type Entry struct {
	Key Key
	ID  uint32
}

// Set is a list's entries, sorted by key, each key once.
type Set []Entry

// Build sorts entries by key and keeps one entry per key: the one with the
// highest list id (the config gives later sources higher ids, so the last
// source that names a prefix wins). It works in place.
func Build(entries []Entry) Set {
	slices.SortFunc(entries, func(a, b Entry) int {
		if c := Compare(a.Key, b.Key); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	out := entries[:0]
	for i, e := range entries {
		if i+1 < len(entries) && entries[i+1].Key == e.Key {
			continue
		}
		out = append(out, e)
	}
	return slices.Clip(Set(out))
}

// Index returns the position of k in s and whether s holds it.
func (s Set) Index(k Key) (int, bool) {
	return slices.BinarySearchFunc(s, k, func(e Entry, k Key) int { return Compare(e.Key, k) })
}

// IndexFrom is Index for a key not less than s[from]'s: it gallops from
// from, so that keys looked up in ascending order cost a few comparisons
// each, near the last, instead of a search of the whole set.
func (s Set) IndexFrom(from int, k Key) (int, bool) {
	lo, hi := from, from
	for step := 1; hi < len(s) && Compare(s[hi].Key, k) < 0; step <<= 1 {
		lo, hi = hi+1, hi+step
	}
	i, found := Set(s[lo:min(hi+1, len(s))]).Index(k)
	return lo + i, found
}

// Lookup returns the list id of prefix p (normalised) and whether s holds it.
func (s Set) Lookup(p netip.Prefix) (uint32, bool) {
	if i, ok := s.Index(KeyOf(p)); ok {
		return s[i].ID, true
	}
	return 0, false
}

// All yields every prefix of s with its list id, in key order.
func (s Set) All() iter.Seq2[netip.Prefix, uint32] {
	return func(yield func(netip.Prefix, uint32) bool) {
		for _, e := range s {
			if !yield(e.Key.Prefix(), e.ID) {
				return
			}
		}
	}
}
