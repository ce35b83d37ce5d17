package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/bulwark-filter/bulwark/bpf"
	"github.com/bulwark-filter/bulwark/loader"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/agenttest"
	"github.com/bulwark-filter/bulwark/test/bench/nft"
)

// listLoadEnv names the environment variable that turns TestListLoad1M on:
// the file its figures are written to, as JSON. make bench sets it.
const listLoadEnv = "BULWARK_LISTLOAD_OUT"

// listLoadFigures is what TestListLoad1M measured, one figure per run.
type listLoadFigures struct {
	Entries      int       `json:"entries"`        // lines of the list file (90 % hosts, 10 % prefixes)
	Changed      int       `json:"changed"`        // lines replaced before the reload
	StartS       []float64 `json:"start_s"`        // `bulwark run` until its control socket answers: every entry is in the kernel
	EmptyStartS  []float64 `json:"empty_start_s"`  // the same with an empty list file (program load, attach)
	ReloadS      []float64 `json:"reload_s"`       // `bulwark reload` after Changed lines changed, until it returns
	IdleRSSMiB   []float64 `json:"idle_rss_mib"`   // VmRSS of the agent with the empty list file
	RSSMiB       []float64 `json:"rss_mib"`        // VmRSS after the start with the list
	ReloadRSSMiB []float64 `json:"reload_rss_mib"` // VmRSS after the reload
	HWMMiB       []float64 `json:"hwm_mib"`        // VmHWM (peak) after the reload
	NftLoadS     []float64 `json:"nft_load_s"`     // `nft -f` of the same list as one interval set
	NftReloadS   []float64 `json:"nft_reload_s"`   // `nft -f` flushing the set and adding the changed list, one transaction
	NftMaxRSSMiB []float64 `json:"nft_maxrss_mib"` // nft's peak RSS over the two
}

// listLines is the list file of entries: hosts as bare addresses, prefixes
// as CIDRs (also the elements nft is given).
func listLines(es []maps.Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		if e.Prefix.IsSingleIP() {
			out[i] = e.Prefix.Addr().String()
		} else {
			out[i] = e.Prefix.String()
		}
	}
	return out
}

// changeHosts replaces n host lines (after the prefixes nft.Entries puts
// first) with hosts of 160.0.0.0/8, which no other line overlaps.
func changeHosts(lines []string, from, n int) []string {
	out := append([]string(nil), lines...)
	for i := range n {
		v := uint32(160)<<24 | uint32(i)
		out[from+i] = netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}).String()
	}
	return out
}

func writeLines(path string, lines []string, head, sep, tail string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString(head)
	for i, l := range lines {
		if i > 0 {
			w.WriteString(sep)
		}
		w.WriteString(l)
	}
	w.WriteString(tail)
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// timeNFT runs `nft -f file` in the server namespace and returns its wall
// time and peak RSS.
func timeNFT(ns, file string) (time.Duration, float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "nft", "-f", file)
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(t0)
	if err != nil {
		return 0, 0, fmt.Errorf("nft -f %s: %v: %.500s", file, err, out)
	}
	var maxRSS float64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		maxRSS = float64(ru.Maxrss) / 1024 // KiB
	}
	return d, maxRSS, nil
}

// countPinned counts the entries of a pinned map of IPv4 keys and list
// values.
func countPinned(path string) (int, error) {
	m, err := ebpf.LoadPinnedMap(path, nil)
	if err != nil {
		return 0, err
	}
	defer m.Close()
	n, err := countEntries[[4]byte, bpf.BulwarkListValue](m)
	if err != nil {
		return n, fmt.Errorf("count %s: %w", path, err)
	}
	return n, nil
}

// startTimed spawns the agent and returns the time until its control socket
// answers a status request: the agent writes its lists before it serves.
func startTimed(t *testing.T, e *agenttest.Env) (*agenttest.Agent, time.Duration) {
	t.Helper()
	client := agenttest.SocketClient(e.Sock, time.Second)
	t0 := time.Now()
	a := e.Spawn("")
	deadline := t0.Add(60 * time.Second)
	for {
		if resp, err := client.Get("http://bulwark/v1/status"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return a, time.Since(t0)
			}
		}
		if a.Exited() {
			t.Fatalf("agent exited (%v):\n%s", a.Err, a.LogText())
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent not serving after 60 s:\n%s", a.LogText())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stopAndUnpin stops the agent and removes its program and pins, so the
// next start loads into empty maps.
func stopAndUnpin(t *testing.T, e *agenttest.Env, a *agenttest.Agent) {
	t.Helper()
	a.Kill()
	if out, err := exec.Command(agenttest.Bin, "detach", "--interface", e.TB.ServerIf, "--pin-dir", e.PinRoot).CombinedOutput(); err != nil {
		t.Fatalf("detach: %v: %s", err, out)
	}
	if err := os.RemoveAll(e.PinRoot); err != nil {
		t.Fatal(err)
	}
}

// TestListLoad1M measures the agent's path for a large list file (the
// issue's "load on the agent path"): a config whose block list file has 1M
// lines (nft.Entries: 90 % /32 hosts, 10 % prefixes), timed from `bulwark
// run` to "every entry in the kernel" (its control socket answers; it
// writes its lists first), and `bulwark reload` after 10 % of the lines
// changed, with the agent's VmRSS and VmHWM; beside it `nft -f` of the
// same list as one interval set in the testbed's server namespace, and a
// reload of it (flush the set and add the changed list, one transaction).
// The kernel's entries are counted in the pinned maps after each step. A
// start with an empty list file says what the program's load costs alone.
//
// It takes a few minutes and 1 GB (nft -f of 1M elements takes 15 s or more
// each time; each nft run is bounded by 10 min), so it runs only when listLoadEnv
// names the file for its figures (make bench sets it); `make test` skips it.
func TestListLoad1M(t *testing.T) {
	out := benchOnly(t, listLoadEnv, "time the agent's load of a 1M-line list file")
	const (
		n    = 1_000_000
		runs = 3
	)
	es := nft.Entries(n, 1)
	lines := listLines(es)
	hosts := 0
	for _, e := range es {
		if e.Prefix.IsSingleIP() {
			hosts++
		}
	}
	changed := n / 10
	from := n - hosts // the first host line
	reloaded := changeHosts(lines, from, changed)
	f := listLoadFigures{Entries: n, Changed: changed}
	const mib = 1 << 20
	for run := range runs {
		e := agenttest.NewEnv(t, agenttest.Options{DirPrefix: "bwk-ll-"})
		list := filepath.Join(e.Dir, "block.txt")
		if err := os.WriteFile(list, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		e.WriteConfig("", agenttest.Config{
			Maps:       agenttest.Sizes{BlockHosts: 1 << 20, BlockPrefixes: 1 << 17},
			BlockFiles: []string{list},
		})
		a, d := startTimed(t, e)
		f.EmptyStartS = append(f.EmptyStartS, d.Seconds())
		idle, _, err := procMemory(a.Cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		f.IdleRSSMiB = append(f.IdleRSSMiB, float64(idle)/mib)
		stopAndUnpin(t, e, a)

		if err := writeLines(list, lines, "", "\n", "\n"); err != nil {
			t.Fatal(err)
		}
		a, d = startTimed(t, e)
		f.StartS = append(f.StartS, d.Seconds())
		hosts4 := filepath.Join(loader.PinDir(e.PinRoot, e.TB.ServerIf), maps.MapBlockHosts4)
		if got, err := countPinned(hosts4); err != nil || got != hosts {
			t.Fatalf("after the start the block hosts map holds %d entries (%v), want %d", got, err, hosts)
		}
		rss, _, err := procMemory(a.Cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		f.RSSMiB = append(f.RSSMiB, float64(rss)/mib)

		if err := writeLines(list, reloaded, "", "\n", "\n"); err != nil {
			t.Fatal(err)
		}
		// The CLI waits up to 60 s for the agent's answer; RunBin would give up after 30 s.
		t0 := time.Now()
		if r, err := agenttest.Exec(2*time.Minute, "--socket", e.Sock, "reload"); err != nil || r.Code != 0 {
			t.Fatalf("reload: %s (%v)", r, err)
		}
		f.ReloadS = append(f.ReloadS, time.Since(t0).Seconds())
		if got, err := countPinned(hosts4); err != nil || got != hosts {
			t.Fatalf("after the reload the block hosts map holds %d entries (%v), want %d", got, err, hosts)
		}
		rss, hwm, err := procMemory(a.Cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		f.ReloadRSSMiB = append(f.ReloadRSSMiB, float64(rss)/mib)
		f.HWMMiB = append(f.HWMMiB, float64(hwm)/mib)
		stopAndUnpin(t, e, a)

		nftFile := filepath.Join(e.Dir, "block.nft")
		head := "table ip bwkload {\n\tset block { type ipv4_addr; flags interval; elements = {\n"
		if err := writeLines(nftFile, lines, head, ",\n", "\n\t}; }\n}\n"); err != nil {
			t.Fatal(err)
		}
		d, rss1, err := timeNFT(e.TB.Server, nftFile)
		if err != nil {
			t.Fatal(err)
		}
		head = "flush set ip bwkload block\nadd element ip bwkload block {\n"
		if err := writeLines(nftFile, reloaded, head, ",\n", "\n}\n"); err != nil {
			t.Fatal(err)
		}
		d2, rss2, err := timeNFT(e.TB.Server, nftFile)
		if err != nil {
			t.Fatal(err)
		}
		f.NftLoadS, f.NftReloadS = append(f.NftLoadS, d.Seconds()), append(f.NftReloadS, d2.Seconds())
		f.NftMaxRSSMiB = append(f.NftMaxRSSMiB, max(rss1, rss2))
		t.Logf("run %d: start %.2f s (empty file %.2f s), reload %.2f s, VmRSS %.1f MiB (idle %.1f), after reload %.1f MiB, "+
			"VmHWM %.1f MiB; nft -f %.2f s, its reload %.2f s",
			run+1, f.StartS[run], f.EmptyStartS[run], f.ReloadS[run], f.RSSMiB[run], f.IdleRSSMiB[run], f.ReloadRSSMiB[run],
			f.HWMMiB[run], f.NftLoadS[run], f.NftReloadS[run])
		_, _ = exec.Command("ip", "netns", "exec", e.TB.Server, "nft", "delete", "table", "ip", "bwkload").CombinedOutput()
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
		t.Fatalf("write the figures: %v", err)
	}
}
