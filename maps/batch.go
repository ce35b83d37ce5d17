package maps

import (
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"runtime"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bulwark-filter/bulwark/bpf"
)

// readBatch is how many entries one batch read returns at most.
const readBatch = 16384

// walk reads every entry of m, in batch syscalls where the map type has
// them (one by one where it has not), and calls fn with each batch. Readers
// may walk while writers write: an entry written or deleted meanwhile may
// or may not be seen.
func walk[K, V any](m *ebpf.Map, fn func(keys []K, vals []V)) error {
	// A small map needs no large buffers (but room for its fullest bucket).
	n := min(readBatch, max(int(m.MaxEntries()), 256))
	keys := make([]K, n)
	vals := make([]V, n)
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
// whose TTL has passed are left out). It reads the tally its writers keep,
// not the maps: its cost grows with the entries that have a TTL only.
func (l *List) Count(now uint64) ListCount {
	t := &l.tally
	t.mu.Lock()
	defer t.mu.Unlock()
	c := ListCount{IPv4: t.ipv4, IPv6: t.ipv6}
	for p, exp := range t.ttl {
		switch {
		case exp > now:
		case p.Addr().Is4():
			c.IPv4--
		default:
			c.IPv6--
		}
	}
	return c
}

// ListCounts counts the entries in force of the allow and block lists, by
// list name.
func (s *Set) ListCounts(now uint64) map[string]ListCount {
	return map[string]ListCount{s.Allow.name: s.Allow.Count(now), s.Block.name: s.Block.Count(now)}
}

// Expired lists the entries whose TTL has passed at monotonic time now,
// from the tally its writers keep.
func (l *List) Expired(now uint64) []netip.Prefix {
	t := &l.tally
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []netip.Prefix
	for p, exp := range t.ttl {
		if exp <= now {
			out = append(out, p)
		}
	}
	return out
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
		// Lookups are exact (hashes keyed by length and address).
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

// SourceSample is how many tracked sources CountSources reads at least
// before it estimates the rest.
const SourceSample = 1 << 16

// CountSources counts the tracked sources. Up to SourceSample it reads
// them all, in batches. Above, it reads the hash map's buckets in order
// until it has seen SourceSample sources, and scales what it saw by the
// share of buckets read: the kernel hashes keys evenly over the buckets
// (with a random seed), so the estimate is within about 1 % (a standard
// error of 1/sqrt(SourceSample)) and costs a sixteenth of a full read.
func (s *Set) CountSources() (int, error) {
	m := s.m.Sources
	// A hash map has max_entries rounded up to a power of two buckets
	// (kernel/bpf/hashtab.c); the batch cursor is a bucket index.
	buckets := uint64(1) << bits.Len32(m.MaxEntries()-1)
	keys := make([]bpf.BulwarkSrcKey, readBatch)
	vals := make([]bpf.BulwarkSrcState, readBatch)
	var cursor uint32
	seen := 0
	for first := true; ; first = false {
		n, next, err := lookupBatch(m.FD(), first, cursor, unsafe.Pointer(&keys[0]), unsafe.Pointer(&vals[0]), readBatch)
		runtime.KeepAlive(keys)
		runtime.KeepAlive(vals)
		seen += n
		if errors.Is(err, unix.ENOENT) {
			return seen, nil
		}
		if err != nil {
			return 0, fmt.Errorf("count sources: batch read of %s: %w", MapSources, err)
		}
		if seen >= SourceSample && next > 0 && uint64(next) < buckets {
			return int((uint64(seen)*buckets + uint64(next)/2) / uint64(next)), nil
		}
		cursor = next
	}
}

// batchAttr is union bpf_attr as BPF_MAP_LOOKUP_BATCH reads it (64-bit
// pointers: the datapath is built for 64-bit little-endian hosts).
type batchAttr struct {
	inBatch, outBatch, keys, values unsafe.Pointer
	count, mapFD                    uint32
	elemFlags, flags                uint64
}

// lookupBatch reads up to count entries of a hash map from bucket cursor
// (from the first bucket when first) into keys and values. It returns the
// entries read and the bucket to go on from; unix.ENOENT says the map is
// exhausted. cilium/ebpf's BatchLookup hides the bucket index, which
// CountSources scales by.
func lookupBatch(fd int, first bool, cursor uint32, keys, values unsafe.Pointer, count uint32) (int, uint32, error) {
	var in, out uint32 = cursor, 0
	attr := batchAttr{outBatch: unsafe.Pointer(&out), keys: keys, values: values, count: count, mapFD: uint32(fd)}
	if !first {
		attr.inBatch = unsafe.Pointer(&in)
	}
	_, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_MAP_LOOKUP_BATCH, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	if errno != 0 {
		return int(attr.count), out, errno
	}
	return int(attr.count), out, nil
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

// Each calls fn with every entry of the list, read in batches as Entries
// reads them, without collecting them: a reconcile against a million
// entries needs no copy of them.
func (l *List) Each(fn func(Entry)) error {
	return l.each(func(p netip.Prefix, v *bpf.BulwarkListValue) { fn(Entry{p, v.ListId, v.ExpiresNs}) })
}

// DeleteMany is Delete for many prefixes at once, as a reconcile deletes
// them: the host entries go in batch syscalls of up to batchSize keys, the
// true prefixes one by one as Delete deletes them. Prefixes not present
// are ignored.
func (l *List) DeleteMany(prefixes []netip.Prefix) error {
	defer l.advance()
	var h6 [][16]byte
	var rest []netip.Prefix
	h4, hosts := make([][4]byte, 0, len(prefixes)), make([]netip.Prefix, 0, len(prefixes))
	for _, p := range prefixes {
		p, err := normalise(p)
		if err != nil {
			return fmt.Errorf("%s list: %w", l.name, err)
		}
		switch {
		case p.Addr().Is4() && p.Bits() == 32:
			h4, hosts = append(h4, host4(p.Addr())), append(hosts, p)
		case p.Bits() == 128:
			h6, hosts = append(h6, host6(p.Addr())), append(hosts, p)
		default:
			rest = append(rest, p)
		}
	}
	if len(hosts) > 0 {
		l.set.mu.Lock()
		l.changes.note(hosts)
		// A deleted host's length (its mask's hosts bit) goes with the
		// last host of that mask, as in Delete.
		gone := map[maskKey]bool{}
		drop := func(k lenKey) {
			if l.lens[k]--; l.lens[k] <= 0 {
				delete(l.lens, k)
				gone[k.mask] = true
			}
		}
		n4, err4 := deleteBatchEach(l.hosts4, h4, func(i int) { drop(hostLen4(h4[i])) })
		n6, err6 := deleteBatchEach(l.hosts6, h6, func(i int) { drop(hostLen6(h6[i])) })
		errMasks := l.writeMasks(gone, nil)
		l.tally.mu.Lock()
		l.tally.ipv4, l.tally.hosts4 = l.tally.ipv4-n4, l.tally.hosts4-n4
		l.tally.ipv6, l.tally.hosts6 = l.tally.ipv6-n6, l.tally.hosts6-n6
		for _, p := range hosts {
			delete(l.tally.ttl, p)
		}
		l.tally.mu.Unlock()
		l.set.mu.Unlock()
		if err := errors.Join(err4, err6, errMasks); err != nil {
			return fmt.Errorf("%s list: delete hosts: %w", l.name, err)
		}
	}
	// Delete clears the list's present bits of the maps left empty.
	return l.Delete(rest)
}

// deleteBatch deletes keys from a hash map in batch syscalls and returns
// how many it deleted; a key not present is skipped.
func deleteBatch[K any](m *ebpf.Map, keys []K) (int, error) {
	return deleteBatchEach(m, keys, func(int) {})
}

// deleteBatchEach is deleteBatch calling deleted with the index in keys of
// each key it deleted.
func deleteBatchEach[K any](m *ebpf.Map, keys []K, deleted func(i int)) (int, error) {
	n, at := 0, 0 // deleted so far; index in keys of keys[0]
	done := func(from, to int) {
		for i := from; i < to; i++ {
			deleted(i)
		}
		n += to - from
	}
	for len(keys) > 0 {
		chunk := keys[:min(len(keys), batchSize)]
		c, err := m.BatchDelete(chunk, nil)
		switch {
		case errors.Is(err, ebpf.ErrNotSupported):
			for i, k := range keys {
				if err := m.Delete(k); err == nil {
					done(at+i, at+i+1)
				} else if !errors.Is(err, ebpf.ErrKeyNotExist) {
					return n, err
				}
			}
			return n, nil
		case errors.Is(err, ebpf.ErrKeyNotExist):
			// The kernel stops at the first key that is not there: skip it.
			done(at, at+c)
			keys, at = keys[c+1:], at+c+1
		case err != nil:
			// The kernel deleted the first c keys before it failed.
			done(at, at+c)
			return n, err
		default:
			done(at, at+c)
			keys, at = keys[len(chunk):], at+len(chunk)
		}
	}
	return n, nil
}
