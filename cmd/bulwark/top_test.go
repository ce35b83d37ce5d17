package main

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/alecthomas/kong"

	"github.com/bulwark-filter/bulwark/agent/api"
)

func fakeSnapshot() *topSnapshot {
	return &topSnapshot{
		at: time.Date(2026, 11, 25, 10, 11, 12, 0, time.UTC),
		st: &api.Status{
			Version: "1.2.3", Mode: "enforce", UptimeSeconds: 3725.4,
			Interfaces: []api.InterfaceStatus{{Name: "eth0", Attach: "native", TrackedSources: 3}},
			Packets: map[string]map[string]uint64{
				"pass": {"passed": 1000},
				"drop": {"ratelimit": 700, "verdict": 5},
			},
		},
		rep: api.SourcesReply{Interval: 1, Measured: true, Sources: []api.Source{
			{Source: "198.18.0.10", PPS: 25000, DeliveredPPS: 1000, RatelimitPPS: 24000, SYNShare: 0.5, Ports: 3, Score: 12.5},
			{Source: "198.18.0.11", PPS: 12, DeliveredPPS: 12, Score: 80, Verdict: "throttle", TTLSeconds: 125},
			{Source: "2001:2:0:abcd::/64", PPS: 3.25, DeliveredPPS: 0, Score: 95, Verdict: "block", TTLSeconds: 7300},
		}},
	}
}

func TestFmtTTL(t *testing.T) {
	for _, c := range []struct {
		in   float64
		want string
	}{
		{0, "expired"}, {-3, "expired"}, {0.4, "0.4s"}, {1, "1s"}, {59.4, "59s"}, {60, "1m00s"},
		{125, "2m05s"}, {3599, "59m59s"}, {3600, "1h00m"}, {7300, "2h01m"}, {86400 + 4*3600, "1d04h"},
	} {
		if got := fmtTTL(c.in); got != c.want {
			t.Errorf("fmtTTL(%v) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestFmtRate(t *testing.T) {
	for _, c := range []struct {
		in   float64
		want string
	}{
		{0, "0"}, {3.25, "3.2"}, {12, "12"}, {999, "999"}, {25000, "25.0k"}, {1250000, "1.25M"},
	} {
		if got := fmtRate(c.in); got != c.want {
			t.Errorf("fmtRate(%v) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestRenderWide(t *testing.T) {
	lines := renderTop(fakeSnapshot(), "pps", 0, false)
	text := strings.Join(lines, "\n")
	for _, want := range []string{
		"bulwark 1.2.3, mode enforce, up 1h2m5s, eth0 (native)", "10:11:12", "sort pps",
		"drop 705 (ratelimit 700, verdict 5)", "pass 1000 (passed 1000)",
		"SOURCE", "IN pps" + sortMark, "DELIVERED pps", "RATELIMIT pps", "SYN%", "PORTS/s", "SCORE", "VERDICT", "TTL",
		"25.0k", "24.0k", "50%", "throttle", "2m05s", "block", "2h01m", "2001:2:0:abcd::/64",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %q in\n%s", want, text)
		}
	}
	// drop comes before pass in the totals.
	if strings.Index(text, "drop 705") > strings.Index(text, "pass 1000") {
		t.Errorf("drop totals should come first:\n%s", text)
	}
	// A source without a verdict shows dashes for verdict and TTL.
	for _, l := range lines {
		if f := strings.Fields(l); strings.HasPrefix(l, "198.18.0.10 ") && (f[len(f)-1] != "-" || f[len(f)-2] != "-") {
			t.Errorf("no-verdict row %q: want dashes", l)
		}
	}
}

func TestSortMark(t *testing.T) {
	for by, title := range map[string]string{"pps": "IN pps", "dropped": "RATELIMIT pps", "score": "SCORE"} {
		lines := renderTable(fakeSnapshot().rep.Sources, by, 0)
		if got := strings.Count(lines[0], sortMark); got != 1 {
			t.Errorf("sort %s: %d marks in %q", by, got, lines[0])
		}
		if !strings.Contains(lines[0], title+sortMark) {
			t.Errorf("sort %s: header %q lacks %q", by, lines[0], title+sortMark)
		}
	}
}

func TestSortSources(t *testing.T) {
	src := fakeSnapshot().rep.Sources
	first := func(by string) string {
		s := append([]api.Source(nil), src...)
		sortSources(s, by)
		return s[0].Source
	}
	if got := first("pps"); got != "198.18.0.10" {
		t.Errorf("pps: first %s", got)
	}
	if got := first("score"); got != "2001:2:0:abcd::/64" {
		t.Errorf("score: first %s", got)
	}
	if got := first("dropped"); got != "198.18.0.10" {
		t.Errorf("dropped: first %s", got)
	}
}

func TestRenderFitsWidth(t *testing.T) {
	for _, width := range []int{120, 80, 60, 40, 30, 12} {
		for _, by := range []string{"pps", "dropped", "score"} {
			lines := renderTop(fakeSnapshot(), by, width, true)
			for _, l := range lines {
				if n := utf8.RuneCountInString(l); n > width {
					t.Errorf("width %d sort %s: line of %d: %q", width, by, n, l)
				}
			}
			table := lines[len(lines)-4]
			// The sort column always stays, SOURCE too.
			if !strings.HasPrefix(table, "SOURCE") && !strings.HasPrefix(table, "SOURC") {
				t.Errorf("width %d: table header %q", width, table)
			}
			if width >= 40 && !strings.Contains(table, sortMark) {
				t.Errorf("width %d sort %s: sort column dropped: %q", width, by, table)
			}
		}
	}
	// At 60 columns the least useful columns go first, in order.
	h := renderTable(fakeSnapshot().rep.Sources, "pps", 60)[0]
	if strings.Contains(h, "PORTS/s") || !strings.Contains(h, "IN pps") || !strings.Contains(h, "SCORE") {
		t.Errorf("width 60 header %q", h)
	}
	// Wide enough: every column.
	h = renderTable(fakeSnapshot().rep.Sources, "pps", 200)[0]
	if c := len(strings.Fields(strings.NewReplacer(" pps", "_pps").Replace(h))); c != len(topColumns) {
		t.Errorf("width 200: %d columns in %q", c, h)
	}
}

func TestRenderMeasuring(t *testing.T) {
	s := fakeSnapshot()
	s.rep = api.SourcesReply{Interval: 1, Measured: false, Sources: []api.Source{}}
	text := strings.Join(renderTop(s, "pps", 80, true), "\n")
	if !strings.Contains(text, "measuring...") || strings.Contains(text, "SOURCE") {
		t.Errorf("unmeasured snapshot:\n%s", text)
	}
	if !strings.Contains(text, "keys: p sort by pps") {
		t.Errorf("live view lacks the key help:\n%s", text)
	}
	s.rep.Measured = true
	text = strings.Join(renderTop(s, "pps", 80, false), "\n")
	if !strings.Contains(text, "no traffic in the last cycle") {
		t.Errorf("empty measured snapshot:\n%s", text)
	}
	// No status (nil): still a header.
	s.st = nil
	if l := renderTop(s, "pps", 0, false); !strings.HasPrefix(l[0], "bulwark top") {
		t.Errorf("header without status: %q", l[0])
	}
}

func TestLimitOr(t *testing.T) {
	c := &topCmd{}
	if got := c.limitOr(0); got != topDefaultRows {
		t.Errorf("no terminal: %d", got)
	}
	if got := c.limitOr(40); got != 40-topChromeRows {
		t.Errorf("40 rows: %d", got)
	}
	if got := c.limitOr(3); got != 1 {
		t.Errorf("3 rows: %d", got)
	}
	c.Limit = 7
	if got := c.limitOr(40); got != 7 {
		t.Errorf("--limit 7: %d", got)
	}
}

// parseTop parses a bulwark command line with the real grammar.
func parseTop(t *testing.T, args ...string) (*cli, error) {
	t.Helper()
	var c cli
	p, err := newParser(&c, kong.Exit(func(int) { t.Fatal("kong exit") }))
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Parse(args)
	return &c, err
}

func TestTopFlags(t *testing.T) {
	c, err := parseTop(t, "top")
	if err != nil {
		t.Fatal(err)
	}
	if c.Top.Sort != "pps" || c.Top.Interval != time.Second || c.Top.Limit != 0 || c.Top.Once || c.Top.JSON {
		t.Errorf("defaults: %+v", c.Top)
	}
	if _, err := parseTop(t, "top", "--sort", "bogus"); err == nil {
		t.Error("--sort bogus accepted")
	}
	for _, bad := range [][]string{
		{"top", "--json"},
		{"top", "--limit", "0", "--json"},
		{"top", "--limit", "1001"},
		{"top", "--limit", "-1"},
		{"top", "--interval", "100ms"},
	} {
		c, err := parseTop(t, bad...)
		if err != nil {
			continue // refused by the parser: fine
		}
		if err := c.Top.validate(); err == nil {
			t.Errorf("%v: accepted", bad)
		}
	}
	// --json without --once fails before any request, with a clear message.
	c, _ = parseTop(t, "--socket", "/nonexistent/bulwark.sock", "top", "--json")
	err = c.Top.Run(c)
	if err == nil || !strings.Contains(err.Error(), "--json needs --once") {
		t.Errorf("--json without --once: %v", err)
	}
	for _, good := range [][]string{
		{"top", "--once", "--json", "--sort", "score", "--limit", "5"},
		{"top", "--interval", "200ms", "--sort", "dropped", "--limit", "1000"},
	} {
		c, err := parseTop(t, good...)
		if err != nil {
			t.Fatalf("%v: %v", good, err)
		}
		if err := c.Top.validate(); err != nil {
			t.Errorf("%v: %v", good, err)
		}
	}
	// A missing socket is an error, not a hang.
	c, _ = parseTop(t, "--socket", "/nonexistent/bulwark.sock", "top", "--once")
	done := make(chan error, 1)
	go func() { done <- c.Top.Run(c) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "is the agent running") {
			t.Errorf("missing socket: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("missing socket: hung")
	}
}
