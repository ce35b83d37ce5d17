package fleet

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// LinkBytes are the bytes a fabric link carried each way, counted on its
// fabric end (the bridge's port): ToNode went into the node's namespace,
// FromNode came out of it.
type LinkBytes struct{ ToNode, FromNode uint64 }

// FabricBytes reads the byte counters of every link on the fabric, by the
// name of its fabric end: "n<i>" for server i, "a<i>" for agent i, "h<i>"
// for Host i (see link).
func (b *Bed) FabricBytes() (map[string]LinkBytes, error) {
	out, err := exec.Command("ip", "-j", "-s", "-n", b.Fabric, "link", "show").Output()
	if err != nil {
		return nil, fmt.Errorf("ip -s link show in %s: %w", b.Fabric, err)
	}
	var links []struct {
		Name  string `json:"ifname"`
		Stats struct {
			RX struct {
				Bytes uint64 `json:"bytes"`
			} `json:"rx"`
			TX struct {
				Bytes uint64 `json:"bytes"`
			} `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &links); err != nil {
		return nil, fmt.Errorf("ip -j -s link show in %s: %w", b.Fabric, err)
	}
	m := make(map[string]LinkBytes, len(links))
	for _, l := range links {
		// The fabric end transmits toward the node and receives from it.
		m[l.Name] = LinkBytes{ToNode: l.Stats.TX.Bytes, FromNode: l.Stats.RX.Bytes}
	}
	return m, nil
}

// userHZ is the unit of /proc/PID/stat's CPU times: USER_HZ, 100 on Linux
// whatever the kernel's own tick.
const userHZ = 100

// ProcessCPU is the CPU time (user and system, every thread) process pid
// has used, from /proc/PID/stat, in units of 10 ms.
func ProcessCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu time of %d: %w", pid, err)
	}
	// The command name, in parentheses, may hold spaces: the fields
	// after it start at state (the 3rd); utime and stime are the 14th and
	// 15th.
	i := strings.LastIndexByte(string(b), ')')
	fs := strings.Fields(string(b[i+1:]))
	if i < 0 || len(fs) < 13 {
		return 0, fmt.Errorf("cpu time of %d: /proc/%d/stat: %q", pid, pid, b)
	}
	var ticks int64
	for _, f := range fs[11:13] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("cpu time of %d: /proc/%d/stat: %w", pid, pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// RunqueueWait is the time the threads of process pid (those alive now)
// have spent runnable but waiting for a CPU, from
// /proc/PID/task/*/schedstat (its second field, ns).
func RunqueueWait(pid int) (time.Duration, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, fmt.Errorf("run-queue wait of %d: %w", pid, err)
	}
	var sum time.Duration
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, task.Name()))
		if errors.Is(err, os.ErrNotExist) {
			continue // the thread ended meanwhile
		}
		if err != nil {
			return 0, fmt.Errorf("run-queue wait of %d: %w", pid, err)
		}
		fs := strings.Fields(string(b))
		if len(fs) < 2 {
			return 0, fmt.Errorf("run-queue wait of %d: schedstat %q", pid, b)
		}
		ns, err := strconv.ParseInt(fs[1], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("run-queue wait of %d: schedstat: %w", pid, err)
		}
		sum += time.Duration(ns)
	}
	return sum, nil
}
