// Package fail2ban tests the shipped fail2ban action
// (configs/fail2ban/action.d/bulwark.conf) with the real fail2ban-server: a
// jail of its own watches a test log; failure lines ban the address in a
// real Bulwark agent, whose XDP program then drops its frames in a netns;
// fail2ban's unban delivers them again; stopping fail2ban leaves the
// entries that are not its own.
package fail2ban

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/test/agenttest"
)

func TestMain(m *testing.M) { os.Exit(agenttest.Main(m, "bwk-f2b-bin-")) }

// frames is how many frames each check sends from one source.
const frames = 20

// The test jails' names; fail2ban passes them to the action as <name>.
const (
	jail     = "bulwark-test" // bantime 1h, maxretry 3, lines "auth failure from IP"
	jailPerm = "bulwark-perm" // bantime -1 (permanent), maxretry 1, lines "perm failure from IP"
	jailLong = "bulwark-long" // bantime 400d, maxretry 1, lines "long failure from IP"
)

// f2b is one fail2ban-server with its own config dir, socket, pid file,
// database and log, all under dir.
type f2b struct {
	t    *testing.T
	dir  string
	sock string
	log  string // the log the jail watches
	cmd  *exec.Cmd
	done chan struct{}
}

// startF2B writes fail2ban's config (the repository's action, a filter and
// a jail for it) and starts fail2ban-server in the foreground.
func startF2B(t *testing.T, bin, agentSock string) *f2b {
	t.Helper()
	dir, err := os.MkdirTemp("", "bwk-f2b-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := &f2b{t: t, dir: dir, sock: filepath.Join(dir, "f2b.sock"), log: filepath.Join(dir, "auth.log"), done: make(chan struct{})}
	action, err := os.ReadFile("../../configs/fail2ban/action.d/bulwark.conf")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"fail2ban.conf": fmt.Sprintf("[Definition]\nloglevel = INFO\nlogtarget = %s\nsocket = %s\npidfile = %s\n"+
			"dbfile = %s\ndbpurgeage = 1d\n", filepath.Join(dir, "fail2ban.log"), f.sock, filepath.Join(dir, "f2b.pid"),
			filepath.Join(dir, "f2b.sqlite3")),
		"action.d/bulwark.conf": string(action),
		"auth.log":              "",
	}
	// The jails: bantime 1h (the ban's TTL in Bulwark is 3600 s), a
	// permanent ban (no TTL) and one over Bulwark's 365 days (capped).
	jails := "[DEFAULT]\nbackend = polling\n"
	for _, j := range []struct{ name, word, maxretry, bantime string }{
		{jail, "auth", "3", "1h"}, {jailPerm, "perm", "1", "-1"}, {jailLong, "long", "1", "400d"},
	} {
		files["filter.d/"+j.name+".conf"] = "[Definition]\nfailregex = ^" + j.word + " failure from <HOST>$\ndatepattern = {NONE}\n"
		jails += fmt.Sprintf("\n[%s]\nenabled = true\nfilter = %s\nlogpath = %s\nmaxretry = %s\nfindtime = 10m\n"+
			"bantime = %s\naction = bulwark[bulwark=\"%s\", socket=\"%s\"]\n", j.name, j.name, f.log, j.maxretry, j.bantime, bin, agentSock)
	}
	files["jail.conf"] = jails
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := os.Create(filepath.Join(dir, "server.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	f.cmd = exec.Command("fail2ban-server", "-f", "-x", "-c", dir, "-s", f.sock, "-p", filepath.Join(dir, "f2b.pid"), "start")
	f.cmd.Stdout, f.cmd.Stderr = out, out
	if err := f.cmd.Start(); err != nil {
		t.Fatalf("start fail2ban-server: %v", err)
	}
	go func() { _ = f.cmd.Wait(); close(f.done) }()
	t.Cleanup(f.kill)
	agenttest.WaitFor(t, 60*time.Second, "fail2ban's jail to run\n"+f.logs(), func() bool {
		_, err := f.client("status", jail)
		return err == nil
	})
	return f
}

// client runs fail2ban-client on the server's socket.
func (f *f2b) client(args ...string) (string, error) {
	out, err := exec.Command("fail2ban-client", append([]string{"-c", f.dir, "-s", f.sock}, args...)...).CombinedOutput()
	return string(out), err
}

// logs is fail2ban's own log and output, for a failure message.
func (f *f2b) logs() string {
	var b strings.Builder
	for _, n := range []string{"fail2ban.log", "server.out"} {
		text, _ := os.ReadFile(filepath.Join(f.dir, n))
		fmt.Fprintf(&b, "--- %s:\n%s\n", n, text)
	}
	return b.String()
}

// fail appends n "auth" failure lines of src to the watched log.
func (f *f2b) fail(src netip.Addr, n int) { f.failWord("auth", src, n) }

// failWord appends n failure lines of src with word (the jail's) to the
// watched log.
func (f *f2b) failWord(word string, src netip.Addr, n int) {
	f.t.Helper()
	lf, err := os.OpenFile(f.log, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		f.t.Fatal(err)
	}
	defer lf.Close()
	for range n {
		if _, err := fmt.Fprintf(lf, "%s failure from %s\n", word, src); err != nil {
			f.t.Fatal(err)
		}
	}
}

// kill stops the server if it still runs: SIGTERM, then SIGKILL.
func (f *f2b) kill() {
	select {
	case <-f.done:
		return
	default:
	}
	_ = f.cmd.Process.Signal(os.Interrupt)
	select {
	case <-f.done:
	case <-time.After(15 * time.Second):
		_ = f.cmd.Process.Kill()
		<-f.done
	}
}

// blocked reports whether the block list holds the host entry of a.
func blocked(e *agenttest.Env, a netip.Addr) (agenttest.ListEntry, bool) {
	return agenttest.FindEntry(e.List("block"), netip.PrefixFrom(a, a.BitLen()).String())
}

func TestFail2banAction(t *testing.T) {
	e := agenttest.NewEnv(t, agenttest.Options{DirPrefix: "bwk-f2b-", Receiver: true, Sender: true})
	e.WriteConfig("", agenttest.Config{})
	e.Start()
	var (
		bad4   = agenttest.Addr("198.18.70.7")
		bad6   = agenttest.Addr("2001:2:0:70::7")
		below  = agenttest.Addr("198.18.70.8")  // fails twice, under maxretry 3
		manual = agenttest.Addr("198.18.70.99") // the operator's entry, not fail2ban's
	)
	e.MustCLI("block", "add", manual.String(), "--reason", "operator")
	for _, a := range []netip.Addr{bad4, bad6, below} {
		if got := e.Send(a, frames); got != frames {
			t.Fatalf("before any ban: %d of %d frames from %s delivered", got, frames, a)
		}
	}

	f := startF2B(t, agenttest.Bin, e.Sock)
	// The lines of below come first: once bad4 and bad6 are banned,
	// fail2ban has read them too.
	f.fail(below, 2)
	f.fail(bad4, 3)
	f.fail(bad6, 3)
	for _, a := range []netip.Addr{bad4, bad6} {
		agenttest.WaitFor(t, 60*time.Second, fmt.Sprintf("fail2ban to ban %s in Bulwark\n%s", a, f.logs()), func() bool {
			_, ok := blocked(e, a)
			return ok
		})
		le, _ := blocked(e, a)
		// The jail's bantime (3600 s) is the TTL; the entry was added
		// within the wait above.
		if le.Origin != "runtime" || le.ExpiresIn <= 3600-70 || le.ExpiresIn > 3600 {
			t.Errorf("%s: entry %+v, want origin runtime and 3530 to 3600 s left", a, le)
		}
		if got := e.Send(a, frames); got != 0 {
			t.Errorf("%s banned: %d of %d frames delivered, want 0", a, got, frames)
		}
	}
	if _, ok := blocked(e, below); ok {
		t.Errorf("%s failed 2 times (maxretry 3) but is blocked", below)
	}
	if got := e.Send(below, frames); got != frames {
		t.Errorf("%s not banned: %d of %d frames delivered", below, got, frames)
	}
	// A permanent ban has no TTL; a bantime over 365 days is capped there.
	perm, long := agenttest.Addr("198.18.70.20"), agenttest.Addr("198.18.70.21")
	f.failWord("perm", perm, 1)
	f.failWord("long", long, 1)
	for _, c := range []struct {
		a        netip.Addr
		min, max float64 // the TTL left
	}{{perm, 0, 0}, {long, 365*86400 - 70, 365 * 86400}} {
		agenttest.WaitFor(t, 60*time.Second, fmt.Sprintf("fail2ban to ban %s in Bulwark\n%s", c.a, f.logs()), func() bool {
			_, ok := blocked(e, c.a)
			return ok
		})
		if le, _ := blocked(e, c.a); le.ExpiresIn < c.min || le.ExpiresIn > c.max {
			t.Errorf("%s: %.0f s left, want %.0f to %.0f", c.a, le.ExpiresIn, c.min, c.max)
		}
		if got := e.Send(c.a, frames); got != 0 {
			t.Errorf("%s banned: %d of %d frames delivered, want 0", c.a, got, frames)
		}
	}
	var reasons []string
	for _, r := range agenttest.AuditLog[struct {
		What   string   `json:"what"`
		Target []string `json:"target"`
		Why    string   `json:"why"`
		TTL    string   `json:"ttl"`
	}](e) {
		if r.What == "block.add" && len(r.Target) == 1 && r.Target[0] == bad4.String() {
			reasons = append(reasons, r.Why+" ttl "+r.TTL)
		}
	}
	if want := "fail2ban jail " + jail + " ttl 3600s"; len(reasons) != 1 || reasons[0] != want {
		t.Errorf("audit of the ban of %s: %q, want one %q", bad4, reasons, want)
	}

	// fail2ban's unban deletes the entry: delivered again.
	if out, err := f.client("set", jail, "unbanip", bad4.String()); err != nil {
		t.Fatalf("fail2ban-client unbanip: %v: %s", err, out)
	}
	agenttest.WaitFor(t, 30*time.Second, "the unban to reach Bulwark\n"+f.logs(), func() bool {
		_, ok := blocked(e, bad4)
		return !ok
	})
	if got := e.Send(bad4, frames); got != frames {
		t.Errorf("%s unbanned: %d of %d frames delivered", bad4, got, frames)
	}

	// Stopping fail2ban unbans its own bans one by one (no flush): the
	// operator's entry stays and is still enforced.
	if out, err := f.client("stop"); err != nil {
		t.Fatalf("fail2ban-client stop: %v: %s", err, out)
	}
	select {
	case <-f.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("fail2ban-server still runs 60 s after stop\n%s", f.logs())
	}
	for _, a := range []netip.Addr{bad6, perm, long} {
		if _, ok := blocked(e, a); ok {
			t.Errorf("fail2ban stopped, but its ban of %s is still in the block list", a)
		}
	}
	if _, ok := blocked(e, manual); !ok {
		t.Errorf("fail2ban's stop removed the operator's entry %s", manual)
	}
	if got := e.Send(manual, frames); got != 0 {
		t.Errorf("operator's entry %s after fail2ban's stop: %d of %d frames delivered, want 0", manual, got, frames)
	}
}

// TestJailExample checks the shipped example jail against Debian's own
// fail2ban config: copied beside it with the action, fail2ban-client's dump
// shows the sshd jail banning with the bulwark action only.
func TestJailExample(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("/etc/fail2ban")); err != nil {
		t.Fatalf("copy /etc/fail2ban: %v", err)
	}
	for src, dst := range map[string]string{
		"../../configs/fail2ban/action.d/bulwark.conf":       "action.d/bulwark.conf",
		"../../configs/fail2ban/jail.d/bulwark.conf.example": "jail.d/bulwark.local",
	} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, dst), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("fail2ban-client", "-c", dir, "-d").CombinedOutput()
	if err != nil {
		t.Fatalf("fail2ban-client -d: %v: %s", err, out)
	}
	var actions []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "['set', 'sshd', 'addaction', ") {
			actions = append(actions, l)
		}
	}
	if len(actions) != 1 || actions[0] != "['set', 'sshd', 'addaction', 'bulwark']" {
		t.Errorf("the sshd jail's actions: %q, want only bulwark", actions)
	}
	if !strings.Contains(string(out), `/usr/bin/bulwark --socket /run/bulwark/bulwark.sock block add <ip> "$@" --reason "fail2ban jail sshd"`) {
		t.Errorf("the dump has no ban with the package's binary and socket:\n%s", out)
	}
}
