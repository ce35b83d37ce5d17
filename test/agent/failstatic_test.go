package agent_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/test/agenttest"
)

// TestPinsPersistence starts the real agent in the server namespace both
// ways an operator does, and SIGKILLs it. Under `nsenter --net` it shares
// the host's bpffs (also from a mount namespace of its own that copies the
// host's mounts): status and metric say the pins are persistent, and after
// the kill the pins, the program and the block stay. Under `ip netns
// exec` it gets a private /sys and mounts a bpffs of its own: it says
// loudly that fail-static is off, and the kill proves it: the program is
// gone from the interface and the blocked source gets through.
func TestPinsPersistence(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		enter      func(ns string) []string
		args       []string
		persistent bool
	}{
		// --require-persistent-pins must not refuse the good setup.
		{"nsenter --net", func(ns string) []string { return []string{"nsenter", "--net=/var/run/netns/" + ns} },
			[]string{"--require-persistent-pins"}, true},
		// A mount namespace of its own (as systemd's PrivateTmp= gives),
		// holding a copy of the host's bpffs mount: the same bpffs.
		{"unshare --mount, nsenter --net", func(ns string) []string {
			return []string{"unshare", "--mount", "--propagation", "slave", "nsenter", "--net=/var/run/netns/" + ns}
		}, nil, true},
		{"ip netns exec", func(ns string) []string { return []string{"ip", "netns", "exec", ns} }, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			blocked, other := agenttest.Addr("198.18.66.6"), agenttest.Addr("198.18.5.5")
			e.WriteConfig("", agenttest.Config{Block: []string{blocked.String() + "/32"}})
			a := e.SpawnVia(tc.enter(e.TB.Server), "", tc.args...)
			e.WaitReady(a, func() bool { return e.CLI("status", "--json").Code == 0 })

			want, warned := 0.0, "FAIL-STATIC IS OFF"
			if tc.persistent {
				want = 1
			}
			if got := strings.Contains(a.LogText(), warned); got == tc.persistent {
				t.Errorf("log has %q: %v, want %v:\n%s", warned, got, !tc.persistent, a.LogText())
			}
			var st struct {
				Interfaces []struct {
					Name           string `json:"name"`
					PinsPersistent bool   `json:"pins_persistent"`
					PinsDetail     string `json:"pins_detail"`
				} `json:"interfaces"`
			}
			if out := e.MustCLI("status", "--json"); json.Unmarshal([]byte(out), &st) != nil || len(st.Interfaces) != 1 {
				t.Fatalf("status --json: %q, want one interface", out)
			}
			is := st.Interfaces[0]
			if is.PinsPersistent != tc.persistent || (!tc.persistent && !strings.Contains(is.PinsDetail, "nsenter --net")) {
				t.Errorf("status: %+v, want pins_persistent %v (and the fix in pins_detail when false)", is, tc.persistent)
			}
			if got := strings.Contains(e.MustCLI("status"), "WARNING: fail-static is off"); got == tc.persistent {
				t.Errorf("status text warns: %v, want %v", got, !tc.persistent)
			}
			if got := e.Metrics().Get("bulwark_pins_persistent", "interface", e.TB.ServerIf); got != want {
				t.Errorf("bulwark_pins_persistent = %v, want %v", got, want)
			}

			// The agent pinned the link in the bpffs it sees; the host sees
			// it only when that is the host's bpffs.
			link := filepath.Join(e.PinRoot, e.TB.ServerIf, "link")
			if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(a.Cmd.Process.Pid), "root", link)); err != nil {
				t.Fatalf("the agent's own view of its link pin: %v", err)
			}
			if _, err := os.Stat(link); (err == nil) != tc.persistent {
				t.Errorf("link pin %s in the host's bpffs: %v, want present %v", link, err, tc.persistent)
			}
			prog, err := e.TB.ServerXDPProgID()
			if err != nil || prog == 0 {
				t.Fatalf("no XDP program attached (id %d, %v)", prog, err)
			}
			if got := e.Send(blocked, 20); got != 0 {
				t.Fatalf("agent running: %d of 20 frames from the blocked source delivered, want 0", got)
			}
			if got := e.Send(other, 20); got != 20 {
				t.Fatalf("agent running: %d of 20 frames from an unblocked source delivered, want 20", got)
			}

			if err := a.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			if !a.Wait(10 * time.Second) {
				t.Fatal("agent did not die on SIGKILL")
			}
			if tc.persistent {
				if id, err := e.TB.ServerXDPProgID(); err != nil || id != prog {
					t.Fatalf("after SIGKILL: XDP program %d (%v), want %d still attached", id, err, prog)
				}
				if _, err := os.Stat(link); err != nil {
					t.Fatalf("after SIGKILL: link pin: %v", err)
				}
				if got := e.Send(blocked, 20); got != 0 {
					t.Fatalf("after SIGKILL: %d of 20 frames from the blocked source delivered, want 0", got)
				}
				return
			}
			// The agent's mount namespace, its bpffs and the pinned link go
			// with it; the kernel detaches the program as the link is freed.
			agenttest.WaitFor(t, 30*time.Second, "the XDP program to go with the agent's mount namespace", func() bool {
				id, err := e.TB.ServerXDPProgID()
				return err == nil && id == 0
			})
			if got := e.Send(blocked, 20); got != 20 {
				t.Fatalf("after SIGKILL: %d of 20 frames from the blocked source delivered, want all 20 (no filter left)", got)
			}
		})
	}
}

// TestRequirePersistentPins: with --require-persistent-pins the agent
// started by `ip netns exec` refuses to start, and attaches nothing.
func TestRequirePersistentPins(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.WriteConfig("", agenttest.Config{})
	a := e.SpawnVia([]string{"ip", "netns", "exec", e.TB.Server}, "", "--require-persistent-pins")
	if !a.Wait(60 * time.Second) {
		t.Fatalf("agent still running:\n%s", a.LogText())
	}
	if a.ExitCode() == 0 || !strings.Contains(a.LogText(), "would not outlive the agent (--require-persistent-pins)") {
		t.Fatalf("exit %d, want non-zero with the reason:\n%s", a.ExitCode(), a.LogText())
	}
	if id, err := e.TB.ServerXDPProgID(); err != nil || id != 0 {
		t.Fatalf("XDP program %d (%v) attached by a refused agent, want none", id, err)
	}
}
