package agent

import (
	"net/netip"
	"runtime/debug"
	"slices"

	"github.com/bulwark-filter/bulwark/agent/desired"
	"github.com/bulwark-filter/bulwark/agent/listset"
	"github.com/bulwark-filter/bulwark/maps"
)

// runtimeList reports whether a list id belongs to runtime entries.
func runtimeList(id uint32) bool {
	return id == desired.ListRuntimeAllow || id == desired.ListRuntimeBlock
}

// configList reports whether a list id belongs to the config (not to the
// CLI, not to the fleet, not to CrowdSec, not to a feed): only those
// entries does a config reconcile delete.
func configList(id uint32) bool {
	return !runtimeList(id) && id != desired.ListFleetBlock && id != desired.ListCrowdSecBlock && id < maps.FirstFeedList
}

// reconcileList makes the config-owned part of l equal want: every wanted
// entry is written first, then stale config entries are deleted. Runtime
// and feed entries are left alone unless the config names the same prefix
// (then the config's entry replaces it).
//
// The kernel's entries are read in batches, and each batch, sorted, is
// merged into want (sorted) as it comes, so no copy of the kernel's
// entries is kept: what is written is only what differs.
func reconcileList(l *maps.List, want listset.Set) (added, removed int, err error) {
	held := make([]kernelHolds, len(want)) // what the kernel holds of want[i]
	var stale []netip.Prefix
	batch := make([]kernelEntry, 0, mergeBatch)
	merge := func() {
		slices.SortFunc(batch, func(a, b kernelEntry) int { return listset.Compare(a.key, b.key) })
		at := 0
		for _, e := range batch {
			i, found := want.IndexFrom(at, e.key)
			at = i
			switch {
			case found && want[i].ID == e.id && !e.expires:
				held[i] = holdsWanted
			case found:
				held[i] = holdsOther
			case configList(e.id):
				stale = append(stale, e.key.Prefix())
			}
		}
		batch = batch[:0]
	}
	err = l.Each(func(e maps.Entry) {
		batch = append(batch, kernelEntry{listset.KeyOf(e.Prefix), e.ListID, e.ExpiresNS != 0})
		if len(batch) == mergeBatch {
			merge()
		}
	})
	if err != nil {
		return 0, 0, err
	}
	merge()
	var put maps.Batch
	var kinds [4]int
	for i, e := range want {
		if held[i] != holdsWanted {
			kinds[kindOf(e.Key)]++
		}
	}
	put.Grow(kinds[0], kinds[1], kinds[2], kinds[3])
	for i, e := range want {
		if held[i] != holdsWanted {
			// The kernel's entries say which prefixes are new.
			if err := addEntry(&put, e, held[i] == holdsNone); err != nil {
				return 0, 0, err
			}
		}
	}
	return write(l, &put, stale)
}

// kernelHolds is what the kernel holds of a wanted entry.
type kernelHolds uint8

const (
	holdsNone   kernelHolds = iota // no entry of its prefix
	holdsOther                     // an entry of its prefix on another list id, or with an expiry
	holdsWanted                    // the entry as wanted
)

// addEntry adds e to put; fresh says the list holds no entry of its
// prefix, so that the write need not look it up (maps.Batch.AddNew).
func addEntry(put *maps.Batch, e listset.Entry, fresh bool) error {
	me := maps.Entry{Prefix: e.Key.Prefix(), ListID: e.ID}
	if fresh {
		return put.AddNew(me)
	}
	return put.Add(me)
}

// kindOf is the map of a list that holds k, as maps.Batch.Grow counts
// them: 0 IPv4 hosts, 1 IPv6 hosts, 2 IPv4 prefixes, 3 IPv6 prefixes.
func kindOf(k listset.Key) int {
	n := 0
	if !k.Is4() {
		n = 1
	}
	if !k.IsHost() {
		n += 2
	}
	return n
}

// write writes put, then deletes stale, and returns how many of each.
func write(l *maps.List, put *maps.Batch, stale []netip.Prefix) (added, removed int, err error) {
	if err := l.Write(put); err != nil {
		return 0, 0, err
	}
	if err := l.DeleteMany(stale); err != nil {
		return put.Len(), 0, err
	}
	return put.Len(), len(stale), nil
}

// listImage is the agent's image of one list's config entries: the set it
// last wrote there, which the kernel holds as written except where the
// list's change record (maps.List.TakeChanges) says another writer of the
// agent touched it. A reload diffs the new config against the image and
// writes only the change, without reading the list back from the kernel.
type listImage struct {
	set   listset.Set
	known bool // false: no image (at start, after a failed write): reconcile against the kernel
	// others is how many entries besides the image's the list held after
	// the sync that made the image (run-time, fleet, CrowdSec and feed
	// entries). With none, a prefix neither in the image nor touched
	// since is not in the list: the sync writes it without looking it up.
	others int
}

// syncList makes the config-owned part of l equal want, as reconcileList
// does: from the image when it has one and the list's change record is
// complete, against the kernel's entries otherwise. It leaves the image
// equal to want, or unknown after an error (the next sync then reads the
// kernel). a.mu must be held: every writer of the lists holds it, so the
// change record taken after the writes holds this sync's own writes only.
func syncList(l *maps.List, img *listImage, want listset.Set) (added, removed int, err error) {
	touched, complete := l.TakeChanges()
	if img.known && complete {
		added, removed, err = applyDiff(l, img.set, want, touched, img.others == 0)
	} else {
		added, removed, err = reconcileList(l, want)
	}
	l.TakeChanges() // this sync's own writes
	img.set, img.known = want, err == nil
	// Every wanted entry is in the list now, beside the others.
	c := l.Count(0)
	img.others = c.IPv4 + c.IPv6 - len(want)
	return added, removed, err
}

// applyDiff makes the config-owned part of l equal want, given that it
// equals old except for the prefixes in touched (written or deleted by
// another writer since): it writes the entries of want that old has not
// (or on another list id) and those touched, and deletes the entries of
// old that want has not; a touched one only if the kernel still holds it
// on a config list id (a run-time, fleet or feed entry written over a
// config prefix stays, as reconcileList leaves it). Wanted entries are
// written before stale ones are deleted. alone says the list held no
// entries besides old's: then an entry of want that neither old has nor
// another writer touched is written without being looked up first.
func applyDiff(l *maps.List, old, want listset.Set, touched []netip.Prefix, alone bool) (added, removed int, err error) {
	tk := make([]listset.Key, len(touched))
	for i, p := range touched {
		tk[i] = listset.KeyOf(p)
	}
	tk = listset.SortKeys(tk)
	var put maps.Batch
	var stale []netip.Prefix
	i, j, t := 0, 0, 0
	for i < len(old) || j < len(want) {
		c := 0 // old[i] against want[j]; an exhausted side compares greater
		switch {
		case i == len(old):
			c = 1
		case j == len(want):
			c = -1
		default:
			c = listset.Compare(old[i].Key, want[j].Key)
		}
		var k listset.Key
		if c < 0 {
			k = old[i].Key
		} else {
			k = want[j].Key
		}
		for t < len(tk) && listset.Compare(tk[t], k) < 0 {
			t++
		}
		hit := t < len(tk) && tk[t] == k
		switch {
		case c < 0: // in old only
			stale, err = staleEntry(l, stale, k, hit)
			if err != nil {
				return 0, 0, err
			}
			i++
		case c > 0 || hit || old[i].ID != want[j].ID: // wanted, not in place
			if err := addEntry(&put, want[j], c > 0 && !hit && alone); err != nil {
				return 0, 0, err
			}
			if c == 0 {
				i++
			}
			j++
		default:
			i, j = i+1, j+1
		}
	}
	return write(l, &put, stale)
}

// sameLists reports whether two desired states ask for the same allow and
// block entries.
func sameLists(a, b *desired.State) bool {
	return slices.Equal(a.Allow, b.Allow) && slices.Equal(a.Block, b.Block)
}

// staleEntry appends to stale the prefix of k, an entry of the image the
// config no longer wants, unless another writer touched it and the kernel
// no longer holds it on a config list id.
func staleEntry(l *maps.List, stale []netip.Prefix, k listset.Key, touched bool) ([]netip.Prefix, error) {
	p := k.Prefix()
	if touched {
		e, ok, err := l.Lookup(p)
		if err != nil || !ok || !configList(e.ListID) {
			return stale, err
		}
	}
	return append(stale, p), nil
}

// kernelEntry is what reconcileList keeps of a kernel entry while it
// merges a batch of them.
type kernelEntry struct {
	key     listset.Key
	id      uint32
	expires bool
}

// mergeBatch is how many kernel entries reconcileList sorts and merges at
// a time: a batch stays in the CPU's caches.
const mergeBatch = 8192

// bigLists is how many list entries make a config large enough that its
// load leaves buffers worth handing back to the system.
const bigLists = 1 << 16

// releaseBuffers returns the heap that loading a config with entries list
// entries left behind (the list files' text, the entries written, and on a
// reload the previous config) to the system at once, instead of over the
// minutes the runtime's scavenger would take: the agent's resident memory
// then holds the lists' compact copies, not the buffers they were made
// with.
func releaseBuffers(entries int) {
	if entries >= bigLists {
		debug.FreeOSMemory()
	}
}
