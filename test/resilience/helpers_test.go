// Package resilience_test is Bulwark's resilience suite: the datapath under
// a flood of distinct sources, the agent killed mid-flood, a reload storm,
// full maps and the control socket's privilege checks. It runs the real
// bulwark binary in throw-away namespaces with test/agenttest, the harness
// test/agent uses too.
//
// `go test ./test/resilience/` runs the quick subset (under a minute);
// `-args -full` the full sizes (scripts/resilience.sh, `make resilience`).
package resilience_test

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/test/agenttest"
)

// full selects the full sizes of every test (the resilience target); the
// default is the quick subset `make test` runs.
var full = flag.Bool("full", false, "run the full resilience sizes (minutes), not the quick subset")

// pick returns q in the quick subset and f with -full.
func pick(q, f int) int {
	if *full {
		return f
	}
	return q
}

func TestMain(m *testing.M) {
	os.Exit(agenttest.Main(m, "bulwark-agent-test-"))
}

// metricsAddr is the agent's metrics listener, inside the server namespace.
const metricsAddr = "127.0.0.1:9740"

// env is one testbed with one agent config and its files.
type env struct{ *agenttest.Env }

func newEnv(t *testing.T) *env {
	t.Helper()
	return &env{agenttest.NewEnv(t, agenttest.Options{MetricsAddr: metricsAddr, Receiver: true, Sender: true})}
}

// do is one request with c; it returns the status and body, or an error
// for a transport failure.
func do(c *http.Client, method, path, body string) (int, string, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://bulwark"+path, rd)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// rawCall does one HTTP request over the control socket.
func (e *env) rawCall(method, path, body string) (int, string) {
	e.T.Helper()
	c := e.api()
	defer c.CloseIdleConnections()
	st, b, err := do(c, method, path, body)
	if err != nil {
		e.T.Fatalf("%s %s: %v", method, path, err)
	}
	return st, b
}

// rssKiB is VmRSS of pid from /proc.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read status of %d: %v", pid, err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			n, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatalf("VmRSS %q: %v", l, err)
			}
			return n
		}
	}
	t.Fatalf("no VmRSS for %d", pid)
	return 0
}

// summary prints one line for scripts/resilience.sh's table.
func summary(t *testing.T, format string, args ...any) {
	t.Helper()
	t.Logf("SUMMARY %s | %s", t.Name(), fmt.Sprintf(format, args...))
}

// api is an HTTP client of the agent's control socket.
func (e *env) api() *http.Client { return agenttest.SocketClient(e.Sock, 30*time.Second) }
