// Package apifuzz_test fuzzes the control API of the real agent: arbitrary
// methods, paths, queries and bodies over its socket.
//
// The agent runs inside `unshare --net --mount`: its veth, its private
// bpffs (the pins) and its network live in namespaces that vanish with the
// process, and the process gets SIGKILL when the test process dies. So a
// fuzz worker stopped at any moment leaves nothing behind.
package apifuzz_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/test/agenttest"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

func TestMain(m *testing.M) {
	os.Exit(agenttest.Main(m, "bulwark-apifuzz-"))
}

const agentConfig = `
mode      = "enforce"
malformed = "drop"
pin_dir   = %q

interface "bfz0" {
  attach = "native"
}

allow {
  cidrs = ["198.18.20.0/30"]
}

block {
  cidrs = ["198.18.66.0/24", "2001:2:0:66::/64"]
}

limits {
  default {
    pps   = 100
    burst = 100
  }
}

reputation {
  mode         = "enforce"
  interval     = "1s"
  max_verdicts = 1000
}

log {
  level      = "warn"
  audit_file = %q
}

control {
  socket = %q
}

# No flight recorder: /v1/capture checks its parameters, then says 409.
events {
  dir = ""
}

maps {
  sources        = 4096
  rule_buckets   = 4096
  verdicts       = 1024
  allow_hosts    = 256
  allow_prefixes = 256
  block_hosts    = 256
  block_prefixes = 256
  classes        = 64
}
`

// startAgent runs the agent in its own network and mount namespaces and
// returns a client of its control socket.
func startAgent(f *testing.F) (*http.Client, func() bool, func() string) {
	dir, err := os.MkdirTemp("", "bwkfz-")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { os.RemoveAll(dir) })
	pins, sock, logPath := filepath.Join(dir, "pins"), filepath.Join(dir, "s.sock"), filepath.Join(dir, "agent.log")
	if err := os.Mkdir(pins, 0o700); err != nil {
		f.Fatal(err)
	}
	cfg := filepath.Join(dir, "bulwark.hcl")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(agentConfig, pins, filepath.Join(dir, "audit.jsonl"), sock)), 0o600); err != nil {
		f.Fatal(err)
	}
	logf, err := os.Create(logPath)
	if err != nil {
		f.Fatal(err)
	}
	const script = `mount -t bpf bpf "$1" && ip link add bfz0 type veth peer name bfz1 && ip link set bfz0 up && ip link set bfz1 up && exec "$2" run --config "$3"`
	cmd := exec.Command("unshare", "--net", "--mount", "--propagation", "private", "sh", "-c", script, "sh", pins, agenttest.Bin, cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Fatalf("start the agent: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	f.Cleanup(func() { cmd.Process.Kill(); <-done })
	exited := func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}
	logText := func() string { b, _ := os.ReadFile(logPath); return string(b) }

	client := agenttest.SocketClient(sock, 10*time.Second)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if exited() {
			f.Fatalf("the agent exited at start:\n%s", logText())
		}
		if resp, err := client.Get("http://bulwark/v1/status"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			f.Fatalf("the agent did not answer in 30 s:\n%s", logText())
		}
	}
	return client, exited, logText
}

// validTarget reports whether uri can be an HTTP/1.1 request target:
// printable ASCII without spaces.
func validTarget(uri string) bool {
	for i := 0; i < len(uri); i++ {
		if uri[i] <= ' ' || uri[i] >= 0x7f {
			return false
		}
	}
	return true
}

var methods = []string{http.MethodGet, http.MethodPost, http.MethodDelete, http.MethodPut, http.MethodPatch,
	http.MethodHead, http.MethodOptions}

// FuzzControlAPI: every request gets a whole HTTP answer, never a server
// error other than 507 (a full map, which these inputs may cause), and the
// agent stays up.
func FuzzControlAPI(f *testing.F) {
	testutil.RequireRoot(f)
	client, exited, logText := startAgent(f)
	seeds := []struct {
		method     uint8
		path, body string
	}{
		{0, "/v1/status", ""},
		{0, "/v1/lists/block", ""},
		{0, "/v1/lists/allow?cidr=198.18.20.1", ""},
		{1, "/v1/lists/block", `{"cidrs":["198.18.5.5/32"],"ttl":"1h","reason":"fuzz"}`},
		{1, "/v1/lists/allow", `{"cidrs":["2001:2::7"]}`},
		{1, "/v1/lists/block", `{"cidrs":["198.18.66.0/24"]}`},
		{1, "/v1/lists/block", `{"cidrs":["not an address"],"ttl":"-5s"}`},
		{1, "/v1/lists/nolist", `{}`},
		{1, "/v1/lists/block/import", `{"cidrs":["198.18.5.6","2001:2::/64"],"ttl":"1h","dry_run":true}`},
		{1, "/v1/lists/block/import", `{"cidrs":["198.18.5.7","198.18.5.7"],"reason":"fuzz"}`},
		{2, "/v1/lists/block", `{"cidrs":["198.18.5.5/32"]}`},
		{2, "/v1/lists/block", `{"cidrs":["198.18.66.0/24"]}`},
		{1, "/v1/reload", ""},
		{0, "/v1/explain/198.18.5.5", ""},
		{0, "/v1/explain/2001:2::1", ""},
		{0, "/v1/explain/x", ""},
		{0, "/v1/verdicts", ""},
		{2, "/v1/verdicts", `{"source":"198.18.5.5"}`},
		{2, "/v1/verdicts", `{"all":true}`},
		{0, "/v1/capture?reason=ratelimit&count=1&timeout=1s", ""},
		{0, "/v1/sources?sort=score&n=5", ""},
		{3, "/v1/status", "{"},
		{0, "/v2/none", ""},
		{1, "/v1/lists/block", strings.Repeat(`{"cidrs":[`, 1000)},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, m uint8, path string, body []byte) {
		method := methods[int(m)%len(methods)]
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req, err := http.NewRequest(method, "http://bulwark"+path, bytes.NewReader(body))
		if err != nil || !validTarget(req.URL.RequestURI()) {
			// Not a request a client can send: net/http would write a
			// space or a control byte of the query into the request line
			// as it is, and the server rightly answers 400 and hangs up.
			return
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			if exited() {
				t.Fatalf("%s %q %q: the agent died:\n%s", method, path, body, logText())
			}
			t.Fatalf("%s %q %q: %v", method, path, body, err)
		}
		reply, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s %q %q: read the answer: %v", method, path, body, err)
		}
		if resp.StatusCode >= 500 && resp.StatusCode != http.StatusInsufficientStorage {
			t.Fatalf("%s %q %q: %d %s", method, path, body, resp.StatusCode, reply)
		}
		if exited() {
			t.Fatalf("%s %q %q: the agent exited:\n%s", method, path, body, logText())
		}
	})
}
