package agent

import (
	"encoding/json"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/agent/fleet"
)

// TestAppendFleetAudit checks the hand-made audit line of a fleet verdict
// applied against json.Marshal of the AuditRecord the applier wrote one
// by one before: the same bytes, for plain and awkward names and reasons,
// with and without a score, for lives from under a second to days.
func TestAppendFleetAudit(t *testing.T) {
	now := time.Date(2026, 12, 6, 14, 30, 5, 123456789, time.UTC)
	base := fleet.Verdict{Target: netip.MustParsePrefix("198.18.0.7/32"), Action: fleet.ActionBlock, Issuer: "edge-1",
		Origin: "scorer", Reason: "syn_rate=3.1 ports=12", Score: 870}
	cases := []struct {
		name string
		edit func(v *fleet.Verdict)
		left time.Duration
	}{
		{"plain", func(*fleet.Verdict) {}, time.Hour},
		{"no reason, no score", func(v *fleet.Verdict) { v.Reason, v.Score = "", 0 }, 59*time.Minute + 59*time.Second + 600*time.Millisecond},
		{"throttle v6", func(v *fleet.Verdict) {
			v.Action, v.Target = fleet.ActionThrottle, netip.MustParsePrefix("2001:2::/64")
		}, 400 * time.Millisecond},
		{"prefix", func(v *fleet.Verdict) { v.Target = netip.MustParsePrefix("198.18.4.0/24") }, 90 * time.Second},
		{"escapes", func(v *fleet.Verdict) { v.Reason = "a \"quoted\" <b> & \\ \n\ttab" }, 5 * time.Second},
		{"unicode and bad UTF-8", func(v *fleet.Verdict) { v.Reason, v.Origin = "späte Sperre \u2028", "cli\xff" }, 49 * time.Hour},
		{"empty origin", func(v *fleet.Verdict) { v.Origin = "" }, 61 * time.Second},
	}
	for _, c := range cases {
		v := base
		c.edit(&v)
		want, err := json.Marshal(AuditRecord{Time: now, Who: "fleet:" + v.Issuer, What: "fleet." + string(v.Action),
			Target: []string{v.Target.String()}, Why: v.Reason, TTL: c.left.Round(time.Second).String(), Result: "ok",
			Score: float64(v.Score), Detail: "origin " + v.Origin})
		if err != nil {
			t.Fatal(err)
		}
		if got := appendFleetAudit(nil, now, &v, appliedVerdict{left: c.left}); string(got) != string(want)+"\n" {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, want)
		}
	}
	fail := errors.New("map full")
	want, _ := json.Marshal(AuditRecord{Time: now, Who: "fleet:edge-1", What: "fleet.block", Target: []string{"198.18.0.7/32"},
		Why: base.Reason, Result: "error", Detail: "map full"})
	if got := appendFleetAudit(nil, now, &base, appliedVerdict{left: time.Hour, err: fail}); string(got) != string(want)+"\n" {
		t.Errorf("error record:\n got %s\nwant %s", got, want)
	}
	buf := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(100, func() { buf = appendFleetAudit(buf[:0], now, &base, appliedVerdict{left: time.Hour}) }); n != 0 {
		t.Errorf("%v allocations per record applied, want 0", n)
	}
}
