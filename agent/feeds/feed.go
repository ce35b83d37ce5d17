package feeds

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Feed is a feed's last good version and the fetcher that updates it. A failed or suspect update never replaces
// or flushes the last good version. Current, LastSuccess and Entries may be called while Refresh runs; Refresh
// itself must not run concurrently with itself.
type Feed struct {
	// Fetcher gets the feed.
	Fetcher *Fetcher
	// AllowShrink accepts an update with fewer than half the entries of the last good version instead of
	// holding it back as suspect.
	AllowShrink bool
	// Growth, if set, judges an update that passed the shrink rule against the version in force (prev is nil
	// before the first good version); an error holds the update back with kind KindGrowth.
	Growth func(prev, next []netip.Prefix) error

	mu          sync.RWMutex
	current     *List
	lastSuccess time.Time
	now         func() time.Time
}

// NewFeed returns a Feed that has no good version yet.
func NewFeed(f *Fetcher, allowShrink bool) *Feed {
	return &Feed{Fetcher: f, AllowShrink: allowShrink}
}

// Refresh fetches the feed. changed is true when a new version with different prefixes is now in force. On any
// error, the last good version stays in force and the error (an *Error) is returned; an update with fewer than
// half the entries of the last good version is refused with kind KindShrink unless AllowShrink is set, and one
// that Growth refuses with kind KindGrowth. After a
// refused update the fetcher forgets its validators, so the next Refresh downloads and judges the feed again.
// LastSuccess advances on every successful fetch, including an unchanged one.
func (f *Feed) Refresh(ctx context.Context) (changed bool, err error) {
	list, notModified, err := f.Fetcher.Fetch(ctx)
	if err != nil {
		return false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now
	if f.now != nil {
		now = f.now
	}
	old := f.current
	if notModified {
		if old == nil {
			// Cannot happen unless the Fetcher was used on its own; start over.
			f.Fetcher.Forget()
			return false, &Error{Kind: KindFetch, Err: fmt.Errorf("feed %s: not modified, but no good version held", f.Fetcher.src.Name)}
		}
		f.lastSuccess = now()
		return false, nil
	}
	if old != nil && !f.AllowShrink && 2*list.Len() < old.Len() {
		f.Fetcher.Forget()
		return false, &Error{Kind: KindShrink, Err: fmt.Errorf("feed %s: update has %d entries, fewer than half of the %d in force; held back (set allow_shrink to accept)", f.Fetcher.src.Name, list.Len(), old.Len())}
	}
	if f.Growth != nil {
		var prev []netip.Prefix
		if old != nil {
			prev = old.Prefixes
		}
		if err := f.Growth(prev, list.Prefixes); err != nil {
			f.Fetcher.Forget()
			return false, &Error{Kind: KindGrowth, Err: fmt.Errorf("feed %s: %w; held back", f.Fetcher.src.Name, err)}
		}
	}
	f.current = list
	f.lastSuccess = now()
	return old == nil || !slices.Equal(old.Prefixes, list.Prefixes), nil
}

// Current returns the version in force, or nil before the first good fetch. The List must not be modified.
func (f *Feed) Current() *List {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.current
}

// LastSuccess returns the time of the last successful fetch (changed or not), or the zero time.
func (f *Feed) LastSuccess() time.Time {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.lastSuccess
}

// Entries returns the number of prefixes in force.
func (f *Feed) Entries() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.current.Len()
}

// Diff returns the prefixes in next but not in prev (added) and those in prev but not in next (removed), each
// sorted. It is fastest when both are sorted and free of duplicates, as List.Prefixes are; other input is sorted
// and deduplicated on a copy first.
func Diff(prev, next []netip.Prefix) (added, removed []netip.Prefix) {
	prev, next = normalise(prev), normalise(next)
	i, j := 0, 0
	for i < len(prev) && j < len(next) {
		switch c := comparePrefix(prev[i], next[j]); {
		case c == 0:
			i++
			j++
		case c < 0:
			removed = append(removed, prev[i])
			i++
		default:
			added = append(added, next[j])
			j++
		}
	}
	removed = append(removed, prev[i:]...)
	added = append(added, next[j:]...)
	return added, removed
}

// normalise returns ps sorted and without duplicates, copying it only if needed.
func normalise(ps []netip.Prefix) []netip.Prefix {
	for k := 1; k < len(ps); k++ {
		if comparePrefix(ps[k-1], ps[k]) >= 0 {
			c := slices.Clone(ps)
			slices.SortFunc(c, comparePrefix)
			return slices.Compact(c)
		}
	}
	return ps
}
