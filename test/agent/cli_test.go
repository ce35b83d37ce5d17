package agent_test

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/test/agenttest"
)

// exitCode is the exit code in err, an exec error (0 for nil, -1 when the
// command did not run or was killed).
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// TestCLIWithoutAgent runs the real binary where no agent listens: bad
// input is a usage error (exit 2) found before the socket is tried, good
// input gets "agent not reachable" (exit 3), and --help documents both
// and shows each list's own examples.
func TestCLIWithoutAgent(t *testing.T) {
	t.Parallel()
	sock := filepath.Join(t.TempDir(), "none.sock")
	const unreachable = "is the agent running"
	for _, c := range []struct {
		args []string
		code int
		want string // in stderr
	}{
		{[]string{"block", "add", "1.2.3.999"}, 2, `"1.2.3.999" is not an IP address`},
		{[]string{"allow", "add", "198.18.7.0/33"}, 2, "198.18.7.0/33"},
		{[]string{"block", "del", "198.18.7.1/24"}, 2, "host bits"},
		{[]string{"block", "add", "198.18.7.7", "--ttl", "7x"}, 2, `ttl "7x"`},
		{[]string{"block", "add", "198.18.7.7", "--ttl", "0s"}, 2, "ttl"},
		{[]string{"explain", "nowhere"}, 2, `"nowhere" is not an IP address`},
		{[]string{"verdicts", "del", "198.18.7.1/24"}, 2, "host bits"},
		{[]string{"capture", "--count", "0", "-w", filepath.Join(t.TempDir(), "x.pcap")}, 2, "--count"},
		{[]string{"capture", "--reason", "bogus", "-w", filepath.Join(t.TempDir(), "x.pcap")}, 2, "bogus"},
		{[]string{"top", "--once", "--sort", "bogus"}, 2, "--sort"},
		{[]string{"bogus"}, 2, "unexpected argument bogus"},
		{[]string{"block", "add"}, 2, "expected"},
		{[]string{"block", "add", "198.18.7.7", "--bogus"}, 2, "unknown flag"},
		// Valid input: the socket is tried, and nobody answers.
		{[]string{"block", "add", "198.18.7.7", "--ttl", "7d"}, 3, unreachable},
		{[]string{"allow", "add", "2001:2::/64", "--ttl", "1d12h"}, 3, unreachable},
		{[]string{"block", "list"}, 3, unreachable},
		{[]string{"status"}, 3, unreachable},
		{[]string{"reload"}, 3, unreachable},
		{[]string{"explain", "198.18.7.7"}, 3, unreachable},
	} {
		r := agenttest.RunBin(t, append([]string{"--socket", sock}, c.args...)...)
		if r.Code != c.code || !strings.Contains(r.Stderr, c.want) {
			t.Errorf("bulwark %s: %s; want exit %d mentioning %q", strings.Join(c.args, " "), r, c.code, c.want)
		}
		if c.code == 2 && strings.Contains(r.Stderr, unreachable) {
			t.Errorf("bulwark %s: a usage error blamed the agent: %s", strings.Join(c.args, " "), r)
		}
	}

	help := agenttest.RunBin(t, "--help")
	for _, want := range []string{"0 done", "1 failed", "2 usage error", "3 agent not reachable", "4 request refused"} {
		if help.Code != 0 || !strings.Contains(strings.Join(strings.Fields(help.Stdout), " "), want) {
			t.Errorf("bulwark --help: %s; want exit 0 and the exit status %q", help, want)
		}
	}
	for _, list := range []string{"block", "allow"} {
		other := map[string]string{"block": "allow", "allow": "block"}[list]
		for _, sub := range []string{"add", "del", "list"} {
			r := agenttest.RunBin(t, list, sub, "--help")
			if r.Code != 0 || !strings.Contains(r.Stdout, "bulwark "+list+" "+sub+" ") || strings.Contains(r.Stdout, "bulwark "+other) {
				t.Errorf("bulwark %s %s --help: %s; want exit 0 and only %s examples", list, sub, r, list)
			}
		}
	}
}

// TestCLIAgainstAgent checks the exit codes against a running agent, done
// (0) and refused by the agent (4), and that --ttl takes days as the config
// does (a rejected reload, exit 1: TestSystemdExecReload).
func TestCLIAgainstAgent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.WriteConfig("", agenttest.Config{PPS: 100, Burst: 100, Block: []string{"198.18.66.0/24"}})
	e.Start()

	if r := e.CLI("block", "add", "198.18.7.7", "--ttl", "7d"); r.Code != 0 {
		t.Fatalf("block add --ttl 7d: %s, want exit 0", r)
	}
	if r := e.CLI("allow", "add", "198.18.8.0/24", "--ttl", "1d12h"); r.Code != 0 {
		t.Fatalf("allow add --ttl 1d12h: %s, want exit 0", r)
	}
	for _, c := range []struct {
		list, cidr string
		ttl        time.Duration
	}{{"block", "198.18.7.7/32", 7 * 24 * time.Hour}, {"allow", "198.18.8.0/24", 36 * time.Hour}} {
		x, ok := agenttest.FindEntry(e.List(c.list), c.cidr)
		// The entry's time left is at most its TTL, and less only by the
		// time since it was added (well under an hour).
		if left := time.Duration(x.ExpiresIn * float64(time.Second)); !ok || left > c.ttl || left < c.ttl-time.Hour {
			t.Errorf("%s list: %s expires in %s (found %v), want just under %s", c.list, c.cidr, left, ok, c.ttl)
		}
	}

	if r := e.CLI("block", "del", "198.18.66.0/24"); r.Code != 4 || !strings.Contains(r.Stderr, "HTTP 409") {
		t.Errorf("block del of a config entry: %s; want exit 4 (refused), HTTP 409", r)
	}
}
