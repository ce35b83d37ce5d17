package maps

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
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
	tally                        tally
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

// Add writes entries (upsert), in batches, after their lengths (and hosts
// bits) into the masks: hosts into the host hashes, prefixes into the
// prefix hashes.
func (l *List) Add(entries []Entry) error {
	var k4 [][4]byte
	var v4 []bpf.BulwarkListValue
	var k6 [][16]byte
	var v6 []bpf.BulwarkListValue
	var n4 []bpf.BulwarkLpmV4Key
	var nv4 []bpf.BulwarkListValue
	var n6 []bpf.BulwarkLpmV6Key
	var nv6 []bpf.BulwarkListValue
	var lk4, lk6, lh4, lh6 []lenKey // the length of each of n4, n6, k4, k6
	ms, extra := map[maskKey]bool{}, map[lenKey]bool{}
	norm := make([]netip.Prefix, len(entries))
	for i, e := range entries {
		p, err := normalise(e.Prefix)
		if err != nil {
			return fmt.Errorf("%s list: %w", l.name, err)
		}
		norm[i] = p
		v := listValue(e, p.Bits())
		switch {
		case p.Addr().Is4() && p.Bits() == 32:
			k4, v4, lh4 = append(k4, host4(p.Addr())), append(v4, v), append(lh4, lenOf(p))
		case p.Addr().Is4():
			n4, nv4, lk4 = append(n4, lpm4(p)), append(nv4, v), append(lk4, lenOf(p))
		case p.Bits() == 128:
			k6, v6, lh6 = append(k6, host6(p.Addr())), append(v6, v), append(lh6, lenOf(p))
		default:
			n6, nv6, lk6 = append(n6, lpm6(p)), append(nv6, v), append(lk6, lenOf(p))
		}
	}
	for _, lks := range [][]lenKey{lk4, lk6, lh4, lh6} {
		for _, k := range lks {
			ms[k.mask], extra[k] = true, true
		}
	}
	h4, h6, b4, b6 := l.bits()
	var on uint32
	if len(k4) > 0 {
		on |= h4
	}
	if len(k6) > 0 {
		on |= h6
	}
	if len(n4) > 0 {
		on |= b4
	}
	if len(n6) > 0 {
		on |= b6
	}
	l.set.mu.Lock()
	defer l.set.mu.Unlock()
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
	newH4, err := putUndoable(l.hosts4, k4, v4, &undo)
	if err != nil {
		return fail("IPv4 hosts", err)
	}
	newH6, err := putUndoable(l.hosts6, k6, v6, &undo)
	if err != nil {
		return fail("IPv6 hosts", err)
	}
	newN4, err := putUndoable(l.nets4, n4, nv4, &undo)
	if err != nil {
		return fail("IPv4 prefixes", err)
	}
	newN6, err := putUndoable(l.nets6, n6, nv6, &undo)
	if err != nil {
		return fail("IPv6 prefixes", err)
	}
	t := &l.tally
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ipv4 += len(newH4) + len(newN4)
	t.ipv6 += len(newH6) + len(newN6)
	t.hosts4 += len(newH4)
	t.hosts6 += len(newH6)
	countLens(l.lens, n4, lk4, newN4)
	countLens(l.lens, n6, lk6, newN6)
	countLens(l.lens, k4, lh4, newH4)
	countLens(l.lens, k6, lh6, newH6)
	for i, p := range norm {
		if exp := entries[i].ExpiresNS; exp != 0 {
			t.ttl[p] = exp
		} else {
			delete(t.ttl, p)
		}
	}
	return nil
}

// countLens counts in lens the length (lks[i]) of each key that was new.
func countLens[K comparable](lens map[lenKey]int, keys []K, lks []lenKey, fresh map[K]struct{}) {
	for i, k := range keys {
		if _, ok := fresh[k]; ok {
			lens[lks[i]]++
			delete(fresh, k) // a key written twice is one entry
		}
	}
}

// putUndoable writes keys, appends to undo a function that restores what
// they held before (deleting the keys that were new) and returns the
// distinct keys that were new.
func putUndoable[K comparable, V any](m *ebpf.Map, keys []K, vals []V, undo *[]func()) (map[K]struct{}, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	prev, err := existing[K, V](m, keys)
	if err != nil {
		return nil, err
	}
	fresh := make(map[K]struct{})
	for _, k := range keys {
		if _, ok := prev[k]; !ok {
			fresh[k] = struct{}{}
		}
	}
	*undo = append(*undo, func() {
		for _, k := range keys {
			if v, ok := prev[k]; ok {
				_ = m.Put(k, v)
			} else {
				_ = m.Delete(k)
			}
		}
	})
	return fresh, batchPut(m, keys, vals)
}

// existing returns the values keys hold now.
func existing[K comparable, V any](m *ebpf.Map, keys []K) (map[K]V, error) {
	out := make(map[K]V)
	// An empty map (a first load) holds nothing to restore: no lookups.
	first := make([]byte, m.KeySize())
	if err := m.NextKey(nil, &first); errors.Is(err, ebpf.ErrKeyNotExist) {
		return out, nil
	}
	for _, k := range keys {
		var v V
		if err := m.Lookup(k, &v); err == nil {
			out[k] = v
		} else if !errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil, err
		}
	}
	return out, nil
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
	l.set.mu.Lock()
	defer l.set.mu.Unlock()
	for _, p := range prefixes {
		p, err := normalise(p)
		if err != nil {
			return fmt.Errorf("%s list: %w", l.name, err)
		}
		m, key := l.mapKey(p)
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

// prefixOf4 is the prefix an IPv4 trie key stands for.
func prefixOf4(k bpf.BulwarkLpmV4Key) netip.Prefix {
	var a [4]byte
	binary.LittleEndian.PutUint32(a[:], k.Addr)
	return netip.PrefixFrom(netip.AddrFrom4(a), int(k.Prefixlen))
}
