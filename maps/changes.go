package maps

import (
	"net/netip"
	"sync"

	"github.com/bulwark-filter/bulwark/bpf"
)

// maxChanges is how many distinct prefixes a list's change record holds;
// past it the record keeps only that there were more.
const maxChanges = 1 << 16

// changes records the prefixes whose entries were written or deleted
// through a list since the record was last taken (TakeChanges).
type changes struct {
	mu   sync.Mutex
	ps   map[netip.Prefix]struct{}
	over bool // more than maxChanges prefixes: the record is incomplete
}

// note records prefixes (normalised).
func (c *changes) note(ps []netip.Prefix) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.over || len(c.ps)+len(ps) > maxChanges {
		c.ps, c.over = nil, true
		return
	}
	for _, p := range ps {
		c.addLocked(p)
	}
}

// noteBatch records the prefixes of b's entries.
func (c *changes) noteBatch(b *Batch) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.over || len(c.ps)+b.Len() > maxChanges {
		c.ps, c.over = nil, true
		return
	}
	b.each(func(p netip.Prefix, _ *bpf.BulwarkListValue) { c.addLocked(p) })
}

// addLocked records p; c.mu must be held.
func (c *changes) addLocked(p netip.Prefix) {
	if c.over {
		return
	}
	if c.ps == nil {
		c.ps = make(map[netip.Prefix]struct{})
	}
	c.ps[p] = struct{}{}
	if len(c.ps) > maxChanges {
		c.ps, c.over = nil, true
	}
}

// TakeChanges returns the prefixes (normalised) whose entries any writer
// wrote or deleted through l since the last call, and empties the record.
// complete is false when more than maxChanges prefixes changed: the record
// then holds none of them, only that there were more. A writer that keeps
// its own image of part of the list (the agent's config entries) learns
// from it which of its entries another writer touched, without reading
// the whole list back from the kernel. Writes by other processes are not
// seen.
func (l *List) TakeChanges() (ps []netip.Prefix, complete bool) {
	c := &l.changes
	c.mu.Lock()
	defer c.mu.Unlock()
	ps = make([]netip.Prefix, 0, len(c.ps))
	for p := range c.ps {
		ps = append(ps, p)
	}
	complete = !c.over
	c.ps, c.over = nil, false
	return ps, complete
}
