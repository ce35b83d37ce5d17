package agent_test

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/test/agenttest"
)

// TestFeedBlock: a block feed read from a file puts its entries in the
// block list under its own list id (hits counted per feed); entries that
// would block allow-listed space are skipped; a broken update keeps the
// last good version (never a flush); a feed removed from the config takes
// its entries with it, and config reloads leave feed entries alone.
func TestFeedBlock(t *testing.T) {
	e := newEnv(t)
	good := filepath.Join(e.Dir, "feed-good.txt")
	broken := filepath.Join(e.Dir, "feed-broken.txt")
	agenttest.WriteFile(t, good, "# test feed\n198.18.70.0/24\n198.18.71.5\n198.18.0.0/16 ; covers the allow-listed client\n")
	agenttest.WriteFile(t, broken, "198.18.70.0/24\nnot-an-address\n")
	feed := func(path string) string {
		return fmt.Sprintf("\nfeed \"testfeed\" {\n  path   = %q\n  format = \"plain\"\n  action = \"block\"\n}\n", path)
	}
	allow := []string{"198.18.1.2"}
	e.WriteConfig("", agenttest.Config{Allow: allow, Extra: feed(good)})
	e.Start()

	agenttest.WaitFor(t, 10*time.Second, "feed entries in the block list", func() bool {
		_, ok := agenttest.FindEntry(e.List("block"), "198.18.70.0/24")
		return ok
	})
	es := e.List("block")
	for _, c := range []string{"198.18.70.0/24", "198.18.71.5/32"} {
		en, ok := agenttest.FindEntry(es, c)
		if !ok || en.Origin != "feed" || en.List != "feed:testfeed" {
			t.Errorf("block list entry %s: %+v, want origin feed, list feed:testfeed", c, en)
		}
	}
	if _, ok := agenttest.FindEntry(es, "198.18.0.0/16"); ok {
		t.Errorf("a feed entry covering allow-listed space was applied")
	}
	if got := e.WaitMetric(5*time.Second, 1, "bulwark_feed_entries_refused", "feed", "testfeed", "reason", "protected"); got != 1 {
		t.Errorf("refused entries metric %v, want 1", got)
	}
	if got := e.Send(agenttest.Addr("198.18.70.9"), 50); got != 0 {
		t.Errorf("%d frames from a feed-listed source delivered, want 0", got)
	}
	if got := e.Metrics().Get("bulwark_list_hits_total", "list", "feed:testfeed"); got != 50 {
		t.Errorf("feed list hits %v, want 50", got)
	}

	// A broken update (the feed now points at a broken file): rejected,
	// counted, the last good entries stay.
	e.WriteConfig("", agenttest.Config{Allow: allow, Extra: feed(broken)})
	e.MustCLI("reload")
	if got := e.WaitMetric(10*time.Second, 1, "bulwark_feed_errors_total", "feed", "testfeed", "kind", "parse"); got < 1 {
		t.Fatalf("feed parse errors %v, want >= 1", got)
	}
	if _, ok := agenttest.FindEntry(e.List("block"), "198.18.71.5/32"); !ok {
		t.Errorf("the last good feed entries were flushed by a broken update")
	}
	if got := e.Send(agenttest.Addr("198.18.71.5"), 20); got != 0 {
		t.Errorf("%d frames delivered from a source of the last good feed, want 0", got)
	}

	// The feed leaves the config: its entries go, the config's stay.
	e.WriteConfig("", agenttest.Config{Allow: allow, Block: []string{"198.18.66.0/24"}})
	e.MustCLI("reload")
	agenttest.WaitFor(t, 10*time.Second, "feed entries removed", func() bool {
		_, ok := agenttest.FindEntry(e.List("block"), "198.18.70.0/24")
		return !ok
	})
	if _, ok := agenttest.FindEntry(e.List("block"), "198.18.66.0/24"); !ok {
		t.Errorf("config entry missing after the reload")
	}
	if got := e.Send(agenttest.Addr("198.18.70.9"), 20); got != 20 {
		t.Errorf("%d of 20 frames delivered after the feed left, want 20", got)
	}
}

// TestFeedSafety: a poisoned feed (0.0.0.0/0 and ::/0, entries over the
// host's own addresses, its default gateways and the allow list, between
// good entries) blocks only its good entries: the rest is refused and
// counted per reason, and traffic the poisoned entries cover still passes.
// The host facts come from the agent's namespace, where the test adds an
// address and default routes. An update that grows the feed's coverage past
// safety.max_growth_ipv4 is held back with the last good version in force;
// a reload that relaxes the limit applies it at once. An address the host
// gains takes a good entry that covers it out at the next screening.
func TestFeedSafety(t *testing.T) {
	e := newEnv(t)
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", append([]string{"-n", e.TB.Server}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	// The server's own 198.18.1.1/24 and 2001:2:0:1::1/64 are there already.
	ip("addr", "add", "198.18.9.1/24", "dev", e.TB.ServerIf)
	ip("route", "add", "default", "via", "198.18.9.254")
	ip("-6", "route", "add", "default", "via", "2001:2:0:1::fe")

	path := filepath.Join(e.Dir, "feed.txt")
	good := []string{"198.18.70.0/24", "198.18.71.5/32", "2001:2:0:70::/64"}
	poisoned := "0.0.0.0/0\n::/0\n" + // too broad
		"198.18.1.0/24\n" + // the server's address 198.18.1.1 (and the allow-listed client)
		"198.18.9.1\n" + // the address the test added
		"198.18.9.254\n" + // the IPv4 default gateway
		"2001:2:0:1::fe\n" + // the IPv6 default gateway
		"2001:2::/48\n" + // the server's IPv6 address
		"198.18.44.0/24\n" + // reputation.protect
		strings.Join(good, "\n") + "\n"
	agenttest.WriteFile(t, path, poisoned)
	cfg := func(growth4 int) agenttest.Config {
		return agenttest.Config{Allow: []string{"198.18.1.2"}, Extra: fmt.Sprintf(`
reputation {
  protect = ["198.18.44.0/24"]
}
safety {
  max_growth_ipv4 = %d
}
feed "poisoned" {
  path   = %q
  format = "plain"
}
`, growth4, path)}
	}
	// A /20 is 4096 addresses: the good entries (257) fit.
	e.WriteConfig("", cfg(20))
	e.Start()
	agenttest.WaitFor(t, 10*time.Second, "the feed applied", func() bool {
		_, ok := agenttest.FindEntry(e.List("block"), good[0])
		return ok
	})
	var fromFeed []string
	for _, en := range e.List("block") {
		if en.List == "feed:poisoned" {
			fromFeed = append(fromFeed, en.CIDR)
		}
	}
	slices.Sort(fromFeed)
	if !slices.Equal(fromFeed, good) {
		t.Errorf("feed entries in the block list: %v, want exactly the good ones %v", fromFeed, good)
	}
	for reason, want := range map[string]float64{"too_broad": 2, "protected": 6} {
		if got := e.WaitMetric(5*time.Second, want, "bulwark_feed_entries_refused", "feed", "poisoned", "reason", reason); got != want {
			t.Errorf("refused entries (%s): %v, want %v", reason, got, want)
		}
	}
	for src, want := range map[string]int{
		"198.18.70.9": 0, "198.18.71.5": 0, "2001:2:0:70::9": 0, // good entries: dropped
		"198.18.60.1": 40, "2001:2:0:60::1": 40, // only 0.0.0.0/0 and ::/0 cover them
		"198.18.9.254": 40, "2001:2:0:1::fe": 40, "198.18.44.7": 40, // the gateways, protected space
	} {
		if got := e.Send(agenttest.Addr(src), 40); got != want {
			t.Errorf("%d of 40 frames from %s delivered, want %d", got, src, want)
		}
	}
	if got := e.Metrics().Get("bulwark_list_hits_total", "list", "feed:poisoned"); got != 120 {
		t.Errorf("feed list hits %v, want 120 (40 from each of the 3 sources of the good entries)", got)
	}

	// The feed grows by a /19 (8192 addresses) at once. The reload that
	// lowers the limit to a /21 (2048) makes the runner read the feed again
	// now: held back, the version in force stays.
	agenttest.WriteFile(t, path, poisoned+"198.18.128.0/19\n")
	e.WriteConfig("", cfg(21))
	e.MustCLI("reload")
	if got := e.WaitMetric(10*time.Second, 1, "bulwark_feed_errors_total", "feed", "poisoned", "kind", "growth"); got != 1 {
		t.Fatalf("feed growth errors %v, want 1", got)
	}
	es := e.List("block")
	if _, ok := agenttest.FindEntry(es, "198.18.128.0/19"); ok {
		t.Errorf("an update that grew past the limit was applied")
	}
	for _, c := range good {
		if _, ok := agenttest.FindEntry(es, c); !ok {
			t.Errorf("entry %s of the last good version gone after a held-back update", c)
		}
	}
	if got := e.Send(agenttest.Addr("198.18.130.1"), 20); got != 20 {
		t.Errorf("%d of 20 frames from the held-back /19 delivered, want 20", got)
	}

	// A limit of one /19 lets exactly a /19 of growth through.
	e.WriteConfig("", cfg(19))
	e.MustCLI("reload")
	agenttest.WaitFor(t, 10*time.Second, "the grown feed applied", func() bool {
		_, ok := agenttest.FindEntry(e.List("block"), "198.18.128.0/19")
		return ok
	})
	if got := e.Send(agenttest.Addr("198.18.130.1"), 20); got != 0 {
		t.Errorf("%d of 20 frames from the accepted /19 delivered, want 0", got)
	}
	if got := e.Send(agenttest.Addr("198.18.60.1"), 20); got != 20 {
		t.Errorf("%d of 20 frames from a source only 0.0.0.0/0 covers delivered, want 20", got)
	}

	// The host gains an address a good entry covers: the next screening
	// (here the one a changed safety block starts) takes the entry out.
	ip("addr", "add", "198.18.71.5/32", "dev", e.TB.ServerIf)
	e.WriteConfig("", cfg(0))
	e.MustCLI("reload")
	agenttest.WaitFor(t, 10*time.Second, "the entry over the new host address removed", func() bool {
		_, ok := agenttest.FindEntry(e.List("block"), "198.18.71.5/32")
		return !ok
	})
	if got := e.WaitMetric(5*time.Second, 7, "bulwark_feed_entries_refused", "feed", "poisoned", "reason", "protected"); got != 7 {
		t.Errorf("refused entries (protected) after the new address: %v, want 7", got)
	}
	if _, ok := agenttest.FindEntry(e.List("block"), "198.18.70.0/24"); !ok {
		t.Errorf("a good entry that covers no host address was removed with the one that does")
	}
}
