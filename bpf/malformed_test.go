package bpf_test

import (
	"os"
	"strings"
	"testing"

	"github.com/bulwark-filter/bulwark/bpf/model"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/parsecases"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// TestMalformedRules runs the hand-built frame of every row of docs/datapath.md's
// "Malformed rules" table through the real program and the model, with no
// policy: each must come out as the table says (malformed, passed or
// non_ip) on both sides, and a frame that parses must be charged to its own
// source (each case has one), which shows the program read the address.
func TestMalformedRules(t *testing.T) {
	cases := parsecases.Cases(t)
	d := testutil.Load(t, testutil.Setup{ReplayClock: true})
	m, err := model.New(maps.Policy{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	perRule := map[string][3]int{}
	for _, c := range cases {
		want := map[parsecases.Outcome]maps.Reason{parsecases.Passed: maps.ReasonPassed,
			parsecases.Malformed: maps.ReasonMalformed, parsecases.NonIP: maps.ReasonNonIP}[c.Want]
		ret, act, why, _ := runAt(t, d, c.Frame, t0)
		if why != want || ret != xdpFor(act) {
			t.Errorf("%s: %s: kernel XDP %d %s/%s; want %s", c.Rule, c.Name, ret, act, why, want)
		}
		md := m.Decide(c.Frame, t0)
		if md.Reason != want || md.Action != act {
			t.Errorf("%s: %s: model %s/%s, kernel %s/%s; want %s", c.Rule, c.Name, md.Action, md.Reason, act, why, want)
		}
		p, _ := model.Parse(c.Frame)
		if c.Src.IsValid() {
			if p.Src != c.Src {
				t.Errorf("%s: %s: model reads source %v; want %v", c.Rule, c.Name, p.Src, c.Src)
			}
			src, ok, err := d.Maps.LookupSource(c.Src)
			if err != nil {
				t.Fatal(err)
			}
			// A passed packet is observed; a malformed one whose IP header
			// parsed counts as malformed for its source.
			var got uint64
			if ok {
				got = src.Packets + src.Malformed
			}
			if got != 1 {
				t.Errorf("%s: %s: kernel source %s has %d packets; want 1", c.Rule, c.Name, c.Src, got)
			}
		} else if p.Family != 0 && c.Want != parsecases.Malformed {
			t.Errorf("%s: %s: a parsed frame without a source in the table", c.Rule, c.Name)
		}
		n := perRule[c.Rule]
		n[c.Want]++
		perRule[c.Rule] = n
	}
	// Every rule is tested, and where it draws a line, on both sides.
	for _, r := range parsecases.Rules {
		n := perRule[r]
		if n[parsecases.Passed]+n[parsecases.NonIP] == 0 && r != parsecases.RuleIPv4Len && r != parsecases.RuleIPv6 {
			t.Errorf("rule %q: no frame that passes", r)
		}
		if n[parsecases.Passed]+n[parsecases.Malformed]+n[parsecases.NonIP] == 0 {
			t.Errorf("rule %q: no frame", r)
		}
		delete(perRule, r)
	}
	for r := range perRule {
		t.Errorf("rule %q of a case is not in parsecases.Rules", r)
	}
	checkReadmeTable(t)
}

// checkReadmeTable requires the "Malformed rules" table of docs/datapath.md
// to have a row for each rule of the cases, and no row without cases.
func checkReadmeTable(t *testing.T) {
	t.Helper()
	raw, err := os.ReadFile("../docs/datapath.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	start := strings.Index(text, "## Malformed rules")
	if start < 0 {
		t.Fatal(`docs/datapath.md has no "## Malformed rules" section`)
	}
	rows := map[string]bool{}
	for _, line := range strings.Split(text[start:], "\n")[1:] {
		if strings.HasPrefix(line, "#") {
			break
		}
		if !strings.HasPrefix(line, "| ") || strings.HasPrefix(line, "| Rule ") || strings.HasPrefix(line, "| ---") {
			continue
		}
		rows[strings.TrimSpace(strings.Split(line, "|")[1])] = true
	}
	for _, r := range parsecases.Rules {
		if !rows[r] {
			t.Errorf("docs/datapath.md's malformed table has no row %q", r)
		}
		delete(rows, r)
	}
	for r := range rows {
		t.Errorf("docs/datapath.md's malformed table has a row %q that no case tests", r)
	}
}
