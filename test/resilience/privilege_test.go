package resilience_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/test/agenttest"
)

// TestLeastPrivilege: the control socket refuses non-root clients; oversized,
// malformed and slow requests are refused with a 4xx (or timed out) and
// change nothing; the socket, the pins and the audit log are private to
// root. (test/agent covers each bad input in detail; this is the
// resilience view: the agent stays whole and responsive.)
func TestLeastPrivilege(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.WriteConfig("", agenttest.Config{PPS: 100, Burst: 100, Block: []string{"198.18.66.6"}})
	a := e.Start()
	e.MustCLI("block", "add", "198.18.5.5", "--ttl", "1h")

	type state struct {
		Block, Allow []string
		MapErrs      float64
		Reloads      float64
	}
	snap := func() state {
		var s state
		for _, x := range e.List("block") {
			s.Block = append(s.Block, x.CIDR)
		}
		for _, x := range e.List("allow") {
			s.Allow = append(s.Allow, x.CIDR)
		}
		m := e.Metrics()
		s.MapErrs, s.Reloads = m.Get("bulwark_map_update_errors_total"), m.Get("bulwark_config_reloads_total")
		return s
	}
	before := snap()

	for path, want := range map[string]os.FileMode{e.Sock: 0o600, filepath.Join(e.PinRoot, e.TB.ServerIf): 0o700, e.Audit: 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&^want != 0 {
			t.Errorf("%s mode %v, want at most %v", path, fi.Mode().Perm(), want)
		}
	}

	// A non-root client, with the socket's directory opened up so the
	// refusal is the socket's own.
	if err := os.Chmod(e.Dir, 0o711); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		agenttest.Bin, "--socket", e.Sock, "block", "add", "198.18.7.7").CombinedOutput()
	os.Chmod(e.Dir, 0o700)
	if err == nil || !strings.Contains(string(out), "permission denied") {
		t.Errorf("block add as uid 65534: %v %q, want refused with permission denied", err, out)
	}

	bad := []struct {
		name, method, path, body string
		status                   int
	}{
		{"body over 1 MiB", "POST", "/v1/lists/block", `{"cidrs":["` + strings.Repeat("1", 1<<20+10) + `"]}`, 413},
		{"allow add with a 2 MiB body", "POST", "/v1/lists/allow", strings.Repeat(" ", 2<<20), 413},
		{"truncated JSON", "POST", "/v1/lists/block", `{"cidrs":["198.18.7.7"`, 400},
		{"binary", "POST", "/v1/lists/allow", "\x00\xff\xfe{", 400},
		{"null", "POST", "/v1/lists/block", `null`, 400},
		{"nested", "DELETE", "/v1/lists/block", `{"cidrs":[["198.18.5.5"]]}`, 400},
		{"10001 cidrs", "POST", "/v1/lists/block", `{"cidrs":[` + strings.TrimSuffix(strings.Repeat(`"198.18.7.7",`, 10001), ",") + `]}`, 400},
		{"explain garbage", "GET", "/v1/explain/not-an-ip", "", 400},
	}
	for _, c := range bad {
		st, body := e.rawCall(c.method, c.path, c.body)
		if st != c.status {
			t.Errorf("%s: HTTP %d %.200q, want %d", c.name, st, body, c.status)
		}
	}

	// Headers over the server's limit (1 MiB by default) and clients that
	// open connections and send nothing: refused or left waiting, and the
	// API still answers.
	conn, err := net.Dial("unix", e.Sock)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	go conn.Write([]byte("GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 2<<20) + "\r\n\r\n"))
	buf := make([]byte, 64)
	n, _ := conn.Read(buf)
	conn.Close()
	if !strings.Contains(string(buf[:n]), " 431 ") {
		t.Errorf("a 2 MiB header: reply %q, want HTTP 431", buf[:n])
	}
	var idle []net.Conn
	for i := 0; i < 50; i++ {
		c, err := net.Dial("unix", e.Sock)
		if err != nil {
			t.Fatalf("idle connection %d: %v", i, err)
		}
		c.Write([]byte("GET /v1/status HTTP/1.1\r\n")) // never finished
		idle = append(idle, c)
	}
	start := time.Now()
	r := e.CLI("status", "--json")
	took := time.Since(start)
	for _, c := range idle {
		c.Close()
	}
	if r.Code != 0 || took > 5*time.Second {
		t.Errorf("status with 50 stalled clients: %s in %s, want an answer within 5 s", r, took)
	}

	after := snap()
	if !reflect.DeepEqual(before, after) {
		t.Errorf("refused requests changed the agent's state:\nbefore %+v\nafter  %+v", before, after)
	}
	if got := e.Send(agenttest.Addr("198.18.66.6"), 20); got != 0 {
		t.Errorf("%d of 20 frames from the blocked source delivered", got)
	}
	summary(t, "uid 65534 refused (permission denied); %d bad requests 4xx; 2 MiB header 431; status in %s with 50 stalled clients; state unchanged", len(bad), took.Round(time.Millisecond))
	if a.Exited() {
		t.Fatalf("agent exited: %v", a.Err)
	}
}
