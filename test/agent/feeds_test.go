package agent_test

import (
	"fmt"
	"path/filepath"
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
	if got := e.WaitMetric(5*time.Second, 1, "bulwark_feed_entries_skipped_total", "feed", "testfeed"); got != 1 {
		t.Errorf("skipped entries metric %v, want 1", got)
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
