package agent

import (
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"

	"github.com/bulwark-filter/bulwark/agent/api"
	"github.com/bulwark-filter/bulwark/agent/desired"
	"github.com/bulwark-filter/bulwark/maps"
)

// handleWhy answers GET /v1/why/{ip}: which step of the datapath's
// decision would decide a packet from ip now, read from the maps of one
// interface's datapath (the first unless ?interface= names one).
func (s *controlServer) handleWhy(w http.ResponseWriter, r *http.Request) {
	addr, err := api.ParseAddr(r.PathValue("ip"))
	if err != nil {
		fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	probe, err := whyProbe(addr, r.URL.Query())
	if err != nil {
		fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	st := s.state()
	if st == nil || len(st.ifaces) == 0 {
		fail(w, http.StatusServiceUnavailable, "no interface attached")
		return
	}
	idx := 0
	if name := r.URL.Query().Get("interface"); name != "" {
		idx = -1
		for i, it := range st.ifaces {
			if it.name == name {
				idx = i
			}
		}
		if idx < 0 {
			fail(w, http.StatusNotFound, "no interface %q attached", name)
			return
		}
	}
	it := st.ifaces[idx]
	now := monotonicNow()
	tr, err := it.dp.Maps.Trace(probe, now)
	if err != nil {
		fail(w, http.StatusInternalServerError, "trace on %s: %v", it.name, err)
		return
	}
	rep := whyReply(st.want, probe, tr, now)
	rep.Interface = it.name
	rep.Mode = st.cfg.Mode
	prefix := it.dp.Maps.IPv6Prefix()
	rep.TrackingKey = maps.SourceFromKey(maps.SourceKey(addr, prefix), prefix).String()
	if sc := st.scoring; sc != nil && idx < len(sc.engines) {
		x := sc.engines[idx].Explain(addr, now)
		rep.Score = &api.WhyScore{Score: x.Score, Tracked: x.Tracked, Exempt: x.Exempt,
			ThrottleAt: x.Thresholds["throttle"], BlockAt: x.Thresholds["block"]}
		if !x.Tracked && x.Active != nil {
			rep.Score.Score = x.Active.Score
		}
	}
	for _, e := range s.sigs.list() {
		if sigMayMatch(&e.sig, probe) {
			rep.Signatures = append(rep.Signatures, fmt.Sprintf("%s (%s, %s): %s", e.name, e.origin, e.sig.Action, e.sig.String()))
		}
	}
	writeJSON(w, http.StatusOK, rep)
}

// sigMayMatch reports whether a packet like probe may match s: its
// protocol and port do not rule it out (the other headers may).
func sigMayMatch(s *maps.Signature, probe maps.Probe) bool {
	proto := map[maps.Protocol]uint8{maps.ProtoTCP: 6, maps.ProtoUDP: 17, maps.ProtoICMP: 1}[probe.Proto]
	if s.Fields&maps.SigProto != 0 && (probe.Proto == "" || proto != s.Proto) {
		return false
	}
	if s.Fields&maps.SigDPort != 0 && (probe.Proto == "" || probe.Port < s.DPort.Lo || probe.Port > s.DPort.Hi) {
		return false
	}
	return true
}

// whyProbe is the packet of a why request's query: proto (tcp, udp, icmp
// or none), port (tcp and udp), syn (tcp; default true) and bytes.
func whyProbe(addr netip.Addr, q url.Values) (maps.Probe, error) {
	p := maps.Probe{Src: addr, Len: api.DefaultWhyBytes}
	switch proto := q.Get("proto"); proto {
	case "":
	case "tcp", "udp", "icmp":
		p.Proto = maps.Protocol(proto)
	default:
		return p, fmt.Errorf("proto %q: want tcp, udp or icmp", proto)
	}
	if v := q.Get("port"); v != "" {
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil {
			return p, fmt.Errorf("port %q: want 0 to 65535", v)
		}
		if p.Proto != maps.ProtoTCP && p.Proto != maps.ProtoUDP {
			return p, fmt.Errorf("port %s needs proto tcp or udp", v)
		}
		p.Port = uint16(n)
	}
	p.SYN = p.Proto == maps.ProtoTCP
	if v := q.Get("syn"); v != "" {
		syn, err := strconv.ParseBool(v)
		if err != nil || p.Proto != maps.ProtoTCP {
			return p, fmt.Errorf("syn %q: want true or false, with proto tcp", v)
		}
		p.SYN = syn
	}
	if v := q.Get("bytes"); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n < api.MinWhyBytes || n > api.MaxWhyBytes {
			return p, fmt.Errorf("bytes %q: want %d to %d", v, api.MinWhyBytes, api.MaxWhyBytes)
		}
		p.Len = uint32(n)
	}
	return p, nil
}

// listOrigin says where the entries of list id come from: the run-time
// lists (the CLI and API), the fleet's prefix blocks, CrowdSec's ranges, the config's inline
// CIDRs, a list file of the config or a block feed.
func listOrigin(id uint32) string {
	switch {
	case runtimeList(id):
		return "runtime"
	case id == desired.ListFleetBlock:
		return "fleet"
	case id == desired.ListCrowdSecBlock:
		return "crowdsec"
	case id == desired.ListConfigAllow || id == desired.ListConfigBlock:
		return "config"
	case id < maps.FirstFeedList:
		return "file"
	}
	return "feed"
}

// whyReply puts a trace in the API's words: list, rule and class names
// from the desired state want.
func whyReply(want *desired.State, p maps.Probe, tr *maps.Trace, now uint64) api.Why {
	secs := func(expires uint64) float64 {
		if expires == 0 || expires <= now {
			return 0
		}
		return float64(expires-now) / 1e9
	}
	entry := func(e *maps.Entry) *api.WhyEntry {
		if e == nil {
			return nil
		}
		return &api.WhyEntry{CIDR: e.Prefix.String(), List: want.ListNames[e.ListID], Origin: listOrigin(e.ListID), ExpiresIn: secs(e.ExpiresNS)}
	}
	rep := api.Why{Source: p.Src.String(), Tracked: tr.Tracked, Allow: entry(tr.Allow), Block: entry(tr.Block),
		Packet:    api.WhyPacket{Proto: string(p.Proto), Port: p.Port, SYN: p.SYN, Bytes: p.Len},
		ClassMult: float64(tr.ClassMultPM) / 1000, Limits: []api.WhyLimit{}}
	if tr.ClassID > 0 && int(tr.ClassID) <= len(want.Policy.Classes) {
		rep.Class = want.Policy.Classes[tr.ClassID-1].Name
	}
	if v := tr.Verdict; v != nil {
		rep.Verdict = &api.WhyVerdict{Action: v.Action.String(), Origin: v.Origin.String(), Score: v.Score, ExpiresIn: secs(v.ExpiresNS)}
	}
	var over *api.WhyLimit
	for _, b := range tr.Limits {
		l := api.WhyLimit{Rule: want.Policy.RuleName(b.Rule), PPS: b.Limit.PPS, Burst: b.Limit.Burst,
			BytesPerSec: b.Limit.BytesPerSec, ByteBurst: b.Limit.ByteBurst, Multiplier: float64(b.MultPM) / 1000,
			Fresh: !b.Exists, Conforms: b.Conforms, Reached: b.Reached}
		if b.Key.IsValid() {
			l.Bucket = b.Key.String()
		}
		if b.Limit.PPS > 0 {
			t := math.Round(b.Tokens*1000) / 1000
			l.Tokens = &t
		}
		if b.Limit.BytesPerSec > 0 {
			t := math.Round(b.ByteTokens)
			l.ByteTokens = &t
		}
		rep.Limits = append(rep.Limits, l)
		if l.Reached && !l.Conforms && over == nil {
			over = &rep.Limits[len(rep.Limits)-1]
		}
	}
	d := tr.Decision
	rep.Decision = api.WhyStep{Action: d.Action.String(), Reason: d.Reason.String()}
	switch d.Reason {
	case maps.ReasonAllowlist:
		rep.Decision.Detail = fmt.Sprintf("%s is on the allow list %q (%s)", rep.Allow.CIDR, rep.Allow.List, rep.Allow.Origin)
	case maps.ReasonBlocklist:
		rep.Decision.Detail = fmt.Sprintf("%s is on the block list %q (%s)", rep.Block.CIDR, rep.Block.List, rep.Block.Origin)
	case maps.ReasonVerdict:
		rep.Decision.Detail = fmt.Sprintf("a block verdict (%s, score %d) is in force for %.0f s more", rep.Verdict.Origin, rep.Verdict.Score, rep.Verdict.ExpiresIn)
	case maps.ReasonRatelimit:
		rep.Decision.Rule = want.Policy.RuleName(int(d.Detail))
		rep.Decision.Detail = fmt.Sprintf("the %s limit is exceeded: its bucket has no room for this packet", rep.Decision.Rule)
		switch {
		case over != nil && over.Tokens != nil && *over.Tokens < 1:
			rep.Decision.Detail = fmt.Sprintf("the %s limit is exceeded: its bucket holds %.3g of the 1 packet this one needs", over.Rule, *over.Tokens)
		case over != nil && over.ByteTokens != nil:
			rep.Decision.Detail = fmt.Sprintf("the %s limit is exceeded: its bucket holds %.0f of the %d bytes this packet needs", over.Rule, *over.ByteTokens, p.Len)
		}
	default:
		rep.Decision.Detail = "no list entry or verdict matches and every limit it meets has room"
		if len(rep.Limits) == 0 {
			rep.Decision.Detail = "no list entry, verdict or limit applies"
		}
	}
	return rep
}

// explainUntracked completes from the datapath the explanation of a
// source the engine has no verdict for: a block verdict in force (adopted
// from an earlier run, or not the scorer's) gives the score it was stored
// with, since no packet of the source reaches the engine; with no score
// at all, a list entry says why the engine sees none of its packets.
func explainUntracked(st *readState, addr netip.Addr, x *api.Explanation, now uint64) error {
	if x.Active != nil || len(st.ifaces) == 0 {
		return nil
	}
	tr, err := st.ifaces[0].dp.Maps.Trace(maps.Probe{Src: addr, Len: api.DefaultWhyBytes}, now)
	if err != nil {
		return fmt.Errorf("read the datapath's state of %s: %w", addr, err)
	}
	switch {
	case tr.Allow != nil && x.ScoreFrom == api.ScoreNone:
		x.Note = fmt.Sprintf("on the allow list %q (%s): its packets pass before the rate limiter, so the engine keeps no state and gives no score",
			st.want.ListNames[tr.Allow.ListID], listOrigin(tr.Allow.ListID))
	case tr.Block != nil && x.ScoreFrom == api.ScoreNone:
		x.Note = fmt.Sprintf("on the block list %q (%s): its packets are dropped before the rate limiter, so the engine keeps no state and gives no score",
			st.want.ListNames[tr.Block.ListID], listOrigin(tr.Block.ListID))
	case tr.Verdict != nil && (tr.Verdict.Action == maps.VerdictBlock || x.ScoreFrom == api.ScoreNone):
		x.ScoreFrom = api.ScoreVerdict
		x.Score = float64(tr.Verdict.Score)
		x.Components = nil
		x.Note = fmt.Sprintf("a %s verdict (origin %s) is in force: the score is the one stored with it; "+
			"its components are not known to this agent (issued before a restart, or not by the scorer)", tr.Verdict.Action, tr.Verdict.Origin)
	case x.ScoreFrom == api.ScoreNone:
		x.Note = "not tracked: no packet from it reached the rate limiter recently"
	}
	return nil
}
