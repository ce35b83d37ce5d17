package fleet_test

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/test/agenttest"
	testbed "github.com/bulwark-filter/bulwark/test/fleet"
)

// full selects the full sizes (10 agents, 5,000 verdicts, 60 s partition,
// 1M cold sync): scripts/resilience.sh passes -full; `make test` runs the
// short versions.
var full = flag.Bool("full", false, "run the fleet scenarios at full size (minutes), not the short versions")

// pick returns q in the short versions and f with -full.
func pick[T any](q, f T) T {
	if *full {
		return f
	}
	return q
}

func TestMain(m *testing.M) {
	os.Exit(testbed.Main(m))
}

// summary prints one line for scripts/resilience.sh's table.
func summary(t *testing.T, format string, args ...any) {
	t.Helper()
	t.Logf("SUMMARY %s | %s", t.Name(), fmt.Sprintf(format, args...))
}

// limitBurst is the default limit's burst: a fresh source gets exactly
// this many frames through when it sends them at once (checkFrames sends
// fewer, so all pass unless a verdict is in force).
const limitPPS, limitBurst = 10, 10

// probe is the number of frames each delivery check sends: below the
// burst, so a source without a verdict gets all of them through.
const probe = 5

// config is the agents' config: the default limit, the engine, and maps
// large enough for the scenario's verdicts.
func config(verdicts int, extra string) func(int) agenttest.Config {
	return func(int) agenttest.Config {
		n := mapSize(verdicts)
		return agenttest.Config{
			PPS: limitPPS, Burst: limitBurst,
			Maps:  agenttest.Sizes{Verdicts: n, BlockHosts: n, Sources: max(4096, n)},
			Extra: agenttest.RateLimitEngine(n) + extra,
		}
	}
}

// mapSize is the verdict map (and block list) size for a scenario with
// verdicts fleet verdicts: a quarter more, at least 1024.
func mapSize(verdicts int) int { return max(1024, verdicts+verdicts/4) }

// caps is a fleet block body with issuer caps that a bulk scenario's
// verdicts stay under, the active cap at the verdict map's size, and the
// publish list.
func caps(verdicts int) func(int) string {
	return func(int) string {
		return fmt.Sprintf("  publish      = [\"scorer\", \"cli\"]\n  issuer_rate  = 100000\n  issuer_burst = 100000\n"+
			"  max_active   = %d\n  buffer       = %d\n", mapSize(verdicts), mapSize(verdicts))
	}
}

// target is the k-th verdict target of a bulk scenario (k < 25,000):
// 198.18.100.1 onwards, 250 per /24.
func target(k int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 18, byte(100 + k/250), byte(1 + k%250)})
}

// blockFleet runs `block add --fleet` on a for targets, in chunks of 200,
// with ttl.
func blockFleet(a *testbed.Agent, ttl string, targets []netip.Addr) {
	a.T.Helper()
	for len(targets) > 0 {
		n := min(200, len(targets))
		args := []string{"block", "add", "--fleet", "--ttl", ttl, "--reason", "fleet test"}
		for _, x := range targets[:n] {
			args = append(args, x.String())
		}
		a.MustCLI(args...)
		targets = targets[n:]
	}
}

// delFleet runs `verdicts del --fleet` on a for targets, in chunks of 200.
func delFleet(a *testbed.Agent, targets []netip.Addr) {
	a.T.Helper()
	for len(targets) > 0 {
		n := min(200, len(targets))
		args := []string{"verdicts", "del", "--fleet"}
		for _, x := range targets[:n] {
			args = append(args, x.String())
		}
		a.MustCLI(args...)
		targets = targets[n:]
	}
}

// delivered sends probe frames from src at a's XDP veth (from its client
// namespace) and returns how many reached a's stack.
func delivered(a *testbed.Agent, src netip.Addr) int {
	a.T.Helper()
	return a.Send(src, probe)
}

// expectFrames checks, on every agent of as, that probe frames from src
// get through (pass) or are all dropped (!pass).
func expectFrames(t *testing.T, as []*testbed.Agent, src netip.Addr, pass bool) {
	t.Helper()
	want := 0
	if pass {
		want = probe
	}
	for _, a := range as {
		if got := delivered(a, src); got != want {
			t.Errorf("%s: %d of %d frames from %s delivered, want %d", a.Node, got, probe, src, want)
		}
	}
}

// converge waits until every agent of the bed reports active fleet
// verdicts and is in sync with the bucket, then until all report the
// same digest; it returns the time from start until all were.
func converge(t *testing.T, b *testbed.Bed, start time.Time, limit time.Duration, active int) time.Duration {
	t.Helper()
	last := make([]testbed.Status, len(b.Agents))
	defer func() {
		// On a timeout (Fatalf ends the test through here), what each
		// agent said last.
		if t.Failed() {
			for i, a := range b.Agents {
				t.Logf("%s's last fleet status: %+v", a.Node, last[i])
			}
		}
	}()
	at := b.WaitAll(start, limit, fmt.Sprintf("%d active fleet verdicts, in sync", active), func(a *testbed.Agent) bool {
		s := a.FleetStatus()
		last[a.Index] = s
		return s.Connected && s.InSync && s.Active == active && s.Lag == 0
	})
	took := slowest(at)
	// Digests are of the set at a given second: read them again until
	// every agent's falls in the same second.
	agenttest.WaitFor(t, limit, "equal digests on every agent", func() bool {
		d := map[string][]string{}
		for _, a := range b.Agents {
			s := a.FleetStatus()
			d[s.Digest] = append(d[s.Digest], a.Node)
		}
		if len(d) == 1 {
			return true
		}
		t.Logf("digests differ: %v", d)
		return false
	})
	return took
}

func slowest(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

// quantiles is p50, p99 and max of ds (nearest rank), formatted.
func quantiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "no samples"
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	rank := func(p float64) time.Duration {
		i := int(p*float64(len(s))+0.999999) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return fmt.Sprintf("p50 %s, p99 %s, max %s over %d samples", rank(0.50).Round(time.Millisecond),
		rank(0.99).Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond), len(s))
}

// targets are targets k for k in [from, to).
func targets(from, to int) []netip.Addr {
	var ts []netip.Addr
	for k := from; k < to; k++ {
		ts = append(ts, target(k))
	}
	return ts
}

// others is the agents of b except a.
func others(b *testbed.Bed, a *testbed.Agent) []*testbed.Agent {
	var as []*testbed.Agent
	for _, x := range b.Agents {
		if x != a {
			as = append(as, x)
		}
	}
	return as
}

// names lists the node names of as.
func names(as []*testbed.Agent) string {
	var n []string
	for _, a := range as {
		n = append(n, a.Node)
	}
	return strings.Join(n, ",")
}
