package fleet_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/test/agenttest"
	testbed "github.com/bulwark-filter/bulwark/test/fleet"
	"github.com/bulwark-filter/bulwark/test/fleetbench"
)

// coldEnv names the environment variable that turns
// TestFleetColdSyncAgentBench on: the file its figures are written to, as
// JSON. make bench sets it.
const coldEnv = "BULWARK_FLEET_COLD_AGENT_OUT"

// coldFigures is what one cold sync of a real agent measured.
type coldFigures struct {
	Verdicts int `json:"verdicts"`
	Servers  int `json:"servers"`
	Replicas int `json:"replicas"`
	// MapSize is the agent's verdict map's size.
	MapSize int `json:"verdict_map_size"`
	// FillSeconds is how long the publisher took to fill the bucket.
	FillSeconds float64 `json:"fill_seconds"`
	// ReadySeconds is from the agent's start to its answer on the control
	// socket; KernelSeconds from its start to every verdict in force in
	// its kernel verdict map, counted in the kernel.
	ReadySeconds  float64 `json:"ready_seconds"`
	KernelSeconds float64 `json:"kernel_seconds"`
	// AgentCPUSeconds is the agent's CPU time (user + system, every
	// thread) from its start to then.
	AgentCPUSeconds float64 `json:"agent_cpu_seconds"`
	// AuditRecords is the count of the audit log's records of fleet
	// verdicts applied (one per verdict).
	AuditRecords int `json:"audit_records"`
}

// syncedUpTo is the largest cold sync that coldSyncAgent waits to see in
// sync with the bucket's digest: fleet status reads the whole bucket for
// it within a time limit, which 1M verdicts may not fit (docs/fleet.md,
// limits); above it, a digest it does read must match.
const syncedUpTo = 100_000

// coldSyncAgent fills a bucket of a 3-server cluster with count active
// verdicts (test/fleet/publisher: through the real fleet client, or with
// raw straight into the bucket), then starts a new agent (verdict map of
// mapSize(count)) and times it until the kernel verdict map holds every
// verdict; it checks that the agent's audit log has one record per
// verdict applied and that the agent has every verdict active, no lag,
// and (up to syncedUpTo verdicts) the bucket's digest.
func coldSyncAgent(t *testing.T, count int, raw bool, fillFor time.Duration) coldFigures {
	n := mapSize(count)
	cfg := func(int) agenttest.Config {
		return agenttest.Config{IPv6Prefix: 128, Maps: agenttest.Sizes{Verdicts: n}}
	}
	fl := func(int) string {
		return fmt.Sprintf("  issuer_rate  = 1000000\n  issuer_burst = %d\n  max_active   = %d\n  buffer       = 1000\n", count, n)
	}
	b := testbed.New(t, testbed.Options{Servers: 3, Agents: 1, Config: cfg, Fleet: fl})
	host := b.Host()
	ctx, cancel := context.WithTimeout(context.Background(), fillFor+time.Minute)
	defer cancel()
	args := []string{"netns", "exec", host, testbed.Publisher, "-servers", strings.Join(b.URLs(), ","),
		"-node", "filler", "-count", strconv.Itoa(count), "-v6", "-timeout", fillFor.String()}
	if raw {
		args = append(args, "-raw", "-issuers", "100")
	}
	fillStart := time.Now()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("publisher: %v: %s", err, out)
	}
	f := coldFigures{Verdicts: count, Servers: len(b.Servers), Replicas: b.Replicas(), MapSize: n,
		FillSeconds: time.Since(fillStart).Seconds()}
	t.Logf("%s", strings.TrimSpace(string(out)))
	a := b.Agents[0]
	start := time.Now()
	a.Start()
	f.ReadySeconds = time.Since(start).Seconds()
	// Counted in the kernel map, read through the pin in batches, once
	// the audit log (written after the kernel, in each batch) has a
	// record for every verdict: a walk of the whole map every poll would
	// take a good part of a CPU from the agent. Fleet status reads the
	// whole bucket for its digest, so it is asked once, after.
	vs := a.OpenVerdicts(128)
	tail := &auditTail{path: a.Audit}
	defer tail.close()
	var got int
	agenttest.WaitFor(t, 10*time.Minute, fmt.Sprintf("%d verdicts in the kernel map", count), func() bool {
		n, err := tail.records()
		if err != nil {
			t.Fatal(err)
		}
		if n < count {
			return false
		}
		if got, err = vs.Count(); err != nil {
			t.Fatal(err)
		}
		return got == count
	})
	f.KernelSeconds = time.Since(start).Seconds()
	cpu, err := testbed.ProcessCPU(a.Proc.Cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	f.AgentCPUSeconds = cpu.Seconds()
	t.Logf("all %d verdicts in the kernel map %.2f s after the agent's start (answering after %.2f s), agent CPU %.2f s",
		count, f.KernelSeconds, f.ReadySeconds, f.AgentCPUSeconds)
	if count <= syncedUpTo {
		converge(t, b, time.Now(), 10*time.Minute, count)
	} else {
		asked := time.Now()
		s := a.FleetStatus()
		if s.Active != count || s.Lag != 0 {
			t.Errorf("fleet status after the cold sync: %d active, lag %d; want %d, 0", s.Active, s.Lag, count)
		}
		// Its read of the whole bucket may not fit its time limit here
		// (docs/fleet.md, limits); when it does, the digests must match.
		switch {
		case s.BucketError != "":
			t.Logf("fleet status (%.2f s) could not read the bucket's digest: %s", time.Since(asked).Seconds(), s.BucketError)
		case !s.InSync:
			t.Errorf("fleet status after the cold sync: digest %s, the bucket's %s: not in sync", s.Digest, s.BucketDigest)
		default:
			t.Logf("fleet status (%.2f s): in sync with the bucket", time.Since(asked).Seconds())
		}
	}
	f.AuditRecords = fleetAuditRecords(t, a.Audit)
	if f.AuditRecords != count {
		t.Errorf("the audit log has %d records of fleet verdicts applied, want one per verdict: %d", f.AuditRecords, count)
	}
	return f
}

// auditTail counts the records of fleet verdicts in an audit log as it
// grows: each call reads only what was appended since the last. It counts
// the who of every fleet record (an error's too), a bound that the kernel
// count after it confirms; fleetAuditRecords checks each record in full.
type auditTail struct {
	path string
	f    *os.File
	n    int
	part []byte // the last line read, not ended yet
	buf  []byte
}

// fleetWho starts the who of a record of a fleet verdict.
var fleetWho = []byte(`"who":"fleet:`)

// records is the count of fleet records that the log holds so far (0
// while there is no log).
func (a *auditTail) records() (int, error) {
	if a.f == nil {
		f, err := os.Open(a.path)
		if errors.Is(err, fs.ErrNotExist) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		a.f, a.buf = f, make([]byte, 1<<20)
	}
	for {
		k, err := a.f.Read(a.buf)
		data := append(a.part, a.buf[:k]...)
		end := bytes.LastIndexByte(data, '\n') + 1
		a.n += bytes.Count(data[:end], fleetWho)
		a.part = append(a.part[:0], data[end:]...)
		if errors.Is(err, io.EOF) || k == 0 {
			return a.n, nil
		}
		if err != nil {
			return 0, fmt.Errorf("audit log: %w", err)
		}
	}
}

func (a *auditTail) close() {
	if a.f != nil {
		a.f.Close()
	}
}

// fleetAuditRecords counts the audit log's records of fleet verdicts
// applied: result ok, who fleet:<issuer>.
func fleetAuditRecords(t *testing.T, path string) int {
	t.Helper()
	file, err := os.Open(path)
	if err != nil {
		t.Fatalf("audit log: %v", err)
	}
	defer file.Close()
	n := 0
	sc := bufio.NewScanner(file)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.Contains(line, []byte(`"who":"fleet:`)) {
			continue
		}
		var r struct{ Who, What, Result string }
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("audit log: %v: %q", err, line)
		}
		if strings.HasPrefix(r.Who, "fleet:") && r.What == "fleet.block" && r.Result == "ok" {
			n++
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("audit log: %v", err)
	}
	return n
}

// Scenario 6, second half: a new agent cold-syncs a bucket of 20,000 active
// verdicts (100,000 at full size), published by the real fleet client
// (test/fleet/publisher) from a host of the fabric; the 1M of the issue is
// TestFleetColdSyncAgentBench's, in make bench.
func TestFleetColdSync(t *testing.T) {
	count := pick(20_000, 100_000)
	f := coldSyncAgent(t, count, false, pick(150*time.Second, 11*time.Minute))
	summary(t, "a new agent cold-synced %d verdicts: all in its kernel map %.2f s after it was started (answering after %.2f s, "+
		"%.2f CPU-s), then in sync with the bucket; %d audit records", count, f.KernelSeconds, f.ReadySeconds, f.AgentCPUSeconds, f.AuditRecords)
}

// TestFleetColdSyncAgentBench measures the cold sync of -fleet.coldsync
// verdicts by a real agent (a `bulwark run` with XDP on its veth, its
// verdict map sized for them, its audit log on) against a 3-node cluster:
// from the agent's start to every verdict in its kernel map. The bucket is
// filled straight (publisher -raw). It writes the figures where coldEnv
// says; it runs only in make bench.
func TestFleetColdSyncAgentBench(t *testing.T) {
	out := os.Getenv(coldEnv)
	if out == "" {
		t.Skipf("SKIP: set %s=FILE to measure a real agent's cold sync of %d verdicts (make bench does)", coldEnv, *fleetbench.ColdSync)
	}
	f := coldSyncAgent(t, *fleetbench.ColdSync, true, 20*time.Minute)
	t.Logf("cold sync of a real agent: %+v", f)
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, append(data, '\n'), 0o644); err != nil {
		t.Fatalf("write the figures: %v", err)
	}
}
