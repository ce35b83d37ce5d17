package agent

import (
	"net/netip"
	"runtime/debug"

	"github.com/bulwark-filter/bulwark/agent/desired"
	"github.com/bulwark-filter/bulwark/agent/listset"
	"github.com/bulwark-filter/bulwark/maps"
)

// runtimeList reports whether a list id belongs to runtime entries.
func runtimeList(id uint32) bool {
	return id == desired.ListRuntimeAllow || id == desired.ListRuntimeBlock
}

// configList reports whether a list id belongs to the config (not to the
// CLI, not to the fleet, not to a feed): only those entries does a config
// reconcile delete.
func configList(id uint32) bool {
	return !runtimeList(id) && id != desired.ListFleetBlock && id < maps.FirstFeedList
}

// reconcileList makes the config-owned part of l equal want: every wanted
// entry is written first, then stale config entries are deleted. Runtime
// and feed entries are left alone unless the config names the same prefix
// (then the config's entry replaces it).
//
// The kernel's entries are read in batches and looked up in want (sorted)
// as they come, so no copy of them is kept: what is written is only what
// differs.
func reconcileList(l *maps.List, want listset.Set) (added, removed int, err error) {
	inPlace := make([]bool, len(want)) // want[i] is in the kernel as wanted
	var stale []netip.Prefix
	err = l.Each(func(e maps.Entry) {
		i, found := want.Index(listset.KeyOf(e.Prefix))
		switch {
		case found && want[i].ID == e.ListID && e.ExpiresNS == 0:
			inPlace[i] = true
		case !found && configList(e.ListID):
			stale = append(stale, e.Prefix)
		}
	})
	if err != nil {
		return 0, 0, err
	}
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

// bulkWrite is how many entries written or removed make a reconcile large
// enough to hand its buffers back to the system afterwards.
const bulkWrite = 1 << 16

// releaseBuffers returns the heap a large reconcile (or the parse before
// it) left behind to the system at once, instead of over the minutes the
// runtime's scavenger would take: the agent's resident memory then holds
// the lists' compact copies, not the buffers they were made with.
func releaseBuffers(written int) {
	if written >= bulkWrite {
		debug.FreeOSMemory()
	}
}
