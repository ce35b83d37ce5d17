// Command skipcheck reads `go test -json` on its standard input and prints
// what plain `go test` would (each package's ok/FAIL line, the output of
// failed tests), plus every skipped test with its reason; it exits non-zero
// when a test or package failed or when a test skipped that allowedSkips
// does not list. It closes with the line "tests: N passed, N failed, N
// skipped". `make test` pipes go test through it, so a skip fails CI:
//
//	go test -json ./... 2>&1 | go run ./test/skipcheck
//
// A privileged test that skips because the run is not as root ("SKIP:
// needs root", see test/testutil.RequireRoot) is allowed only when
// skipcheck itself does not run as root; as root (CI) it fails too.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// allowedSkips are the tests that skip by design in `make test`, by package
// and name, each with why. Any other skip fails the run.
var allowedSkips = map[string]string{
	"github.com/bulwark-filter/bulwark/test/bench.TestAgentRSS1M":              "the 1M-source agent RSS measurement (15 s, 250 MB) runs only in `make bench`, which sets BULWARK_AGENT_RSS_OUT",
	"github.com/bulwark-filter/bulwark/test/bench.TestFleetBench":              "the fleet fan-out simulation (200 clients, 1,000 verdicts/s for 30 s) and the cold sync of 1M verdicts run only in `make bench`, which sets BULWARK_FLEET_OUT; TestFleetFanoutShort runs a small fan-out in `make test`",
	"github.com/bulwark-filter/bulwark/test/fleet.TestFleetColdSyncAgentBench": "a real agent's cold sync of 1M fleet verdicts runs only in `make bench`, which sets BULWARK_FLEET_COLD_AGENT_OUT; TestFleetColdSync runs a real agent's cold sync of 20,000 in `make test`",
	"github.com/bulwark-filter/bulwark/test/fleet.TestFleetPropagationBench":   "the fleet propagation to 10 real agents at 1,000 verdicts/s for 30 s runs only in `make bench`, which sets BULWARK_FLEET_AGENTS_OUT; TestFleetPropagation runs 3 agents at 100/s for 3 s in `make test`",
	"github.com/bulwark-filter/bulwark/test/bench.TestListLoad1M":              "the agent's load and reload of a 1M-line list file beside nft -f (a few minutes, 1 GB) runs only in `make bench`, which sets BULWARK_LISTLOAD_OUT",
	"github.com/bulwark-filter/bulwark/test/bench.TestScrape1M":                "the scrape and block-add measurement with 1M entries and 1M sources (30 s, 300 MB) runs only in `make bench`, which sets BULWARK_SCRAPE_OUT",
	"github.com/bulwark-filter/bulwark/test/bench.TestCrowdSecBench":           "the side by side with crowdsec-firewall-bouncer (10k and 100k imported decisions, three runs each, and CPU per packet) runs only in `make bench`, which sets BULWARK_CROWDSEC_OUT; TestCrowdSecSideBySide1k runs 1,000 decisions in `make test`",
}

// notRootSkip starts the message of a test skipped for want of root.
const notRootSkip = "SKIP: needs root"

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

// result is what check found.
type result struct {
	passed, failed, skipped int
	badSkips                []string
}

func main() {
	res := check(os.Stdin, os.Stdout, os.Geteuid() == 0)
	if res.failed > 0 || len(res.badSkips) > 0 {
		os.Exit(1)
	}
}

// check copies the run on r to w as plain go test would show it, lists the
// skips, and counts. asRoot tells whether skips for want of root are bad.
func check(r io.Reader, w io.Writer, asRoot bool) result {
	var res result
	outputs := map[string][]string{} // by package and test: the test's output so far
	var skips []string
	failedTests := map[string]bool{} // packages with a failed test
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		var e event
		if !strings.HasPrefix(line, "{") || json.Unmarshal([]byte(line), &e) != nil {
			fmt.Fprintln(w, line) // not go test's JSON: a build error, go run's own output
			continue
		}
		key := e.Package + "." + e.Test
		switch {
		case e.Action == "build-output":
			fmt.Fprint(w, e.Output)
		case e.Test == "" && e.Action == "output":
			if e.Output != "PASS\n" {
				fmt.Fprint(w, e.Output)
			}
		case e.Test == "" && e.Action == "fail":
			if !failedTests[e.Package] {
				res.failed++ // the package failed outside any test: build, TestMain, timeout
			}
			flushUnfinished(w, outputs, e.Package+".")
		case e.Test == "":
		case e.Action == "output":
			outputs[key] = append(outputs[key], e.Output)
		case e.Action == "pass":
			res.passed++
			delete(outputs, key)
		case e.Action == "fail":
			res.failed++
			failedTests[e.Package] = true
			fmt.Fprint(w, plain(outputs[key]))
			delete(outputs, key)
		case e.Action == "skip":
			res.skipped++
			out := strings.Join(outputs[key], "")
			why, ok := allowedSkips[key]
			if !ok && !asRoot && strings.Contains(out, notRootSkip) {
				why, ok = "not run as root", true
			}
			if ok {
				skips = append(skips, fmt.Sprintf("skipped (allowed: %s): %s %s", why, e.Package, e.Test))
				delete(outputs, key)
				continue
			}
			fmt.Fprint(w, plain(outputs[key]))
			msg := fmt.Sprintf("%s %s: %s", e.Package, e.Test, skipReason(out))
			res.badSkips = append(res.badSkips, msg)
			skips = append(skips, "SKIPPED, NOT ALLOWED: "+msg)
			delete(outputs, key)
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(w, "skipcheck: reading go test's output: %v\n", err)
		res.failed++
	}
	flushUnfinished(w, outputs, "")
	sort.Strings(skips)
	for _, s := range skips {
		fmt.Fprintln(w, s)
	}
	if len(res.badSkips) > 0 {
		fmt.Fprintf(w, "FAIL: %d test(s) skipped that test/skipcheck's allow-list does not name: a skip fails the run\n", len(res.badSkips))
	}
	fmt.Fprintf(w, "tests: %d passed, %d failed, %d skipped\n", res.passed, res.failed, res.skipped)
	return res
}

// flushUnfinished shows the output of the tests under prefix (package and
// dot; "" for all) that never finished: a timeout or a crash ends the
// package while they run, and their log lines explain the failure.
func flushUnfinished(w io.Writer, outputs map[string][]string, prefix string) {
	var keys []string
	for k := range outputs {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if out := plain(outputs[k]); out != "" {
			fmt.Fprintf(w, "--- UNFINISHED: %s\n%s", k, out)
		}
		delete(outputs, k)
	}
}

// skipReason is the message of a skipped test's output: its lines after
// the "--- SKIP" line, joined.
func skipReason(out string) string {
	var msg []string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "=== ") || strings.HasPrefix(l, "--- SKIP") {
			continue
		}
		msg = append(msg, l)
	}
	if len(msg) == 0 {
		return "(no reason given)"
	}
	return strings.Join(msg, "; ")
}

// plain is a test's output as go test without -v shows it: without the
// === RUN, PAUSE, CONT and NAME lines that -json adds.
func plain(lines []string) string {
	var b strings.Builder
	for _, l := range lines {
		if !strings.HasPrefix(l, "=== ") {
			b.WriteString(l)
		}
	}
	return b.String()
}
