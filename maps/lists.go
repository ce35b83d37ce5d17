package maps

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"syscall"

	"github.com/cilium/ebpf"

	"github.com/bulwark-filter/bulwark/bpf"
)

// List is an allow or block list: host entries in hash maps, true prefixes
// in hash maps keyed by (length, address) with the length masks the
// datapath probes by (lengths.go), one of each per address family.
type List struct {
	set                          *Set
	name                         string
	bit                          uint32 // present bit of hosts4; the others follow
	hosts4, hosts6, nets4, nets6 *ebpf.Map
	slots4, slots6, mid6, short  *ebpf.Map      // length masks
	lens                         map[lenKey]int // entries per mask and length; guarded by set.mu
	gens                         *listGens      // the cache generations (listgen.go)
	gen                          int            // this list's index in gens
	tally                        tally
	changes                      changes
}

// tally is what a list holds, kept by its writers (which hold set.mu) so
// that readers count the entries without walking the maps.
type tally struct {
	mu         sync.Mutex
	ipv4, ipv6 int                     // entries, expired ones included
	hosts4     int                     // of ipv4, the /32s (in hosts4; the others are in nets4)
	hosts6     int                     // of ipv6, the /128s (in hosts6)
	ttl        map[netip.Prefix]uint64 // expiry (monotonic ns) of the entries that have one
}

// recount sets the tally from the maps, for a Set made over maps that may
// already hold entries.
func (l *List) recount() error {
	var v4, v6, h4, h6 int
	ttl := map[netip.Prefix]uint64{}
	l.lens = map[lenKey]int{}
	err := l.each(func(p netip.Prefix, v *bpf.BulwarkListValue) {
		l.lens[lenOf(p)]++
		if p.Addr().Is4() {
			v4++
		} else {
			v6++
		}
		if p.Bits() == p.Addr().BitLen() {
			if p.Addr().Is4() {
				h4++
			} else {
				h6++
			}
		}
		if v.ExpiresNs != 0 {
			ttl[p] = v.ExpiresNs
		}
	})
	if err != nil {
		return err
	}
	if err := l.rewriteMasks(); err != nil {
		return err
	}
	l.tally.mu.Lock()
	defer l.tally.mu.Unlock()
	l.tally.ipv4, l.tally.ipv6, l.tally.ttl = v4, v6, ttl
	l.tally.hosts4, l.tally.hosts6 = h4, h6
	return nil
}

func (l *List) bits() (h4, h6, n4, n6 uint32) {
	return l.bit, l.bit << 1, l.bit << 2, l.bit << 3
}

func host4(a netip.Addr) [4]byte  { return a.As4() }
func host6(a netip.Addr) [16]byte { return a.As16() }
func listValue(e Entry, bits int) bpf.BulwarkListValue {
	return bpf.BulwarkListValue{ListId: e.ListID, Prefixlen: uint32(bits), ExpiresNs: e.ExpiresNS}
}

// normalise returns the masked prefix with IPv4-in-IPv6 unmapped.
func normalise(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return p, fmt.Errorf("invalid prefix")
	}
	a := p.Addr()
	if a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	if a.Zone() != "" {
		return p, fmt.Errorf("%s: zones are not allowed", p)
	}
	return p.Masked(), nil
}

// Batch is list entries to write with List.Write, held as the list's
// maps hold them (an IPv4 host takes 20 bytes, no netip.Prefix): a writer
// of a million entries builds it without a copy of them as Entries.
type Batch struct {
	k4       [][4]byte
	v4       []bpf.BulwarkListValue
	k6       [][16]byte
	v6       []bpf.BulwarkListValue
	n4       []bpf.BulwarkLpmV4Key
	nv4      []bpf.BulwarkListValue
	n6       []bpf.BulwarkLpmV6Key
	nv6      []bpf.BulwarkListValue
	lk4, lk6 []lenKey // the length of each of n4, n6
	expiry   bool     // some entry has an expiry
	// unordered: some entry was added after one of its map with a higher
	// address (or the same address and a longer length, or the same
	// prefix): it may repeat another. A sorted list's entries, added in
	// order, are known to be distinct without a set of them.
	unordered bool
	// fresh holds, for each of k4, k6, n4 and n6, the indexes of the
	// entries added with AddNew.
	fresh [4]bitset
}

// bitset is a set of small non-negative integers, a bit each.
type bitset []uint64

// set adds i to s.
func (s *bitset) set(i int) {
	for len(*s) <= i/64 {
		*s = append(*s, 0)
	}
	(*s)[i/64] |= 1 << (i % 64)
}

// has reports whether s holds i.
func (s bitset) has(i int) bool { return i/64 < len(s) && s[i/64]&(1<<(i%64)) != 0 }

// Add appends e to the batch, its prefix normalised; an invalid prefix or
// one with a zone is refused.
func (b *Batch) Add(e Entry) error {
	p, err := normalise(e.Prefix)
	if err != nil {
		return err
	}
	v := listValue(e, p.Bits())
	switch {
	case p.Addr().Is4() && p.Bits() == 32:
		k := host4(p.Addr())
		b.unordered = b.unordered || len(b.k4) > 0 && bytes.Compare(b.k4[len(b.k4)-1][:], k[:]) >= 0
		b.k4, b.v4 = append(b.k4, k), append(b.v4, v)
	case p.Addr().Is4():
		b.unordered = b.unordered || len(b.n4) > 0 && !before(prefixOf4(b.n4[len(b.n4)-1]), p)
		b.n4, b.nv4, b.lk4 = append(b.n4, lpm4(p)), append(b.nv4, v), append(b.lk4, lenOf(p))
	case p.Bits() == 128:
		k := host6(p.Addr())
		b.unordered = b.unordered || len(b.k6) > 0 && bytes.Compare(b.k6[len(b.k6)-1][:], k[:]) >= 0
		b.k6, b.v6 = append(b.k6, k), append(b.v6, v)
	default:
		k := lpm6(p)
		b.unordered = b.unordered || len(b.n6) > 0 && !before(prefixOf6(b.n6[len(b.n6)-1]), p)
		b.n6, b.nv6, b.lk6 = append(b.n6, k), append(b.nv6, v), append(b.lk6, lenOf(p))
	}
	b.expiry = b.expiry || e.ExpiresNS != 0
	return nil
}

// AddNew is Add for an entry whose prefix the list does not hold, as the
// caller knows from its own record of what the list holds (the agent's
// image of its config entries, when the list holds no others): Write
// writes it without looking it up first. Should the list hold the prefix
// after all (another process wrote it), Write counts the entry as a new
// one, and a Write that fails deletes it.
func (b *Batch) AddNew(e Entry) error {
	before := b.kindLens()
	if err := b.Add(e); err != nil {
		return err
	}
	for k, n := range b.kindLens() {
		if n > before[k] {
			b.fresh[k].set(n - 1)
		}
	}
	return nil
}

// kindLens is how many entries of each kind b holds: k4, k6, n4, n6.
func (b *Batch) kindLens() [4]int { return [4]int{len(b.k4), len(b.k6), len(b.n4), len(b.n6)} }

// Grow makes room in b for that many more entries of each kind, so that a
// large batch is not copied as it grows.
func (b *Batch) Grow(hosts4, hosts6, nets4, nets6 int) {
	b.k4, b.v4 = slices.Grow(b.k4, hosts4), slices.Grow(b.v4, hosts4)
	b.k6, b.v6 = slices.Grow(b.k6, hosts6), slices.Grow(b.v6, hosts6)
	b.n4, b.nv4, b.lk4 = slices.Grow(b.n4, nets4), slices.Grow(b.nv4, nets4), slices.Grow(b.lk4, nets4)
	b.n6, b.nv6, b.lk6 = slices.Grow(b.n6, nets6), slices.Grow(b.nv6, nets6), slices.Grow(b.lk6, nets6)
}

// before reports whether prefix a orders before b by address, then by
// length, as sorted lists order them.
func before(a, b netip.Prefix) bool {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c < 0
	}
	return a.Bits() < b.Bits()
}

// Len is how many entries b holds.
func (b *Batch) Len() int { return len(b.k4) + len(b.k6) + len(b.n4) + len(b.n6) }

// each calls fn with every entry of b.
func (b *Batch) each(fn func(p netip.Prefix, v *bpf.BulwarkListValue)) {
	for i, k := range b.k4 {
		fn(netip.PrefixFrom(netip.AddrFrom4(k), 32), &b.v4[i])
	}
	for i, k := range b.k6 {
		fn(netip.PrefixFrom(netip.AddrFrom16(k), 128), &b.v6[i])
	}
	for i, k := range b.n4 {
		fn(prefixOf4(k), &b.nv4[i])
	}
	for i, k := range b.n6 {
		fn(prefixOf6(k), &b.nv6[i])
	}
}

// Add writes entries (upsert), in batches, after their lengths (and hosts
// bits) into the masks: hosts into the host hashes, prefixes into the
// prefix hashes.
func (l *List) Add(entries []Entry) error {
	var b Batch
	for _, e := range entries {
		if err := b.Add(e); err != nil {
			return fmt.Errorf("%s list: %w", l.name, err)
		}
	}
	return l.Write(&b)
}

// Write writes b's entries as Add does.
func (l *List) Write(b *Batch) error {
	defer l.advance()
	ms, extra := map[maskKey]bool{}, map[lenKey]bool{}
	for _, k := range append(b.lk4[:len(b.lk4):len(b.lk4)], b.lk6...) {
		ms[k.mask], extra[k] = true, true
	}
	// A host's length is the hosts bit of its mask; sorted hosts share a
	// mask with the one before, so only a change is looked up.
	var last lenKey
	for i, k := range b.k4 {
		if lk := hostLen4(k); i == 0 || lk != last {
			ms[lk.mask], extra[lk], last = true, true, lk
		}
	}
	for i, k := range b.k6 {
		if lk := hostLen6(k); i == 0 || lk != last {
			ms[lk.mask], extra[lk], last = true, true, lk
		}
	}
	h4, h6, b4, b6 := l.bits()
	var on uint32
	if len(b.k4) > 0 {
		on |= h4
	}
	if len(b.k6) > 0 {
		on |= h6
	}
	if len(b.n4) > 0 {
		on |= b4
	}
	if len(b.n6) > 0 {
		on |= b6
	}
	l.set.mu.Lock()
	defer l.set.mu.Unlock()
	// Noted before the writes: a write that fails may leave some in force.
	l.changes.noteBatch(b)
	if err := l.set.setPresentLocked(on); err != nil {
		return err
	}
	// All or nothing: a write that fails (a full map) undoes what this Add
	// wrote before it, so a refused request leaves no part of it in force.
	var undo []func()
	fail := func(what string, err error) error {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		_ = l.writeMasks(ms, nil) // best effort: a stale bit costs a probe, never a miss
		return fmt.Errorf("%s list, %s: %w", l.name, what, err)
	}
	if err := l.writeMasks(ms, extra); err != nil {
		return fail("length masks", err)
	}
	oldH4, err := putUndoable(l.hosts4, b.k4, b.v4, !b.unordered, b.fresh[0], &undo)
	if err != nil {
		return fail("IPv4 hosts", err)
	}
	oldH6, err := putUndoable(l.hosts6, b.k6, b.v6, !b.unordered, b.fresh[1], &undo)
	if err != nil {
		return fail("IPv6 hosts", err)
	}
	oldN4, err := putUndoable(l.nets4, b.n4, b.nv4, !b.unordered, b.fresh[2], &undo)
	if err != nil {
		return fail("IPv4 prefixes", err)
	}
	oldN6, err := putUndoable(l.nets6, b.n6, b.nv6, !b.unordered, b.fresh[3], &undo)
	if err != nil {
		return fail("IPv6 prefixes", err)
	}
	t := &l.tally
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ipv4 += len(b.k4) - len(oldH4) + len(b.n4) - len(oldN4)
	t.ipv6 += len(b.k6) - len(oldH6) + len(b.n6) - len(oldN6)
	t.hosts4 += len(b.k4) - len(oldH4)
	t.hosts6 += len(b.k6) - len(oldH6)
	countLens(l.lens, b.lk4, sameLen, oldN4)
	countLens(l.lens, b.lk6, sameLen, oldN6)
	countLens(l.lens, b.k4, hostLen4, oldH4)
	countLens(l.lens, b.k6, hostLen6, oldH6)
	if b.expiry || len(t.ttl) > 0 {
		b.each(func(p netip.Prefix, v *bpf.BulwarkListValue) {
			if v.ExpiresNs != 0 {
				t.ttl[p] = v.ExpiresNs
			} else {
				delete(t.ttl, p)
			}
		})
	}
	return nil
}

// countLens counts in lens the length (lenOf(keys[i])) of each key that
// was new: all but those at the indexes old (ascending) of the keys that
// existed.
func countLens[K any](lens map[lenKey]int, keys []K, lenOf func(K) lenKey, old []int) {
	for i, k := range keys {
		if len(old) > 0 && old[0] == i {
			old = old[1:]
			continue
		}
		lens[lenOf(k)]++
	}
}

// sameLen is the length of a prefix's lenKey: itself.
func sameLen(k lenKey) lenKey { return k }

// hostLen4 is lenOf of an IPv4 host key: its mask's hosts bit.
func hostLen4(k [4]byte) lenKey { return lenOf(netip.PrefixFrom(netip.AddrFrom4(k), 32)) }

// hostLen6 is lenOf of an IPv6 host key: its mask's hosts bit.
func hostLen6(k [16]byte) lenKey { return lenOf(netip.PrefixFrom(netip.AddrFrom16(k), 128)) }

// putUndoable writes keys (upsert), appends to undo a function that
// restores what they held before and returns the indexes (ascending) of
// the keys that were not new: those that existed, and the repeats of a
// key given twice unless distinct says none is. Only a map that holds
// entries is read first (a first load reads nothing), and only the keys
// not in fresh (the indexes of those the caller knows are new).
func putUndoable[K comparable, V any](m *ebpf.Map, keys []K, vals []V, distinct bool, fresh bitset, undo *[]func()) ([]int, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	old, prev, err := existing[K, V](m, keys, fresh)
	if err != nil {
		return nil, err
	}
	*undo = append(*undo, func() {
		fresh := make([]K, 0, len(keys)-len(old))
		o := old
		for i, k := range keys {
			if len(o) > 0 && o[0] == i {
				o = o[1:]
				continue
			}
			fresh = append(fresh, k)
		}
		_, _ = deleteBatch(m, fresh) // a repeat is deleted once
		for i, at := range old {
			_ = m.Put(keys[at], prev[i])
		}
	})
	if !distinct {
		return withRepeats(keys, old), batchPut(m, keys, vals)
	}
	return old, batchPut(m, keys, vals)
}

// existing returns the indexes (ascending) of the keys m holds now, with
// their values, of those not in fresh (taken to be new). An empty map (a
// first load) is not read key by key; a large batch is read by two
// goroutines (its syscalls take the time).
func existing[K comparable, V any](m *ebpf.Map, keys []K, fresh bitset) ([]int, []V, error) {
	first := make([]byte, m.KeySize())
	if err := m.NextKey(nil, &first); errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil, nil, nil
	}
	read := func(from, to int) (old []int, prev []V, err error) {
		for i := from; i < to; i++ {
			if fresh.has(i) {
				continue
			}
			var v V
			if err := m.Lookup(keys[i], &v); err == nil {
				old, prev = append(old, i), append(prev, v)
			} else if !errors.Is(err, ebpf.ErrKeyNotExist) {
				return nil, nil, fmt.Errorf("%w (map %s)", err, mapName(m))
			}
		}
		return old, prev, nil
	}
	if len(keys) < parallelReads {
		return read(0, len(keys))
	}
	half := len(keys) / 2
	var old2 []int
	var prev2 []V
	var err2 error
	done := make(chan struct{})
	go func() {
		defer close(done)
		old2, prev2, err2 = read(half, len(keys))
	}()
	old, prev, err := read(0, half)
	<-done
	if err = errors.Join(err, err2); err != nil {
		return nil, nil, err
	}
	return append(old, old2...), append(prev, prev2...), nil
}

// parallelReads is how many keys make existing read with two goroutines.
const parallelReads = 4096

// withRepeats adds to old (ascending indexes of keys) the indexes of the
// keys that repeat an earlier one.
func withRepeats[K comparable](keys []K, old []int) []int {
	seen := make(map[K]struct{}, len(keys))
	var out []int
	o := old
	for i, k := range keys {
		_, again := seen[k]
		seen[k] = struct{}{}
		isOld := len(o) > 0 && o[0] == i
		if isOld {
			o = o[1:]
		}
		if isOld || again {
			out = append(out, i)
		}
	}
	return out
}

// FullError says a list map had no room for a write; nothing of the
// write is left in force (List.Add undoes what got in).
type FullError struct {
	Map string // the map's name
	Max uint32 // its max_entries
	Err error  // the kernel's error (E2BIG from a hash map)
}

func (e *FullError) Error() string {
	return fmt.Sprintf("map %s is full: it holds at most %d entries", e.Map, e.Max)
}

// Unwrap returns the kernel's error.
func (e *FullError) Unwrap() error { return e.Err }

// batchSize bounds one batch syscall's buffers.
const batchSize = 65536

func batchPut[K, V any](m *ebpf.Map, keys []K, vals []V) error {
	for len(keys) > 0 {
		n := min(len(keys), batchSize)
		if _, err := m.BatchUpdate(keys[:n], vals[:n], nil); err != nil {
			if errors.Is(err, ebpf.ErrNotSupported) {
				return putEach(m, keys, vals)
			}
			if errors.Is(err, syscall.E2BIG) || errors.Is(err, syscall.ENOSPC) {
				// A full hash map says E2BIG (a full trie would say ENOSPC).
				return &FullError{Map: mapName(m), Max: m.MaxEntries(), Err: err}
			}
			return fmt.Errorf("%w (map %s holds at most %d entries)", err, mapName(m), m.MaxEntries())
		}
		keys, vals = keys[n:], vals[n:]
	}
	return nil
}

func putEach[K, V any](m *ebpf.Map, keys []K, vals []V) error {
	for i := range keys {
		if err := m.Put(keys[i], vals[i]); err != nil {
			if errors.Is(err, syscall.E2BIG) || errors.Is(err, syscall.ENOSPC) {
				return &FullError{Map: mapName(m), Max: m.MaxEntries(), Err: err}
			}
			return fmt.Errorf("%w (map %s holds at most %d entries)", err, mapName(m), m.MaxEntries())
		}
	}
	return nil
}

// mapKey returns the map that holds a normalised prefix and its key there.
func (l *List) mapKey(p netip.Prefix) (*ebpf.Map, any) {
	switch {
	case p.Addr().Is4() && p.Bits() == 32:
		return l.hosts4, host4(p.Addr())
	case p.Addr().Is4():
		return l.nets4, lpm4(p)
	case p.Bits() == 128:
		return l.hosts6, host6(p.Addr())
	default:
		return l.nets6, lpm6(p)
	}
}

// Delete removes entries by prefix; prefixes not present are ignored.
func (l *List) Delete(prefixes []netip.Prefix) error {
	defer l.advance()
	l.set.mu.Lock()
	defer l.set.mu.Unlock()
	for _, p := range prefixes {
		p, err := normalise(p)
		if err != nil {
			return fmt.Errorf("%s list: %w", l.name, err)
		}
		m, key := l.mapKey(p)
		l.changes.note([]netip.Prefix{p})
		err = m.Delete(key)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("%s list: delete %s: %w", l.name, p, err)
		}
		l.tally.mu.Lock()
		if p.Addr().Is4() {
			l.tally.ipv4--
		} else {
			l.tally.ipv6--
		}
		switch m {
		case l.hosts4:
			l.tally.hosts4--
		case l.hosts6:
			l.tally.hosts6--
		}
		delete(l.tally.ttl, p)
		l.tally.mu.Unlock()
		// After the entry is gone: its length's (or hosts) bit goes with
		// the last one.
		k := lenOf(p)
		if l.lens[k]--; l.lens[k] <= 0 {
			delete(l.lens, k)
			if err := l.writeMasks(map[maskKey]bool{k.mask: true}, nil); err != nil {
				return err
			}
		}
	}
	h4, h6, b4, b6 := l.bits()
	return l.set.clearIfEmptyLocked(map[uint32]*ebpf.Map{h4: l.hosts4, h6: l.hosts6, b4: l.nets4, b6: l.nets6})
}

// Lookup returns the entry of exactly prefix p, if the list holds one
// (expired or not).
func (l *List) Lookup(p netip.Prefix) (Entry, bool, error) {
	p, err := normalise(p)
	if err != nil {
		return Entry{}, false, fmt.Errorf("%s list: %w", l.name, err)
	}
	m, key := l.mapKey(p)
	var v bpf.BulwarkListValue
	switch err := m.Lookup(key, &v); {
	case errors.Is(err, ebpf.ErrKeyNotExist):
		return Entry{}, false, nil
	case err != nil:
		return Entry{}, false, fmt.Errorf("%s list: look up %s: %w", l.name, p, err)
	}
	return Entry{p, v.ListId, v.ExpiresNs}, true, nil
}

// Entries lists every entry of the list, read in batches.
func (l *List) Entries() ([]Entry, error) {
	var out []Entry
	err := l.each(func(p netip.Prefix, v *bpf.BulwarkListValue) {
		out = append(out, Entry{p, v.ListId, v.ExpiresNs})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// prefixOf6 is the prefix an IPv6 prefix key stands for.
func prefixOf6(k bpf.BulwarkLpmV6Key) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom16(k.Addr), int(k.Prefixlen))
}

// prefixOf4 is the prefix an IPv4 trie key stands for.
func prefixOf4(k bpf.BulwarkLpmV4Key) netip.Prefix {
	var a [4]byte
	binary.LittleEndian.PutUint32(a[:], k.Addr)
	return netip.PrefixFrom(netip.AddrFrom4(a), int(k.Prefixlen))
}
