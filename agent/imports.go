package agent

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"

	"github.com/bulwark-filter/bulwark/agent/api"
	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/maps"
)

// auditImportTargets is how many of an import's CIDRs its audit record
// names (an import may hold a million).
const auditImportTargets = 100

// originOf is the origin a list entry shows (block list, API): config,
// runtime (the CLI and its imports), fleet or feed; a list file's entries
// show as config (bulwark why names them file).
func originOf(listID uint32) string {
	if o := listOrigin(listID); o != "file" {
		return o
	}
	return "config"
}

// lockForAdd checks a run-time entry's reason and TTL, returns its expiry
// (0: none) and takes the writers' lock as lockWriters does; false when it
// has answered with an error.
func (s *controlServer) lockForAdd(w http.ResponseWriter, reason, ttl string) (*readState, uint64, bool) {
	expires, ok := entryExpiry(w, reason, ttl)
	if !ok {
		return nil, 0, false
	}
	st, ok := s.lockWriters(w)
	return st, expires, ok
}

// addErrCode is the HTTP status of a failed list write: 507 for a full
// map, else 500.
func addErrCode(err error) int {
	if fe := (*maps.FullError)(nil); errors.As(err, &fe) {
		return http.StatusInsufficientStorage
	}
	return http.StatusInternalServerError
}

// entryExpiry checks a run-time entry's reason and TTL and returns its
// expiry (0: none); false when it has answered with an error.
func entryExpiry(w http.ResponseWriter, reason, ttl string) (uint64, bool) {
	if len(reason) > api.MaxReasonLen {
		fail(w, http.StatusBadRequest, "reason over %d characters", api.MaxReasonLen)
		return 0, false
	}
	if ttl == "" {
		return 0, true
	}
	d, err := api.ParseTTL(ttl, config.ParseDuration)
	if err != nil {
		fail(w, http.StatusBadRequest, "%v", err)
		return 0, false
	}
	return monotonicNow() + uint64(d), true
}

// handleListImport adds the entries of an import that the list does not
// hold yet, in one all-or-nothing write per interface (undone on the
// interfaces written before when one fails); entries present, of any
// origin, stay as they are. A dry run writes nothing and says, entry by
// entry, what the import would do.
func (s *controlServer) handleListImport(w http.ResponseWriter, r *http.Request) {
	name, id, ok := s.listFor(w, r)
	if !ok {
		return
	}
	var req api.ImportRequest
	if !decodeBodyMax(w, r, &req, api.MaxImportBytes) {
		return
	}
	pfxs, err := parseCIDRsMax(req.CIDRs, api.MaxImportCIDRs)
	if err != nil {
		fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	st, expires, ok := s.lockForAdd(w, req.Reason, req.TTL)
	if !ok {
		return
	}
	defer s.writers.Unlock()
	if len(st.ifaces) == 0 {
		fail(w, http.StatusServiceUnavailable, "no interface attached")
		return
	}
	cur, err := pick(st.ifaces[0], name).Entries()
	if err != nil {
		fail(w, http.StatusInternalServerError, "read %s list: %v", name, err)
		return
	}
	now := monotonicNow()
	have := make(map[netip.Prefix]uint32, len(cur))
	for _, e := range cur {
		if e.ExpiresNS == 0 || e.ExpiresNS > now {
			have[e.Prefix] = e.ListID
		}
	}
	rep := api.ImportReply{DryRun: req.DryRun}
	var add []maps.Entry
	var added []netip.Prefix
	seen := make(map[netip.Prefix]bool, len(pfxs))
	for _, p := range pfxs {
		if seen[p] {
			continue
		}
		seen[p] = true
		c := api.ImportChange{CIDR: p.String(), Action: api.ImportAdd}
		if lid, ok := have[p]; ok {
			c.Action, c.Origin = api.ImportPresent, originOf(lid)
			rep.Present++
		} else {
			add = append(add, maps.Entry{Prefix: p, ListID: id, ExpiresNS: expires})
			added = append(added, p)
			rep.Added++
		}
		if req.DryRun {
			rep.Changes = append(rep.Changes, c)
		}
	}
	if req.DryRun {
		writeJSON(w, http.StatusOK, rep)
		return
	}
	target := req.CIDRs[:min(len(req.CIDRs), auditImportTargets)]
	detail := fmt.Sprintf("%d entries: %d added, %d present", len(pfxs), rep.Added, rep.Present)
	if len(add) > 0 {
		for i, it := range st.ifaces {
			err := pick(it, name).Add(add)
			if err == nil {
				continue
			}
			for _, prev := range st.ifaces[:i] {
				if uerr := pick(prev, name).Delete(added); uerr != nil {
					err = fmt.Errorf("%w; undo on %s: %v", err, prev.name, uerr)
				}
			}
			s.mapErrs.WithLabelValues(name).Inc()
			s.auditf(AuditRecord{Who: "cli", What: name + ".import", Target: target, Why: req.Reason, TTL: req.TTL, Result: "error",
				Detail: detail + ": " + err.Error()})
			fail(w, addErrCode(err), "%s list on %s: %v; nothing imported", name, it.name, err)
			return
		}
		if name == "allow" {
			st.rebuildExempt()
		}
	}
	s.auditf(AuditRecord{Who: "cli", What: name + ".import", Target: target, Why: req.Reason, TTL: req.TTL, Result: "ok", Detail: detail})
	writeJSON(w, http.StatusOK, rep)
}
