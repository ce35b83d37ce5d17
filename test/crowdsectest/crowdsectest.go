// Package crowdsectest runs a real CrowdSec local API (Debian's crowdsec,
// `crowdsec -no-cs`: the API alone, no log-reading agent, no online API)
// for tests: its own config dir, SQLite database, credentials and port
// under a temporary directory, optionally inside a network namespace, with
// cscli pointed at that config.
package crowdsectest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Machine is the machine the harness registers for cscli (decisions add,
// delete, import and the alert listings go through the LAPI with it).
const Machine = "bulwark-test-harness"

// LAPI is one crowdsec local API process and its files.
type LAPI struct {
	t       testing.TB
	Dir     string // the config dir, data and logs; removed at the end
	Config  string // config.yaml, for cscli -c
	Port    int
	enter   []string // the command that runs its arguments in the namespace; nil: the host
	cmd     *exec.Cmd
	done    chan struct{}
	machine string // the harness machine's password
}

// URL is the LAPI's URL as seen from its namespace.
func (l *LAPI) URL() string { return fmt.Sprintf("http://127.0.0.1:%d", l.Port) }

// Start writes a config for a LAPI on 127.0.0.1 of the namespace ns (""
// for the host) and starts it; it is stopped and its files removed when
// the test ends. The port is random in 20000-59999 (a namespace made by
// the test has no other listener; on the host, pick ns).
func Start(t testing.TB, ns string) *LAPI {
	t.Helper()
	if _, err := exec.LookPath("crowdsec"); err != nil {
		t.Fatal("crowdsec is not installed: run scripts/deps.sh (Debian's crowdsec package)")
	}
	dir, err := os.MkdirTemp("", "bwk-cs-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	n, err := rand.Int(rand.Reader, big.NewInt(40000))
	if err != nil {
		t.Fatal(err)
	}
	l := &LAPI{t: t, Dir: dir, Config: filepath.Join(dir, "config.yaml"), Port: 20000 + int(n.Int64()), machine: randHex(16)}
	if ns != "" {
		l.enter = []string{"nsenter", "--net=/var/run/netns/" + ns}
	}
	for _, d := range []string{"data", "hub", "notifications"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"hub/.index.json": "{}\n",
		"simulation.yaml": "simulation: off\n",
		// The profile of Debian's /etc/crowdsec/profiles.yaml: alerts on an
		// IP with remediation get a 4h ban (what `cscli decisions add`
		// writes itself carries its own decision).
		"profiles.yaml": "name: default_ip_remediation\nfilters:\n - Alert.Remediation == true && Alert.GetScope() == \"Ip\"\n" +
			"decisions:\n - type: ban\n   duration: 4h\non_success: break\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	l.writeConfig()
	if out, err := l.CSCLI("machines", "add", Machine, "--password", l.machine, "-f", filepath.Join(dir, "local_api_credentials.yaml"), "-u", l.URL()); err != nil {
		t.Fatalf("cscli machines add: %v: %s", err, out)
	}
	t.Cleanup(l.Stop)
	l.Start()
	return l
}

// writeConfig writes config.yaml for the current port; cscli's
// credentials name the same URL.
func (l *LAPI) writeConfig() {
	d := l.Dir
	cfg := fmt.Sprintf(`common:
  daemonize: false
  log_media: file
  log_dir: %[1]s/
  log_level: info
  working_dir: %[1]s
config_paths:
  config_dir: %[1]s/
  data_dir: %[1]s/data/
  simulation_path: %[1]s/simulation.yaml
  hub_dir: %[1]s/hub/
  index_path: %[1]s/hub/.index.json
  notification_dir: %[1]s/notifications/
  plugin_dir: /usr/lib/crowdsec/plugins/
crowdsec_service:
  acquisition_path: %[1]s/acquis.yaml
cscli:
  output: human
  color: "no"
db_config:
  log_level: warning
  type: sqlite
  db_path: %[1]s/data/crowdsec.db
  use_wal: true
  flush:
    max_items: 10000000
    max_age: 7d
api:
  client:
    insecure_skip_verify: false
    credentials_path: %[1]s/local_api_credentials.yaml
  server:
    log_level: info
    listen_uri: 127.0.0.1:%[2]d
    profiles_path: %[1]s/profiles.yaml
    console_path: %[1]s/console.yaml
    trusted_ips:
      - 127.0.0.1
      - ::1
prometheus:
  enabled: false
`, d, l.Port)
	if err := os.WriteFile(l.Config, []byte(cfg), 0o600); err != nil {
		l.t.Fatal(err)
	}
	creds := filepath.Join(d, "local_api_credentials.yaml")
	if err := os.WriteFile(creds, []byte(fmt.Sprintf("url: %s\nlogin: %s\npassword: %s\n", l.URL(), Machine, l.machine)), 0o600); err != nil {
		l.t.Fatal(err)
	}
}

// command is argv run in the LAPI's namespace.
func (l *LAPI) command(ctx context.Context, argv ...string) *exec.Cmd {
	argv = append(append([]string(nil), l.enter...), argv...)
	return exec.CommandContext(ctx, argv[0], argv[1:]...)
}

// Start starts the LAPI (after Stop, on the same database) and waits until
// cscli can use it.
func (l *LAPI) Start() {
	l.t.Helper()
	out, err := os.OpenFile(filepath.Join(l.Dir, "crowdsec.out"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		l.t.Fatal(err)
	}
	defer out.Close()
	l.cmd = l.command(context.Background(), "crowdsec", "-c", l.Config, "-no-cs", "-info")
	l.cmd.Stdout, l.cmd.Stderr = out, out
	if err := l.cmd.Start(); err != nil {
		l.t.Fatalf("start crowdsec: %v", err)
	}
	done := make(chan struct{})
	l.done = done
	cmd := l.cmd
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := l.CSCLI("decisions", "list", "-o", "json", "--limit", "1"); err == nil {
			return
		}
		select {
		case <-done:
			l.t.Fatalf("crowdsec exited at start:\n%s", l.Logs())
		default:
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("crowdsec's LAPI not up after 60 s:\n%s", l.Logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Stop stops the LAPI if it runs.
func (l *LAPI) Stop() {
	if l.cmd == nil {
		return
	}
	stop(l.cmd, l.done)
}

// stop stops cmd, whose Wait closes done, if it runs: SIGTERM, then
// SIGKILL after 15 s.
func stop(cmd *exec.Cmd, done chan struct{}) {
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(os.Interrupt)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// MovePort makes the next Start listen on port (and cscli use it): a LAPI
// on the same database that the bouncers configured with the old URL do
// not reach. The LAPI must be stopped.
func (l *LAPI) MovePort(port int) {
	l.Port = port
	l.writeConfig()
}

// Logs are the LAPI's log and output, for a failure message.
func (l *LAPI) Logs() string {
	var b strings.Builder
	for _, n := range []string{"crowdsec_api.log", "crowdsec.log", "crowdsec.out"} {
		text, err := os.ReadFile(filepath.Join(l.Dir, n))
		if err == nil {
			fmt.Fprintf(&b, "--- %s:\n%s\n", n, tail(string(text), 4000))
		}
	}
	return b.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// CSCLI runs cscli on the LAPI's config in its namespace, bounded to 10
// minutes (an import of 100,000 decisions is slow), and returns its
// output.
func (l *LAPI) CSCLI(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out, err := l.command(ctx, append([]string{"cscli", "-c", l.Config, "--error"}, args...)...).CombinedOutput()
	return string(out), err
}

// MustCSCLI is CSCLI that fails the test on an error.
func (l *LAPI) MustCSCLI(args ...string) string {
	l.t.Helper()
	out, err := l.CSCLI(args...)
	if err != nil {
		l.t.Fatalf("cscli %s: %v: %s\n%s", strings.Join(args, " "), err, out, l.Logs())
	}
	return out
}

// AddBouncer registers a bouncer and writes its API key to a file under
// the LAPI's dir; it returns the file.
func (l *LAPI) AddBouncer(name string) string {
	l.t.Helper()
	key := randHex(16)
	l.MustCSCLI("bouncers", "add", name, "-k", key)
	p := filepath.Join(l.Dir, name+".key")
	if err := os.WriteFile(p, []byte(key+"\n"), 0o600); err != nil {
		l.t.Fatal(err)
	}
	return p
}

// AddMachine registers a machine with a random password, written to a
// file under the LAPI's dir; it returns the file.
func (l *LAPI) AddMachine(name string) string {
	l.t.Helper()
	pw := randHex(16)
	l.MustCSCLI("machines", "add", name, "--password", pw, "-f", "/dev/null")
	p := filepath.Join(l.Dir, name+".password")
	if err := os.WriteFile(p, []byte(pw+"\n"), 0o600); err != nil {
		l.t.Fatal(err)
	}
	return p
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// ImportIPs imports one ip ban decision per address with `cscli decisions
// import` (origin cscli-import), in files of chunk decisions: crowdsec
// 1.4.6 on SQLite answers "database is locked" when the bouncers' pulls
// (which write their last pull time) meet a long import; a file that
// fails so is imported again a second later, at most 20 times (its
// decisions again at worst: the same targets).
func (l *LAPI) ImportIPs(addrs []netip.Addr, duration, reason string, chunk int) error {
	for c := 0; c < len(addrs); c += chunk {
		var b strings.Builder
		b.WriteString("duration,scope,value,type,reason\n")
		for _, a := range addrs[c:min(c+chunk, len(addrs))] {
			fmt.Fprintf(&b, "%s,ip,%s,ban,%s\n", duration, a, reason)
		}
		csv := filepath.Join(l.Dir, fmt.Sprintf("import-%d.csv", c))
		if err := os.WriteFile(csv, []byte(b.String()), 0o600); err != nil {
			return err
		}
		for try := 1; ; try++ {
			out, err := l.CSCLI("decisions", "import", "-i", csv)
			if err == nil {
				break
			}
			if try == 20 || !strings.Contains(out, "database is locked") {
				return fmt.Errorf("cscli decisions import -i %s (try %d): %v: %s", csv, try, err, out)
			}
			l.t.Logf("cscli decisions import of %s, try %d: database is locked; again in 1 s", csv, try)
			time.Sleep(time.Second)
		}
		os.Remove(csv)
	}
	return nil
}

// Firewall bouncer names: its nftables tables, chains and sets.
const (
	FirewallTable4 = "crowdsec"
	FirewallSet4   = "crowdsec-blacklists"
)

// FirewallBouncer is Debian's crowdsec-firewall-bouncer in nftables mode,
// run in a test's network namespace (its tables are that namespace's,
// never the host's), pulling from a LAPI.
type FirewallBouncer struct {
	t    testing.TB
	ns   string
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

// StartFirewallBouncer registers a bouncer with l and runs
// crowdsec-firewall-bouncer in the namespace ns (l's, so that it reaches
// the LAPI on 127.0.0.1), pulling every interval; it is stopped when the
// test ends. Its tables are crowdsec (ip) and crowdsec6 (ip6).
func StartFirewallBouncer(t testing.TB, l *LAPI, ns, name string, interval time.Duration) *FirewallBouncer {
	t.Helper()
	if _, err := exec.LookPath("crowdsec-firewall-bouncer"); err != nil {
		t.Fatal("crowdsec-firewall-bouncer is not installed: run scripts/deps.sh")
	}
	if ns == "" {
		t.Fatal("the firewall bouncer runs only in a test's network namespace")
	}
	key, err := os.ReadFile(l.AddBouncer(name))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(l.Dir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`mode: nftables
pid_dir: %[1]s/
update_frequency: %[2]s
daemonize: false
log_mode: file
log_dir: %[1]s/
log_level: info
api_url: %[3]s/
api_key: %[4]s
disable_ipv6: false
deny_action: DROP
deny_log: false
supported_decisions_types:
  - ban
blacklists_ipv4: %[5]s
blacklists_ipv6: crowdsec6-blacklists
nftables:
  ipv4:
    enabled: true
    set-only: false
    table: %[6]s
    chain: crowdsec-chain
  ipv6:
    enabled: true
    set-only: false
    table: crowdsec6
    chain: crowdsec6-chain
prometheus:
  enabled: false
`, dir, interval, l.URL(), strings.TrimSpace(string(key)), FirewallSet4, FirewallTable4)
	path := filepath.Join(dir, "crowdsec-firewall-bouncer.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(filepath.Join(dir, "bouncer.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	b := &FirewallBouncer{t: t, ns: ns, dir: dir, done: make(chan struct{})}
	b.cmd = exec.Command("nsenter", "--net=/var/run/netns/"+ns, "crowdsec-firewall-bouncer", "-c", path)
	b.cmd.Stdout, b.cmd.Stderr = out, out
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("start crowdsec-firewall-bouncer: %v", err)
	}
	go func() { _ = b.cmd.Wait(); close(b.done) }()
	t.Cleanup(b.Stop)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := b.Count(); err == nil {
			return b
		}
		select {
		case <-b.done:
			t.Fatalf("crowdsec-firewall-bouncer exited at start:\n%s", b.Logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("crowdsec-firewall-bouncer's set not there after 60 s:\n%s", b.Logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Count is how many elements the bouncer's IPv4 set holds, by `nft -j
// list set` in its namespace.
func (b *FirewallBouncer) Count() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", b.ns, "nft", "-j", "list", "set", "ip", FirewallTable4, FirewallSet4).Output()
	if err != nil {
		return 0, fmt.Errorf("nft list set ip %s %s: %w", FirewallTable4, FirewallSet4, err)
	}
	var doc struct {
		Nftables []struct {
			Set *struct {
				Elem []json.RawMessage `json:"elem"`
			} `json:"set"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return 0, fmt.Errorf("nft -j list set: %w", err)
	}
	for _, o := range doc.Nftables {
		if o.Set != nil {
			return len(o.Set.Elem), nil
		}
	}
	return 0, fmt.Errorf("nft -j list set: no set in %.200s", out)
}

// Pid is the bouncer's process id (nsenter execs it: the same process).
func (b *FirewallBouncer) Pid() int { return b.cmd.Process.Pid }

// Logs are the bouncer's log and output, for a failure message.
func (b *FirewallBouncer) Logs() string {
	var s strings.Builder
	for _, n := range []string{"crowdsec-firewall-bouncer.log", "bouncer.out"} {
		if text, err := os.ReadFile(filepath.Join(b.dir, n)); err == nil {
			fmt.Fprintf(&s, "--- %s:\n%s\n", n, tail(string(text), 4000))
		}
	}
	return s.String()
}

// Stop stops the bouncer (SIGTERM, SIGKILL after 15 s) and deletes its
// tables from its namespace.
func (b *FirewallBouncer) Stop() {
	stop(b.cmd, b.done)
	for _, t := range []string{"ip " + FirewallTable4, "ip6 crowdsec6"} {
		_ = exec.Command("ip", append([]string{"netns", "exec", b.ns, "nft", "delete", "table"}, strings.Fields(t)...)...).Run()
	}
}

// FirewallBouncerVersion is the installed crowdsec-firewall-bouncer
// package's version (the program's -V prints none).
func FirewallBouncerVersion(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", "crowdsec-firewall-bouncer").Output()
	if err != nil {
		t.Fatalf("dpkg-query crowdsec-firewall-bouncer: %v", err)
	}
	return "crowdsec-firewall-bouncer " + strings.TrimSpace(string(out))
}
