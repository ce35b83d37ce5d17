package loader

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// PinsFix is what to do when the pins would not outlive the agent.
const PinsFix = "start the agent in the host's mount namespace, e.g. `nsenter --net=/run/netns/NAME bulwark run ...` " +
	"instead of `ip netns exec NAME bulwark run ...` (which gives it a private /sys), or bind the host's bpffs " +
	"(/sys/fs/bpf) into its mount namespace with slave or shared propagation"

// PinPersistence says whether the pins in a directory outlive the process
// that made them: whether fail-static holds.
type PinPersistence struct {
	// Persistent is true when the bpffs holding the pins is also mounted
	// where the agent's death does not unmount it: in the mount namespace of
	// PID 1, or as a slave of a mount in another namespace (a bind of the
	// host's bpffs, e.g. a Kubernetes hostPath with HostToContainer
	// propagation). Otherwise the bpffs goes with the agent's own mount
	// namespace, and with it the pins, the attached program and the maps.
	Persistent bool
	// Detail says how that was found out, or why the pins are not known to
	// outlive the agent and what to do (PinsFix).
	Detail string
}

// CheckPinPersistence finds out whether the pins under dir, a directory on
// a bpffs, outlive the calling process. It compares the bpffs's device (one
// per bpffs instance, unique across mount namespaces) with the mounts that
// PID 1 sees in /proc/1/mountinfo, which needs no ptrace access to PID 1.
// When the caller is PID 1 itself (a container's entry point), only its own
// mount's propagation can show that the bpffs comes from outside.
func CheckPinPersistence(dir string) PinPersistence {
	return checkPinPersistence(dir, "/proc/self/mountinfo", "/proc/1/mountinfo", os.Getpid())
}

func checkPinPersistence(dir, selfInfo, initInfo string, pid int) PinPersistence {
	no := func(format string, args ...any) PinPersistence {
		return PinPersistence{Detail: fmt.Sprintf(format, args...) + "; " + PinsFix}
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil {
		return no("statfs %s: %v", dir, err)
	}
	if sfs.Type != unix.BPF_FS_MAGIC {
		return no("%s is not on a bpffs", dir)
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return no("stat %s: %v", dir, err)
	}
	dev := fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))
	if pid != 1 {
		ms, err := readMountinfo(initInfo)
		if err != nil {
			return no("cannot tell whether the bpffs holding %s (device %s) outlives the agent: %v", dir, dev, err)
		}
		if m, ok := findBPFFS(ms, dev, false); ok {
			return PinPersistence{Persistent: true, Detail: fmt.Sprintf(
				"the bpffs holding %s (device %s) is mounted in PID 1's mount namespace at %s", dir, dev, m.point)}
		}
	}
	ms, err := readMountinfo(selfInfo)
	if err != nil {
		return no("cannot tell whether the bpffs holding %s (device %s) outlives the agent: %v", dir, dev, err)
	}
	if m, ok := findBPFFS(ms, dev, true); ok {
		return PinPersistence{Persistent: true, Detail: fmt.Sprintf(
			"the bpffs holding %s (device %s) at %s is a slave of peer group %s, a mount outside the agent's namespace",
			dir, dev, m.point, m.master)}
	}
	if pid == 1 {
		return no("the agent is PID 1 of its PID namespace and its bpffs at %s (device %s) is not a slave of a mount "+
			"outside: nothing shows that the pins outlive the agent", dir, dev)
	}
	why := ""
	if self, err1 := os.Readlink("/proc/self/ns/mnt"); err1 == nil {
		if pid1, err2 := os.Readlink("/proc/1/ns/mnt"); err2 == nil && self != pid1 {
			why = fmt.Sprintf(" (the agent's mount namespace is %s, PID 1's %s)", self, pid1)
		}
	}
	return no("the bpffs holding %s (device %s) is not mounted in PID 1's mount namespace%s: it is unmounted when "+
		"the agent's mount namespace ends, with the agent, and the pins, the attached program and the blocked "+
		"sources go with it", dir, dev, why)
}

// mount is one line of a mountinfo file.
type mount struct {
	dev    string // major:minor of the filesystem
	point  string // the mount point, octal escapes kept
	fstype string
	master string // N of an optional master:N field, the peer group this mount is a slave of
}

func readMountinfo(path string) ([]mount, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ms, err := parseMountinfo(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return ms, nil
}

// parseMountinfo reads the format of proc(5)'s /proc/PID/mountinfo:
// "ID PARENT MAJOR:MINOR ROOT POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE
// SUPEROPTIONS". Fields never hold blanks (the kernel escapes them as
// \040). A line it cannot read is skipped.
func parseMountinfo(r io.Reader) ([]mount, error) {
	var ms []mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 9 {
			continue
		}
		m := mount{dev: f[2], point: f[4]}
		for i := 6; i+1 < len(f); i++ {
			if f[i] == "-" {
				m.fstype = f[i+1]
				break
			}
			if g, ok := strings.CutPrefix(f[i], "master:"); ok {
				m.master = g
			}
		}
		if m.fstype != "" {
			ms = append(ms, m)
		}
	}
	return ms, sc.Err()
}

// findBPFFS is the first bpffs mount of device dev in ms; with slave, the
// first that is a slave of a peer group.
func findBPFFS(ms []mount, dev string, slave bool) (mount, bool) {
	for _, m := range ms {
		if m.dev == dev && m.fstype == "bpf" && (!slave || m.master != "") {
			return m, true
		}
	}
	return mount{}, false
}
