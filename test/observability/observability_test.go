// Package observability_test checks the observability pack of
// configs/observability against the real Prometheus programs: the alert
// rules with promtool (their syntax, and a unit test of each alert firing
// and not firing), every dashboard expression's syntax, and, with a real
// agent in a network namespace scraped by a real prometheus in the same
// namespace, that every dashboard panel's expressions return data and the
// new metrics hold the figures the config and the traffic give.
package observability_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/bulwark-filter/bulwark/test/agenttest"
)

func TestMain(m *testing.M) {
	os.Exit(agenttest.Main(m, "bulwark-obs-test-"))
}

// packDir is the observability pack, from this package's directory.
const packDir = "../../configs/observability"

// metricsAddr is the agent's metrics listener, inside the server namespace.
const metricsAddr = "127.0.0.1:9740"

// promtool runs promtool with args in packDir and fails t if it fails.
func promtool(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "promtool", args...)
	cmd.Dir = packDir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v:\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// alertRules is the part of a rules file the tests read.
type alertRules struct {
	Groups []struct {
		Rules []struct {
			Alert string `json:"alert"`
			Expr  string `json:"expr"`
		} `json:"rules"`
	} `json:"groups"`
}

// ruleTests is the part of a promtool test file the tests read.
type ruleTests struct {
	Tests []struct {
		AlertRuleTest []struct {
			Alertname string            `json:"alertname"`
			ExpAlerts []json.RawMessage `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

func readYAML(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(packDir, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// wantAlerts are the alerts issue 13 asks for.
var wantAlerts = []string{"BulwarkAgentDown", "BulwarkFeedStale", "BulwarkReloadRejected",
	"BulwarkMapAlmostFull", "BulwarkGenericAttach", "BulwarkPrivilegesNotDropped"}

// TestAlertRules checks alerts.yml with promtool, runs its unit tests, and
// checks that the unit tests see each alert both firing and not firing.
func TestAlertRules(t *testing.T) {
	promtool(t, "check", "rules", "alerts.yml")
	promtool(t, "test", "rules", "alerts_test.yml")

	var rules alertRules
	readYAML(t, "alerts.yml", &rules)
	var tests ruleTests
	readYAML(t, "alerts_test.yml", &tests)
	have := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			have[r.Alert] = true
		}
	}
	firing, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				firing[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	for _, a := range wantAlerts {
		if !have[a] {
			t.Errorf("alerts.yml has no alert %s", a)
		}
		if !firing[a] || !quiet[a] {
			t.Errorf("alerts_test.yml tests %s firing: %v, not firing: %v; want both", a, firing[a], quiet[a])
		}
	}
	if len(have) != len(wantAlerts) {
		t.Errorf("alerts.yml has %d alerts, want the %d of wantAlerts (add a new one there and to alerts_test.yml)", len(have), len(wantAlerts))
	}
}

// dashboard is the part of the dashboard JSON the tests read.
type dashboard struct {
	UID    string `json:"uid"`
	Title  string `json:"title"`
	Panels []struct {
		Type    string `json:"type"`
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

// panelExpr is one expression of a panel.
type panelExpr struct{ panel, expr string }

// readDashboard decodes the dashboard strictly and returns its panels'
// expressions; every panel but a row must have one.
func readDashboard(t *testing.T) []panelExpr {
	t.Helper()
	f, err := os.Open(filepath.Join(packDir, "bulwark-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var d dashboard
	dec := json.NewDecoder(f)
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard uid %q, title %q: want both", d.UID, d.Title)
	}
	var out []panelExpr
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no targets", p.Title)
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q has a target without expr", p.Title)
			}
			out = append(out, panelExpr{p.Title, tg.Expr})
		}
	}
	if len(out) == 0 {
		t.Fatal("the dashboard has no expressions")
	}
	return out
}

// TestDashboardExprsParse checks every expression of the dashboard with
// promtool's parser (as recording rules, which `check rules` parses).
func TestDashboardExprsParse(t *testing.T) {
	exprs := readDashboard(t)
	type rule struct {
		Record string `json:"record"`
		Expr   string `json:"expr"`
	}
	var rs []rule
	for i, e := range exprs {
		rs = append(rs, rule{fmt.Sprintf("bulwark:dashboard_panel_%d", i), e.expr})
	}
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rs}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if out := promtool(t, "check", "rules", path); !strings.Contains(out, fmt.Sprintf("SUCCESS: %d rules found", len(rs))) {
		t.Errorf("promtool check rules: %s", out)
	}
	// The check can fail: a broken expression is refused.
	if err := os.WriteFile(path, []byte("groups:\n- name: x\n  rules:\n  - record: x\n    expr: 'sum by (a) (rate(x[5m])'\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("promtool", "check", "rules", path).CombinedOutput(); err == nil {
		t.Errorf("promtool accepted a broken expression: %s", out)
	}
}
