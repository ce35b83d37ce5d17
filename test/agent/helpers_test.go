// Package agent_test runs the real bulwark binary as an operator would: the
// agent in a throw-away server namespace (nsenter, so the host's bpffs holds
// the pins), the CLI over the control socket, signals to the process, and
// the metrics endpoint, with crafted frames from the client namespace. The
// harness is test/agenttest.
package agent_test

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/bulwark-filter/bulwark/test/agenttest"
)

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

// auditRecord is one line of the audit log.
type auditRecord struct {
	Who    string   `json:"who"`
	What   string   `json:"what"`
	Target []string `json:"target"`
	Why    string   `json:"why"`
	TTL    string   `json:"ttl"`
	Result string   `json:"result"`
	Detail string   `json:"detail"`
}

func (e *env) auditLog() []auditRecord {
	e.T.Helper()
	return agenttest.AuditLog[auditRecord](e.Env)
}

// pins lists the pin directory of the server veth.
func (e *env) pins() []string {
	es, err := os.ReadDir(filepath.Join(e.PinRoot, e.TB.ServerIf))
	if err != nil {
		return nil
	}
	var names []string
	for _, x := range es {
		names = append(names, x.Name())
	}
	return names
}

func itoa(i int) string { return strconv.Itoa(i) }
