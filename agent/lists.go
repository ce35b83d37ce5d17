package agent

import (
	"net/netip"

	"github.com/bulwark-filter/bulwark/agent/desired"
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
func reconcileList(l *maps.List, want map[netip.Prefix]uint32) (added, removed int, err error) {
	cur, err := l.Entries()
	if err != nil {
		return 0, 0, err
	}
	have := make(map[netip.Prefix]maps.Entry, len(cur))
	for _, e := range cur {
		have[e.Prefix] = e
	}
	var put []maps.Entry
	for pfx, id := range want {
		if e, ok := have[pfx]; ok && e.ListID == id && e.ExpiresNS == 0 {
			continue
		}
		put = append(put, maps.Entry{Prefix: pfx, ListID: id})
	}
	if err := l.Add(put); err != nil {
		return 0, 0, err
	}
	var stale []netip.Prefix
	for pfx, e := range have {
		if _, ok := want[pfx]; !ok && configList(e.ListID) {
			stale = append(stale, pfx)
		}
	}
	if err := l.Delete(stale); err != nil {
		return len(put), 0, err
	}
	return len(put), len(stale), nil
}
