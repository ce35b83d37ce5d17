package agent

import (
	"net/netip"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/fleet"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// BenchmarkFleetApply1M is the agent's side of a cold sync of 1M fleet
// verdicts: the fleet applier writes them into a real datapath's verdict
// map (sized for them) and audits each, in batches of 4,096 changes as
// the client hands them over; each round has a fresh datapath. It
// reports the time per verdict.
func BenchmarkFleetApply1M(b *testing.B) {
	const n, batch = 1 << 20, 4096
	sizes := testutil.SmallSizes()
	sizes.Verdicts = n + n/4
	now := time.Now()
	changes := make([]fleet.Change, n)
	base := netip.MustParseAddr("2001:2:0:ff::").As16()
	for i := range changes {
		k := base
		k[13], k[14], k[15] = byte(i>>16), byte(i>>8), byte(i)
		v := fleet.Verdict{Target: netip.PrefixFrom(netip.AddrFrom16(k), 128), Action: fleet.ActionBlock, Issuer: "filler-1",
			Origin: "cli", Reason: "fleet test filler", IssuedAt: now, Expires: now.Add(time.Hour)}
		changes[i] = fleet.Change{Target: v.Target, Winner: &v}
	}
	b.StopTimer()
	for range b.N {
		d := testutil.Load(b, testutil.Setup{Sizes: sizes, Policy: maps.Policy{IPv6Prefix: 128}})
		a, _ := testAgentOn(b, &config.Config{}, d, "bwk-fleet0")
		f := &fleetApplier{log: a.log, audit: a.audit, writers: &a.mu, state: a.state.Load, mapErrs: a.mapErrs}
		f.rebuildGuard(&config.Config{}, d.Maps.Allow)
		b.StartTimer()
		for lo := 0; lo < n; lo += batch {
			if refused := f.Apply(changes[lo:min(n, lo+batch)]); len(refused) != 0 {
				b.Fatalf("refused %d", len(refused))
			}
		}
		b.StopTimer()
		if vs, err := d.Maps.Verdicts(); err != nil || len(vs) != n {
			b.Fatalf("%d verdicts in the map (%v), want %d", len(vs), err, n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/verdict")
}
