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
	inPlace := make([]bool, len(want)) // want[i] is in the kernel as wanted
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
				inPlace[i] = true
			case !found && configList(e.id):
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
	n := 0
	for _, ok := range inPlace {
		if !ok {
			n++
		}
	}
	put := make([]maps.Entry, 0, n)
	for i, e := range want {
		if !inPlace[i] {
			put = append(put, maps.Entry{Prefix: e.Key.Prefix(), ListID: e.ID})
		}
	}
	if err := l.Add(put); err != nil {
		return 0, 0, err
	}
	if err := l.DeleteMany(stale); err != nil {
		return len(put), 0, err
	}
	return len(put), len(stale), nil
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
