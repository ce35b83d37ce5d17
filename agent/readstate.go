package agent

import (
	"net/netip"
	"slices"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/desired"
	"github.com/bulwark-filter/bulwark/maps"
)

// readState is what the readers (metrics, status, top, explain and the list
// and verdict reads of the control API) see of the agent: an immutable
// snapshot that the writers publish after each change of it. Readers load
// it without a.mu and read the maps (which allow reads at any time), so a
// long read never holds up a writer.
type readState struct {
	cfg      *config.Config
	want     *desired.State
	ifaces   []*iface // their datapaths; an iface's fields do not change after start
	scoring  *scoring // nil while the agent starts
	metrics  *metricsView
	fleet    *fleetLink    // nil without a fleet block
	crowdsec *crowdSecLink // nil without a crowdsec block
}

// publish stores a snapshot of the agent's state for the readers; a.mu
// must be held.
func (a *Agent) publish() {
	ifaces := slices.Clone(a.ifaces)
	a.state.Store(&readState{cfg: a.cfg, want: a.want, ifaces: ifaces, scoring: a.scoring,
		metrics: newMetricsView(a.want, ifaces), fleet: a.fleet, crowdsec: a.crowdsec})
}

// metricsView is the collector's view of the published state.
func (a *Agent) metricsView() *metricsView {
	if s := a.state.Load(); s != nil {
		return s.metrics
	}
	return nil
}

// verdictOrigin is how `verdicts list` shows the origin of a verdict on
// source: fleet:<issuer> for the fleet's, crowdsec:<origin>/<scenario>
// for CrowdSec's.
func (st *readState) verdictOrigin(o maps.Origin, source netip.Prefix) string {
	if o == maps.OriginCrowdSec {
		return st.crowdsec.label(source)
	}
	return st.fleet.origin(o, source)
}

// rebuildExempt recomputes, after a change of the allow list, the space
// the scorer never judges and fleet and CrowdSec verdicts never touch.
func (st *readState) rebuildExempt() {
	if st.scoring != nil {
		st.scoring.rebuildExempt(st.cfg)
	}
	if st.fleet != nil && len(st.ifaces) > 0 {
		st.fleet.applier.rebuildGuard(st.cfg, st.ifaces[0].dp.Maps.Allow)
	}
	if st.crowdsec != nil && len(st.ifaces) > 0 {
		st.crowdsec.rebuildGuard(st.cfg, st.ifaces[0].dp.Maps.Allow)
	}
}
