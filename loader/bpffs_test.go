package loader

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseMountinfo(t *testing.T) {
	in := "22 26 0:21 / /sys rw,nosuid shared:7 - sysfs sysfs rw\n" +
		"44 22 0:39 / /sys/fs/bpf rw,relatime shared:9 master:3 - bpf bpf rw,mode=700\n" +
		"45 22 0:40 / /mnt/my\\040bpf rw - bpf none rw\n" +
		"garbage line\n" +
		"46 22 0:41 / /x rw no-separator here at all\n"
	got, err := parseMountinfo(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []mount{
		{dev: "0:21", point: "/sys", fstype: "sysfs"},
		{dev: "0:39", point: "/sys/fs/bpf", fstype: "bpf", master: "3"},
		{dev: "0:40", point: `/mnt/my\040bpf`, fstype: "bpf"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("parsed %v, want %v", got, want)
	}
	if m, ok := findBPFFS(got, "0:21", false); ok {
		t.Errorf("sysfs 0:21 found as a bpffs: %v", m)
	}
	if _, ok := findBPFFS(got, "0:40", true); ok {
		t.Error("0:40 found as a slave; it has no master field")
	}
	if m, ok := findBPFFS(got, "0:39", true); !ok || m.master != "3" {
		t.Errorf("0:39 as a slave: %v %v, want master 3", m, ok)
	}
}

// TestPinPersistence decides on a real bpffs directory with mountinfo
// files written for each case: the device is the directory's real one.
func TestPinPersistence(t *testing.T) {
	if os.Geteuid() != 0 { // testutil imports this package: no RequireRoot here
		t.Skip("needs root")
	}
	if err := EnsureBPFFS("/sys/fs/bpf"); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("/sys/fs/bpf", "bulwark-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	dev := fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))
	other := fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev)+1)
	files := t.TempDir()
	write := func(name string, lines ...string) string {
		p := filepath.Join(files, name)
		if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sysfs := "22 26 0:21 / /sys rw - sysfs sysfs rw"
	hostBPF := "44 22 " + dev + " / /sys/fs/bpf rw shared:9 - bpf bpf rw"
	privateBPF := "52 51 " + dev + " / /sys/fs/bpf rw - bpf bpf rw"
	slaveBPF := "52 51 " + dev + " / /sys/fs/bpf rw master:9 - bpf bpf rw"
	otherBPF := "44 22 " + other + " / /sys/fs/bpf rw - bpf bpf rw"
	notBPF := "44 22 " + dev + " / /sys/fs/bpf rw - tmpfs tmpfs rw"

	for _, c := range []struct {
		name       string
		self, pid1 []string
		pid        int
		persistent bool
		detail     string // a part of the detail
	}{
		{"same bpffs in PID 1's namespace", []string{sysfs, hostBPF}, []string{sysfs, hostBPF}, 4242, true, "mounted in PID 1's mount namespace at /sys/fs/bpf"},
		{"ip netns exec: a bpffs of its own", []string{sysfs, privateBPF}, []string{sysfs, otherBPF}, 4242, false, "is not mounted in PID 1's mount namespace"},
		{"PID 1 sees the device but not as bpf", []string{privateBPF}, []string{notBPF}, 4242, false, "nsenter --net"},
		{"a slave of a mount outside", []string{slaveBPF}, []string{otherBPF}, 4242, true, "slave of peer group 9"},
		{"agent is PID 1, host bpffs bound in as a slave", []string{slaveBPF}, []string{slaveBPF}, 1, true, "slave of peer group 9"},
		{"agent is PID 1, private bpffs", []string{privateBPF}, []string{privateBPF}, 1, false, "the agent is PID 1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := checkPinPersistence(dir, write("self", c.self...), write("pid1", c.pid1...), c.pid)
			if got.Persistent != c.persistent || !strings.Contains(got.Detail, c.detail) {
				t.Errorf("got %+v, want persistent %v with %q in the detail", got, c.persistent, c.detail)
			}
			if !got.Persistent && !strings.Contains(got.Detail, PinsFix) {
				t.Errorf("detail %q lacks the fix", got.Detail)
			}
		})
	}

	t.Run("PID 1's mountinfo unreadable", func(t *testing.T) {
		got := checkPinPersistence(dir, write("self", privateBPF), filepath.Join(files, "missing"), 4242)
		if got.Persistent || !strings.Contains(got.Detail, "cannot tell") {
			t.Errorf("got %+v, want not persistent, cannot tell", got)
		}
	})
	t.Run("not on a bpffs", func(t *testing.T) {
		got := checkPinPersistence(t.TempDir(), write("self", hostBPF), write("pid1", hostBPF), 4242)
		if got.Persistent || !strings.Contains(got.Detail, "is not on a bpffs") {
			t.Errorf("got %+v, want not persistent, not on a bpffs", got)
		}
	})
	// The real files: this test runs in PID 1's mount namespace (or one
	// that shares the host's bpffs), as `make test` does.
	t.Run("this process", func(t *testing.T) {
		if got := CheckPinPersistence(dir); !got.Persistent {
			t.Errorf("the host's bpffs: got %+v, want persistent", got)
		}
	})
}
