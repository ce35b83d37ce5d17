package agent_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/test/agenttest"
)

// auditFile reads one audit file as "who what target" lines.
func auditFile(t *testing.T, path string) []string {
	t.Helper()
	var out []string
	for _, r := range agenttest.JSONLines[auditRecord](t, path) {
		out = append(out, strings.TrimSpace(r.Who+" "+r.What+" "+strings.Join(r.Target, ",")))
	}
	return out
}

// TestAuditLogRotation rotates a running agent's audit log with logrotate and the packaged snippet
// (configs/logrotate/bulwark, its path and command pointed at this test's agent), then by hand with SIGHUP: after
// each, new records go to the new file, and every record is in exactly one file.
func TestAuditLogRotation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.WriteConfig("", agenttest.Config{})
	a := e.Start()
	e.MustCLI("block", "add", "198.18.50.1")

	snippet, err := os.ReadFile(filepath.Join("..", "..", "configs", "logrotate", "bulwark"))
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.ReplaceAll(string(snippet), "/var/log/bulwark/audit.jsonl", e.Audit)
	conf = strings.ReplaceAll(conf, "bulwark reload", agenttest.Bin+" --socket "+e.Sock+" reload")
	if !strings.Contains(conf, e.Audit+" {") || !strings.Contains(conf, e.Sock+" reload") {
		t.Fatalf("the snippet's path or command was not found:\n%s", snippet)
	}
	confPath := filepath.Join(e.Dir, "logrotate.conf")
	agenttest.WriteFile(t, confPath, conf)
	out, err := exec.Command("logrotate", "--force", "--state", filepath.Join(e.Dir, "logrotate.state"), confPath).CombinedOutput()
	if err != nil {
		t.Fatalf("logrotate: %v\n%s", err, out)
	}
	if got := e.Metrics().Get("bulwark_config_reloads_total", "result", "ok"); got != 1 {
		t.Errorf("after logrotate: ok reloads %v, want 1 (its postrotate's)", got)
	}
	e.MustCLI("block", "add", "198.18.50.2")

	// By hand: rename, SIGHUP.
	if err := os.Rename(e.Audit, e.Audit+".hup"); err != nil {
		t.Fatal(err)
	}
	if err := a.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if got := e.WaitMetric(30*time.Second, 2, "bulwark_config_reloads_total", "result", "ok"); got != 2 {
		t.Fatalf("after SIGHUP: ok reloads %v, want 2", got)
	}
	e.MustCLI("block", "add", "198.18.50.3")

	for file, want := range map[string][]string{
		e.Audit + ".1":   {"config start", "cli block.add 198.18.50.1"},
		e.Audit + ".hup": {"cli reload", "cli block.add 198.18.50.2"},
		e.Audit:          {"signal reload", "cli block.add 198.18.50.3"},
	} {
		if got := auditFile(t, file); !slices.Equal(got, want) {
			t.Errorf("%s: %q, want %q", filepath.Base(file), got, want)
		}
	}
	if st, err := os.Stat(e.Audit); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("the new audit file: %v, want mode 0600", err)
	}
}
