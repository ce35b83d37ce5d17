package main

import (
	"encoding/json"
	"strings"
	"testing"
)

const pkg = "github.com/bulwark-filter/bulwark/test/x"

// run is a go test -json stream of package p: each ev is action, test,
// output.
func run(p string, evs ...[3]string) string {
	var b strings.Builder
	for _, e := range evs {
		line, _ := json.Marshal(event{Action: e[0], Package: p, Test: e[1], Output: e[2]})
		b.Write(line)
		b.WriteByte('\n')
	}
	return b.String()
}

func skipped(test, msg string) [][3]string {
	return [][3]string{
		{"run", test, ""},
		{"output", test, "=== RUN   " + test + "\n"},
		{"output", test, "    x_test.go:9: " + msg + "\n"},
		{"output", test, "--- SKIP: " + test + " (0.00s)\n"},
		{"skip", test, ""},
	}
}

func passed(test string) [][3]string {
	return [][3]string{{"run", test, ""}, {"output", test, "=== RUN   " + test + "\n"}, {"output", test, "--- PASS: " + test + " (0.00s)\n"}, {"pass", test, ""}}
}

func stream(parts ...[][3]string) string {
	var evs [][3]string
	for _, p := range parts {
		evs = append(evs, p...)
	}
	evs = append(evs, [3]string{"output", "", "ok  \t" + pkg + "\t0.01s\n"}, [3]string{"pass", "", ""})
	return run(pkg, evs...)
}

func TestCheck(t *testing.T) {
	allowedSkips[pkg+".TestAllowed"] = "by design"
	defer delete(allowedSkips, pkg+".TestAllowed")
	for _, tc := range []struct {
		name    string
		in      string
		asRoot  bool
		wantBad int
		wantOut []string
		last    string
	}{
		{"all pass", stream(passed("TestA"), passed("TestB")), true, 0,
			[]string{"ok  \t" + pkg}, "tests: 2 passed, 0 failed, 0 skipped"},
		{"a skip fails", stream(passed("TestA"), skipped("TestB", "too slow")), true, 1,
			[]string{"SKIPPED, NOT ALLOWED: " + pkg + " TestB: x_test.go:9: too slow", "--- SKIP: TestB"}, "tests: 1 passed, 0 failed, 1 skipped"},
		{"allowed skip", stream(skipped("TestAllowed", "bench only")), true, 0,
			[]string{"skipped (allowed: by design): " + pkg + " TestAllowed"}, "tests: 0 passed, 0 failed, 1 skipped"},
		{"not root, not as root", stream(skipped("TestP", "SKIP: needs root (BPF)")), false, 0,
			[]string{"skipped (allowed: not run as root)"}, "tests: 0 passed, 0 failed, 1 skipped"},
		{"not root, as root", stream(skipped("TestP", "SKIP: needs root (BPF)")), true, 1,
			[]string{"SKIPPED, NOT ALLOWED"}, "tests: 0 passed, 0 failed, 1 skipped"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			res := check(strings.NewReader(tc.in), &out, tc.asRoot)
			if len(res.badSkips) != tc.wantBad || res.failed != 0 {
				t.Errorf("bad skips %v, failed %d; want %d bad skips, 0 failed", res.badSkips, res.failed, tc.wantBad)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if got := lines[len(lines)-1]; got != tc.last {
				t.Errorf("last line %q, want %q", got, tc.last)
			}
			if strings.Contains(out.String(), "=== RUN") {
				t.Errorf("output shows === RUN lines:\n%s", out.String())
			}
		})
	}
}

// TestCheckFailures: a failed test is shown and counted; a package that
// fails outside any test (build error, TestMain, timeout) counts once;
// lines that are not JSON pass through.
func TestCheckFailures(t *testing.T) {
	in := "# " + pkg + "\nx.go:1: syntax error\n" + run(pkg,
		[3]string{"run", "TestF", ""},
		[3]string{"output", "TestF", "=== RUN   TestF\n"},
		[3]string{"output", "TestF", "    x_test.go:5: only 961 frames\n"},
		[3]string{"output", "TestF", "--- FAIL: TestF (1.00s)\n"},
		[3]string{"fail", "TestF", ""},
		[3]string{"output", "", "FAIL\t" + pkg + "\t1.2s\n"},
		[3]string{"fail", "", ""},
	) + run(pkg+"/y", [3]string{"output", "", "FAIL\t" + pkg + "/y [build failed]\n"}, [3]string{"fail", "", ""})
	var out strings.Builder
	res := check(strings.NewReader(in), &out, true)
	if res.failed != 2 || res.passed != 0 {
		t.Errorf("failed %d, passed %d; want 2 failed (TestF, the build), 0 passed", res.failed, res.passed)
	}
	for _, w := range []string{"x.go:1: syntax error", "only 961 frames", "--- FAIL: TestF", "FAIL\t" + pkg + "\t1.2s", "tests: 0 passed, 2 failed, 0 skipped"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}
}

// TestCheckTimeout: a package that times out while a test runs shows that
// test's log lines, which go test -json attributes to the test and never
// closes with a fail event for it.
func TestCheckTimeout(t *testing.T) {
	in := run(pkg,
		[3]string{"run", "TestSlow", ""},
		[3]string{"output", "TestSlow", "=== RUN   TestSlow\n"},
		[3]string{"output", "TestSlow", "    slow_test.go:7: applied 4100 of 5000\n"},
		[3]string{"output", "TestSlow", "panic: test timed out after 2m0s\n"},
		[3]string{"output", "", "FAIL\t" + pkg + "\t120.0s\n"},
		[3]string{"fail", "", ""},
	)
	var out strings.Builder
	res := check(strings.NewReader(in), &out, true)
	if res.failed != 1 {
		t.Errorf("failed %d, want 1 (the package)", res.failed)
	}
	for _, w := range []string{"--- UNFINISHED: " + pkg + ".TestSlow", "applied 4100 of 5000", "panic: test timed out"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}
}
