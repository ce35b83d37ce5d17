package observability_test

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/test/agenttest"
)

// promServer is a prometheus process in the server namespace.
type promServer struct {
	t      *testing.T
	env    *agenttest.Env
	addr   string // its listener, inside the namespace
	client *http.Client
}

// startPrometheus starts prometheus in env's server namespace, storing in
// a directory of env's, scraping the agent every second under job
// "bulwark" and evaluating alerts.yml every second; it stops it when the
// test ends.
func startPrometheus(t *testing.T, e *agenttest.Env) *promServer {
	t.Helper()
	dir := filepath.Join(e.Dir, "prometheus")
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	rules, err := filepath.Abs(filepath.Join(packDir, "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"+
		"rule_files:\n  - %q\nscrape_configs:\n  - job_name: bulwark\n    static_configs:\n      - targets: [%q]\n", rules, metricsAddr)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	// The namespace is the test's own: any port but the agent's is free.
	p := &promServer{t: t, env: e, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(20000+rand.IntN(20000)))}
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	// nsenter execs prometheus: the pid is prometheus's.
	cmd := exec.Command("nsenter", "--net=/var/run/netns/"+e.TB.Server, "prometheus",
		"--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+p.addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	p.client = e.ServerClient(10 * time.Second)
	agenttest.WaitFor(t, 60*time.Second, "prometheus ready", func() bool {
		select {
		case <-done:
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("prometheus exited:\n%s", b)
		default:
		}
		resp, err := p.client.Get("http://" + p.addr + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

// get GETs path of the HTTP API and decodes the data of a successful
// answer into v.
func (p *promServer) get(path string, v any) error {
	resp, err := p.client.Get("http://" + p.addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var r struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("HTTP %d: %v: %s", resp.StatusCode, err, body)
	}
	if r.Status != "success" {
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, r.Error)
	}
	return json.Unmarshal(r.Data, v)
}

// sample is one element of an instant vector.
type sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// float is the sample's value.
func (s sample) float() float64 {
	str, _ := s.Value[1].(string)
	f, err := strconv.ParseFloat(str, 64)
	if err != nil {
		return -1
	}
	return f
}

// query runs an instant query; an expression the server refuses fails t.
func (p *promServer) query(expr string) []sample {
	p.t.Helper()
	var d struct {
		ResultType string   `json:"resultType"`
		Result     []sample `json:"result"`
	}
	if err := p.get("/api/v1/query?query="+url.QueryEscape(expr), &d); err != nil {
		p.t.Fatalf("query %q: %v", expr, err)
	}
	if d.ResultType != "vector" {
		p.t.Fatalf("query %q: result type %s, want vector", expr, d.ResultType)
	}
	return d.Result
}

// waitValue waits until expr returns one sample of value want, and fails t
// after a minute (scrapes are a second apart).
func (p *promServer) waitValue(expr string, want float64) {
	p.t.Helper()
	var last []sample
	deadline := time.Now().Add(time.Minute)
	for {
		last = p.query(expr)
		if len(last) == 1 && last[0].float() == want {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s = %v, want one sample of %v", expr, last, want)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// ruleHealth is the health (ok, err, unknown) of each loaded alert rule.
func (p *promServer) ruleHealth() map[string]string {
	p.t.Helper()
	var d struct {
		Groups []struct {
			Rules []struct {
				Name      string `json:"name"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := p.get("/api/v1/rules?type=alert", &d); err != nil {
		p.t.Fatalf("rules: %v", err)
	}
	out := map[string]string{}
	for _, g := range d.Groups {
		for _, r := range g.Rules {
			out[r.Name] = r.Health
			if r.Health == "err" {
				p.t.Errorf("alert rule %s: %s", r.Name, r.LastError)
			}
		}
	}
	return out
}

// firing is the names of the alerts firing.
func (p *promServer) firing() map[string]bool {
	p.t.Helper()
	var d struct {
		Alerts []struct {
			Labels map[string]string `json:"labels"`
			State  string            `json:"state"`
		} `json:"alerts"`
	}
	if err := p.get("/api/v1/alerts", &d); err != nil {
		p.t.Fatalf("alerts: %v", err)
	}
	out := map[string]bool{}
	for _, a := range d.Alerts {
		if a.State == "firing" {
			out[a.Labels["alertname"]] = true
		}
	}
	return out
}

// TestDashboardLive runs a real agent in a namespace with lists, a limit
// and a feed, and a real prometheus scraping it; it sends traffic, reloads
// the config, and checks that every dashboard panel's expressions return
// data, the new map-fill and reload metrics hold the figures the config
// gives, every alert rule evaluates without error, and the reload alert
// fires on a rejected reload.
func TestDashboardLive(t *testing.T) {
	exprs := readDashboard(t)
	e := agenttest.NewEnv(t, agenttest.Options{DirPrefix: "bwk-obs-", MetricsAddr: metricsAddr, Receiver: true, Sender: true})
	feedPath := filepath.Join(e.Dir, "feed.txt")
	agenttest.WriteFile(t, feedPath, "198.18.70.0/24\n198.18.71.5\n")
	cfg := agenttest.Config{PPS: 100, Burst: 100, Allow: []string{"198.18.20.1"},
		Block: []string{"198.18.66.7", "198.18.67.0/24"},
		Extra: fmt.Sprintf("\nfeed \"testfeed\" {\n  path   = %q\n  format = \"plain\"\n  action = \"block\"\n}\n", feedPath)}
	e.WriteConfig("", cfg)
	e.Start()
	p := startPrometheus(t, e)

	if got := e.Send(agenttest.Addr("198.18.20.1"), 50); got != 50 {
		t.Fatalf("%d of 50 allow-listed frames delivered", got)
	}
	if got := e.Send(agenttest.Addr("198.18.66.7"), 50); got != 0 {
		t.Fatalf("%d of 50 block-listed frames delivered", got)
	}
	if got := e.Send(agenttest.Addr("198.18.70.9"), 50); got != 0 {
		t.Fatalf("%d of 50 feed-listed frames delivered", got)
	}
	if got, ok := e.SendFlood(agenttest.Addr("198.18.3.3"), 300, 100, 100); !ok {
		t.Fatalf("%d of 300 rate-limited frames delivered, want about 100", got)
	}
	e.MustCLI("reload")

	// Map fill: block hosts 198.18.66.7 and the feed's 198.18.71.5; block
	// prefixes 198.18.67.0/24 and the feed's 198.18.70.0/24; the allowed
	// host; the maps' sizes are the env's config's.
	ds := agenttest.DefaultSizes
	for _, c := range []struct {
		m             string
		entries, size int
	}{
		{"block_hosts4", 2, ds.BlockHosts}, {"block_nets4", 2, ds.BlockPrefixes},
		{"allow_hosts4", 1, ds.AllowHosts}, {"allow_nets4", 0, ds.AllowPrefixes},
		{"block_hosts6", 0, ds.BlockHosts}, {"sources", -1, ds.Sources}, {"verdicts", 0, ds.Verdicts},
	} {
		sel := fmt.Sprintf(`{job="bulwark", interface=%q, map=%q}`, e.TB.ServerIf, c.m)
		p.waitValue("bulwark_map_max_entries"+sel, float64(c.size))
		if c.entries >= 0 {
			p.waitValue("bulwark_map_entries"+sel, float64(c.entries))
		}
	}
	// The rate-limited source is tracked.
	p.waitValue(`count(bulwark_map_entries{map="sources"} >= 1)`, 1)
	p.waitValue(`bulwark_config_reloads_total{result="ok"}`, 1)
	p.waitValue(`bulwark_config_last_reload_successful`, 1)

	// Every panel's expressions return data.
	for _, pe := range exprs {
		var got []sample
		agenttest.WaitFor(t, time.Minute, fmt.Sprintf("panel %q: %s returns data", pe.panel, pe.expr), func() bool {
			got = p.query(pe.expr)
			return len(got) > 0
		})
	}

	// Prometheus evaluates every alert rule on the agent's series without
	// an error.
	agenttest.WaitFor(t, time.Minute, "every alert rule evaluated without error", func() bool {
		h := p.ruleHealth()
		for _, a := range wantAlerts {
			if h[a] != "ok" {
				return false
			}
		}
		return len(h) == len(wantAlerts)
	})

	// A rejected reload: the gauge says so and the alert fires; no other
	// alert fires (the agent is up, native, without its privileges, its
	// maps far from full, its feed fresh).
	if f := p.firing(); len(f) != 0 {
		t.Errorf("alerts firing before the rejected reload: %v", f)
	}
	agenttest.WriteFile(t, e.CfgPath, "this is not a config\n")
	if r := e.CLI("reload"); r.Code == 0 {
		t.Fatalf("a broken config reloaded: %s", r)
	}
	p.waitValue(`bulwark_config_last_reload_successful`, 0)
	p.waitValue(`bulwark_config_reloads_total{result="rejected"}`, 1)
	agenttest.WaitFor(t, time.Minute, "BulwarkReloadRejected firing", func() bool { return p.firing()["BulwarkReloadRejected"] })
	if f := p.firing(); len(f) != 1 {
		t.Errorf("alerts firing after the rejected reload: %v, want BulwarkReloadRejected only", f)
	}
}
