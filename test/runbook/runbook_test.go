// Package runbook_test follows the README's "Zero to filtering" steps from
// the built tree to a filtering host, running the README's own commands
// (read from its text, not repeated here):
//
//   - the host is a mount namespace of the test's own, in which /etc,
//     /usr/local and /var are overlays whose writes go to a temporary
//     directory and /run is empty, so the runbook's paths
//     (/etc/bulwark/bulwark.hcl, /usr/local/bin/bulwark, the default control
//     socket, audit log and flight recorder) are used as written and the
//     machine's own are untouched; /sys/fs/bpf is the machine's, so the
//     pins are real (under the default pin_dir, for the test's interface);
//   - the network is the server namespace of a testbed, whose veth stands in
//     for eth0; frames come from the client namespace;
//   - the README's placeholders (its "Placeholders" table) are substituted:
//     eth0 by the veth, the management networks by the client's subnets,
//     the test address by a source the client spoofs;
//   - step 1 follows "From source"; `sudo` is dropped (the test is root);
//     `systemctl enable --now bulwark` runs the installed unit's
//     ExecStartPre and then its ExecStart in the background, `systemctl
//     reload bulwark` its ExecReload (there is no systemd in the namespace);
//     every other command runs as written, and must exit 0.
//
// After step 4 (monitor mode) the test address's frames must all arrive and
// be counted as would_drop; after step 5 (enforce) none may arrive, while
// the management address's always do.
package runbook_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/agent/api"
	"github.com/bulwark-filter/bulwark/test/agenttest"
	"github.com/bulwark-filter/bulwark/test/netns"
	"github.com/bulwark-filter/bulwark/test/readmedoc"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

func TestMain(m *testing.M) { os.Exit(agenttest.Main(m, "bwk-runbook-")) }

const (
	configPath = "/etc/bulwark/bulwark.hcl" // where step 2 says to write the first config
	pinRoot    = "/sys/fs/bpf/bulwark"      // the default pin_dir, which the first config keeps
	unitPath   = "/etc/systemd/system/bulwark.service"
	frames     = 200 // frames sent from each source in each phase
)

// host is the mount namespace that stands in for a fresh host: a process
// holds it, and every command enters it and the server's network namespace.
type host struct {
	t      *testing.T
	holder *exec.Cmd
	netns  string // the server namespace's name
	repo   string
	env    []string
}

// newHost makes the namespace (see the package comment) and removes it, with
// its overlays' upper directories, when the test ends.
func newHost(t *testing.T, serverNS string) *host {
	t.Helper()
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "bwk-runbook-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var mounts []string
	for _, d := range []string{"/etc", "/usr/local", "/var"} {
		up, work := filepath.Join(dir, d, "up"), filepath.Join(dir, d, "work")
		for _, p := range []string{up, work} {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		mounts = append(mounts, fmt.Sprintf("mount -t overlay overlay -o lowerdir=%s,upperdir=%s,workdir=%s %s", d, up, work, d))
	}
	mounts = append(mounts, "mount -t tmpfs tmpfs /run")
	// Bounded: the holder sleeps an hour at most and is killed at the end.
	holder := exec.Command("unshare", "--mount", "--propagation", "private", "--",
		"sh", "-c", strings.Join(mounts, " && ")+" && echo ready && exec sleep 3600")
	out, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	holder.Stderr = os.Stderr
	if err := holder.Start(); err != nil {
		t.Fatalf("start the namespace's holder: %v", err)
	}
	t.Cleanup(func() { _ = holder.Process.Kill(); _ = holder.Wait() })
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
		t.Fatalf("the namespace's mounts failed (%q)", line)
	}
	env := slices.DeleteFunc(os.Environ(), func(s string) bool { return strings.HasPrefix(s, "PATH=") })
	gobin := "/usr/local/go/bin"
	if p, err := exec.LookPath("go"); err == nil {
		gobin = filepath.Dir(p)
	}
	env = append(env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:"+gobin)
	return &host{t: t, holder: holder, netns: serverNS, repo: repo, env: env}
}

// command is line run by sh in the host, from the repository's top
// directory.
func (h *host) command(ctx context.Context, line string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "nsenter", "--target", fmt.Sprint(h.holder.Process.Pid), "--mount",
		"--net=/run/netns/"+h.netns, "--", "sh", "-c", "cd "+h.repo+" && "+line)
	cmd.Env = h.env
	return cmd
}

// run runs line in the host (bounded: 10 minutes, for `make build` on a
// busy machine) and fails the test unless it exits 0; it returns stdout.
func (h *host) run(line string) string {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := h.command(ctx, line)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		h.t.Fatalf("%s: %v\nstdout: %s\nstderr: %s", line, err, out, stderr.String())
	}
	h.t.Logf("$ %s\n%s%s", line, out, stderr.String())
	return string(out)
}

// file is the path of a file of the host, seen from outside it.
func (h *host) file(path string) string {
	return fmt.Sprintf("/proc/%d/root%s", h.holder.Process.Pid, path)
}

// unitLine is the command of key (ExecStart, ...) in the installed unit.
func (h *host) unitLine(key string) string {
	h.t.Helper()
	b, err := os.ReadFile(h.file(unitPath))
	if err != nil {
		h.t.Fatalf("the installed unit: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+"="); ok {
			return v
		}
	}
	h.t.Fatalf("the installed unit has no %s", key)
	return ""
}

// start stands in for `systemctl enable --now bulwark`: the unit's
// ExecStartPre, then its ExecStart in the background until the test ends;
// it waits until the agent answers `bulwark status`.
func (h *host) start(dir string) {
	h.t.Helper()
	h.run(h.unitLine("ExecStartPre"))
	logf, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		h.t.Fatal(err)
	}
	defer logf.Close()
	cmd := h.command(context.Background(), "exec "+h.unitLine("ExecStart"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	agent := &agenttest.Agent{Cmd: cmd, Log: logf.Name(), Done: make(chan struct{})}
	go func() { agent.Err = cmd.Wait(); close(agent.Done) }()
	h.t.Cleanup(agent.Kill)
	deadline := time.Now().Add(60 * time.Second)
	for h.command(context.Background(), "bulwark status >/dev/null 2>&1").Run() != nil {
		if agent.Exited() {
			h.t.Fatalf("the agent exited (%v):\n%s", agent.Err, agent.LogText())
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("the agent did not answer within 60 s:\n%s", agent.LogText())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// status is `bulwark status --json` in the host.
func (h *host) status() api.Status {
	h.t.Helper()
	var st api.Status
	if err := json.Unmarshal([]byte(h.run("bulwark status --json")), &st); err != nil {
		h.t.Fatalf("status --json: %v", err)
	}
	return st
}

var sudo = regexp.MustCompile(`(^|&&\s*|\|\s*)sudo `)

// step runs the commands of one step's shell blocks.
func (h *host) step(dir string, blocks []readmedoc.Block, subst func(string) string) {
	h.t.Helper()
	for _, b := range blocks {
		if b.Lang != "sh" {
			continue
		}
		for _, line := range readmedoc.Commands(b.Body) {
			line = sudo.ReplaceAllString(subst(line), "$1")
			switch {
			case line == "systemctl enable --now bulwark":
				h.start(dir)
			case line == "systemctl reload bulwark":
				h.run(h.unitLine("ExecReload"))
			case strings.HasPrefix(line, "systemctl"):
				h.t.Fatalf("README line %d: no stand-in for %q", b.Line, line)
			default:
				h.run(line)
			}
		}
	}
}

// steps are the code blocks of the README's "Zero to filtering", by the
// number of their step (the level-3 heading "N. ...").
func steps(t *testing.T, text string) map[int][]readmedoc.Block {
	t.Helper()
	out := map[int][]readmedoc.Block{}
	for _, b := range readmedoc.Blocks(text) {
		if !b.Under("Zero to filtering") || len(b.Headings) < 3 {
			continue
		}
		var n int
		if _, err := fmt.Sscanf(b.Headings[2], "%d. ", &n); err != nil {
			continue
		}
		out[n] = append(out[n], b)
	}
	for n := 1; n <= 5; n++ {
		if len(out[n]) == 0 {
			t.Fatalf("the README's Zero to filtering has no code block in step %d", n)
		}
	}
	return out
}

func TestRunbook(t *testing.T) {
	testutil.RequireRoot(t)
	text, err := readmedoc.Read("../..")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "Replace `"+configPath+"` with this") {
		t.Fatalf("the README's step 2 no longer writes its config to %s", configPath)
	}
	tb := netns.New(t, netns.Options{})
	mgmt, test := tb.ClientAddrs4[0], netip.MustParseAddr("198.18.66.7")
	values := map[string]string{
		"eth0":            tb.ServerIf,
		"192.0.2.0/24":    "198.18.1.0/24", // the client's subnet: mgmt is in it
		"2001:db8:1::/48": "2001:2:0:1::/64",
		"203.0.113.7":     test.String(),
	}
	names, err := readmedoc.Placeholders(text)
	if err != nil {
		t.Fatal(err)
	}
	if want := slices.Sorted(func(yield func(string) bool) {
		for k := range values {
			if !yield(k) {
				return
			}
		}
	}); !slices.Equal(slices.Sorted(slices.Values(names)), want) {
		t.Fatalf("the README's placeholders are %q, the test substitutes %q", names, want)
	}
	eth0 := regexp.MustCompile(`\beth0\b`)
	subst := func(s string) string {
		s = eth0.ReplaceAllString(s, values["eth0"])
		for k, v := range values {
			s = strings.ReplaceAll(s, k, v)
		}
		return s
	}
	cleanupPins(t, tb.ServerIf)
	h := newHost(t, tb.Server)
	dir := t.TempDir()
	rcv, err := tb.NewReceiver(agenttest.UDPPort, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rcv.Close() })
	snd, err := tb.NewSender()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { snd.Close() })
	send := func(src netip.Addr) int {
		t.Helper()
		before := rcv.Count(src)
		frame := netns.UDP4(tb.ServerMAC, tb.ClientMAC, src, netns.ServerAddr4, 40000, agenttest.UDPPort, netns.Payload(1, 64))
		if sent, _, err := snd.Send([][]byte{frame}, frames, time.Now().Add(time.Minute), 0); err != nil || sent[0] != frames {
			t.Fatalf("sent %v of %d frames from %s: %v", sent, frames, src, err)
		}
		rcv.Settle(100*time.Millisecond, 10*time.Second)
		return rcv.Count(src) - before
	}

	all := steps(t, text)
	var install []readmedoc.Block
	for _, b := range all[1] {
		if b.Under("From source") {
			install = append(install, b)
		}
	}
	h.step(dir, install, subst)
	var configs []readmedoc.Block
	for _, b := range all[2] {
		if b.Lang == "hcl" {
			configs = append(configs, b)
		}
	}
	if len(configs) != 1 {
		t.Fatalf("step 2 has %d hcl blocks, want the one first config", len(configs))
	}
	if err := os.WriteFile(h.file(configPath), []byte(subst(configs[0].Body)+"\n"), 0o640); err != nil {
		t.Fatalf("write the first config: %v", err)
	}
	h.step(dir, all[3], subst)
	h.step(dir, all[4], subst)

	// Monitor mode: everything arrives; the test address's frames are counted as would_drop.
	if got := send(test); got != frames {
		t.Errorf("monitor mode: %d of %d frames from the blocked test address arrived, want all", got, frames)
	}
	if got := send(mgmt); got != frames {
		t.Errorf("monitor mode: %d of %d frames from the management address arrived, want all", got, frames)
	}
	st := h.status()
	if st.Mode != "monitor" || st.Packets["would_drop"]["blocklist"] != frames || sum(st.Packets["drop"]) != 0 {
		t.Errorf("monitor mode: status mode %q, would_drop %v, drop %v; want monitor, blocklist %d, none", st.Mode, st.Packets["would_drop"], st.Packets["drop"], frames)
	}
	if len(st.Interfaces) != 1 || st.Interfaces[0].Name != tb.ServerIf {
		t.Errorf("status interfaces %+v, want %s", st.Interfaces, tb.ServerIf)
	}

	h.step(dir, all[5], subst)
	// Enforce: the test address's frames are dropped, the management address's arrive.
	if got := send(test); got != 0 {
		t.Errorf("enforce: %d of %d frames from the blocked test address arrived, want none", got, frames)
	}
	if got := send(mgmt); got != frames {
		t.Errorf("enforce: %d of %d frames from the management address arrived, want all", got, frames)
	}
	st = h.status()
	if st.Mode != "enforce" || st.Packets["drop"]["blocklist"] != frames || st.Packets["would_drop"]["blocklist"] != frames {
		t.Errorf("enforce: status mode %q, drop %v, would_drop %v; want enforce, blocklist %d each", st.Mode, st.Packets["drop"], st.Packets["would_drop"], frames)
	}
	if id, err := tb.ServerXDPProgID(); err != nil || id == 0 {
		t.Errorf("no XDP program on %s (id %d, %v)", tb.ServerIf, id, err)
	}
}

func sum(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

// cleanupPins registers the removal of what the runbook's agent leaves
// behind (fail-static): the program and pins of iface under the default
// pin_dir, and that directory if the test made it.
func cleanupPins(t *testing.T, iface string) {
	_, err := os.Stat(pinRoot)
	made := os.IsNotExist(err)
	t.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(pinRoot, iface)); err == nil {
			if out, err := exec.Command(agenttest.Bin, "detach", "--interface", iface, "--pin-dir", pinRoot).CombinedOutput(); err != nil {
				t.Errorf("cleanup: detach: %v: %s", err, out)
			}
		}
		if made {
			_ = os.Remove(pinRoot) // only if empty: another agent's pins stay
		}
	})
}
