package maps

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"

	"github.com/bulwark-filter/bulwark/bpf"
)

// readBatch is how many entries one batch read returns at most.
const readBatch = 16384

// walk reads every entry of m, in batch syscalls where the map type has
// them (one by one where it has not), and calls fn with each batch. Readers
// may walk while writers write: an entry written or deleted meanwhile may
// or may not be seen.
func walk[K, V any](m *ebpf.Map, fn func(keys []K, vals []V)) error {
	keys := make([]K, readBatch)
	vals := make([]V, readBatch)
	var cursor ebpf.MapBatchCursor
	for first := true; ; first = false {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		if first && errors.Is(err, ebpf.ErrNotSupported) {
			return walkEach(m, fn)
		}
		if n > 0 {
			fn(keys[:n], vals[:n])
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("batch read of %s: %w", mapName(m), err)
		}
	}
}

// walkEach is walk for maps without batch lookups.
func walkEach[K, V any](m *ebpf.Map, fn func(keys []K, vals []V)) error {
	var k [1]K
	var v [1]V
	it := m.Iterate()
	for it.Next(&k[0], &v[0]) {
		fn(k[:], v[:])
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read %s: %w", mapName(m), err)
	}
	return nil
}

// each calls fn with every entry of the list, read in batches.
func (l *List) each(fn func(p netip.Prefix, v *bpf.BulwarkListValue)) error {
	if err := walk(l.hosts4, func(ks [][4]byte, vs []bpf.BulwarkListValue) {
		for i := range ks {
			fn(netip.PrefixFrom(netip.AddrFrom4(ks[i]), 32), &vs[i])
		}
	}); err != nil {
		return fmt.Errorf("%s list, IPv4 hosts: %w", l.name, err)
	}
	if err := walk(l.hosts6, func(ks [][16]byte, vs []bpf.BulwarkListValue) {
		for i := range ks {
			fn(netip.PrefixFrom(netip.AddrFrom16(ks[i]), 128), &vs[i])
		}
	}); err != nil {
		return fmt.Errorf("%s list, IPv6 hosts: %w", l.name, err)
	}
	if err := walk(l.nets4, func(ks []bpf.BulwarkLpmV4Key, vs []bpf.BulwarkListValue) {
		for i := range ks {
			fn(prefixOf4(ks[i]), &vs[i])
		}
	}); err != nil {
		return fmt.Errorf("%s list, IPv4 prefixes: %w", l.name, err)
	}
	if err := walk(l.nets6, func(ks []bpf.BulwarkLpmV6Key, vs []bpf.BulwarkListValue) {
		for i := range ks {
			fn(netip.PrefixFrom(netip.AddrFrom16(ks[i].Addr), int(ks[i].Prefixlen)), &vs[i])
		}
	}); err != nil {
		return fmt.Errorf("%s list, IPv6 prefixes: %w", l.name, err)
	}
	return nil
}

// expired is whether a list entry's TTL has passed at monotonic time now.
func expired(v *bpf.BulwarkListValue, now uint64) bool {
	return v.ExpiresNs != 0 && v.ExpiresNs <= now
}

// ListCount is how many entries a list holds, by address family.
type ListCount struct{ IPv4, IPv6 int }

// Count counts the list's entries in force at monotonic time now (those
// whose TTL has passed are left out), reading the maps in batches.
func (l *List) Count(now uint64) (ListCount, error) {
	var c ListCount
	err := l.each(func(p netip.Prefix, v *bpf.BulwarkListValue) {
		switch {
		case expired(v, now):
		case p.Addr().Is4():
			c.IPv4++
		default:
			c.IPv6++
		}
	})
	return c, err
}

// ListCounts counts the entries in force of the allow and block lists, by
// list name.
func (s *Set) ListCounts(now uint64) (map[string]ListCount, error) {
	out := make(map[string]ListCount, 2)
	for _, l := range []*List{s.Allow, s.Block} {
		c, err := l.Count(now)
		if err != nil {
			return nil, err
		}
		out[l.name] = c
	}
	return out, nil
}

// Expired lists the entries whose TTL has passed at monotonic time now.
func (l *List) Expired(now uint64) ([]netip.Prefix, error) {
	var out []netip.Prefix
	err := l.each(func(p netip.Prefix, v *bpf.BulwarkListValue) {
		if expired(v, now) {
			out = append(out, p)
		}
	})
	return out, err
}

// DeleteExpired deletes those of prefixes whose entry is still expired at
// monotonic time now: one written again meanwhile (a new TTL) stays.
func (l *List) DeleteExpired(prefixes []netip.Prefix, now uint64) error {
	var gone []netip.Prefix
	for _, p := range prefixes {
		p, err := normalise(p)
		if err != nil {
			return fmt.Errorf("%s list: %w", l.name, err)
		}
		var v bpf.BulwarkListValue
		m, key := l.mapKey(p)
		// A trie's lookup is a longest-prefix match: with the prefix's own
		// length as the key's, it finds the entry itself when it exists.
		if err := m.Lookup(key, &v); errors.Is(err, ebpf.ErrKeyNotExist) {
			continue
		} else if err != nil {
			return fmt.Errorf("%s list: look up %s: %w", l.name, p, err)
		}
		if int(v.Prefixlen) == p.Bits() && expired(&v, now) {
			gone = append(gone, p)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	return l.Delete(gone)
}

// CountSources counts the tracked sources, reading the map in batches.
func (s *Set) CountSources() (int, error) {
	n := 0
	err := walk(s.m.Sources, func(ks []bpf.BulwarkSrcKey, _ []bpf.BulwarkSrcState) { n += len(ks) })
	if err != nil {
		return 0, fmt.Errorf("count sources: %w", err)
	}
	return n, nil
}

// VerdictCounts counts the verdicts in force at monotonic time now, by
// action; block and throttle are always in the map.
func (s *Set) VerdictCounts(now uint64) (map[VerdictAction]int, error) {
	out := map[VerdictAction]int{VerdictBlock: 0, VerdictThrottle: 0}
	err := walk(s.m.Verdicts, func(_ []bpf.BulwarkSrcKey, vs []bpf.BulwarkVerdict) {
		for i := range vs {
			if vs[i].ExpiresNs > now {
				out[VerdictAction(vs[i].Action)]++
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("count verdicts: %w", err)
	}
	return out, nil
}
