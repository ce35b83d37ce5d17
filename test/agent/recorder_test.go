package agent_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/test/agenttest"
	"github.com/google/gopacket/pcapgo"
)

// TestFlightRecorder: sampled drops land in pcapng files (0600) under
// events.dir/<interface>, and `bulwark capture` pulls live samples of one
// reason into a pcap with their original bytes.
func TestFlightRecorder(t *testing.T) {
	e := newEnv(t)
	dir := filepath.Join(e.Dir, "drops")
	e.WriteConfig("", agenttest.Config{Block: []string{"198.18.66.0/24"}, PPS: 50, Burst: 50,
		Extra: fmt.Sprintf("\nevents {\n  sample_every = 1\n  max_per_second = 10000\n  dir = %q\n}\n", dir)})
	e.Start()

	// A live capture of rate-limit drops, while both kinds of drop happen.
	out := filepath.Join(e.Dir, "ratelimited.pcap")
	done := make(chan agenttest.Result, 1)
	go func() {
		done <- agenttest.RunBin(t, "--socket", e.Sock, "capture", "--reason", "ratelimit", "--count", "20", "--timeout", "60s", "-w", out)
	}()
	if got := e.Send(agenttest.Addr("198.18.66.7"), 40); got != 0 {
		t.Errorf("%d blocked frames delivered", got)
	}
	// Rate-limit drops (250 of the first 300 frames, nearly all of the
	// later ones) until the capture has its 20: on a busy machine it may
	// subscribe only after the first ones.
	var res agenttest.Result
	for got := false; !got; {
		e.Send(agenttest.Addr("198.18.1.40"), 300)
		select {
		case res = <-done:
			got = true
		case <-time.After(200 * time.Millisecond):
		}
	}
	if res.Code != 0 || !strings.Contains(res.Stdout, "20 samples written") {
		t.Fatalf("capture: %v", res)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	want := e.Frame(agenttest.Addr("198.18.1.40"), 1)
	n := 0
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		n++
		if ci.Length != len(want) || len(data) != min(len(want), 128) || string(data[26:30]) != string(want[26:30]) {
			t.Errorf("sample %d: %d of %d bytes, not the rate-limited source's frame", n, len(data), ci.Length)
		}
	}
	if n != 20 {
		t.Errorf("pcap holds %d samples, want 20", n)
	}
	if strings.Count(res.Stdout, "reason=ratelimit") != 20 || strings.Contains(res.Stdout, "reason=blocklist") {
		t.Errorf("capture listed other reasons:\n%s", res.Stdout)
	}

	// The recorder's files: every drop sampled (40 blocked + 250 limited).
	agenttest.WaitFor(t, 10*time.Second, "290 recorded samples", func() bool {
		return e.Metrics().Get("bulwark_flight_recorder_samples_total") >= 290
	})
	files, _ := filepath.Glob(filepath.Join(dir, e.TB.ServerIf, "drops-*.pcapng"))
	if len(files) == 0 {
		t.Fatalf("no pcapng files in %s", filepath.Join(dir, e.TB.ServerIf))
	}
	for _, p := range files {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600 (%v)", p, fi.Mode().Perm(), err)
		}
	}
	if lost := e.Metrics().Get("bulwark_flight_recorder_lost_total", "cause", "disk"); lost != 0 {
		t.Errorf("lost to disk: %v", lost)
	}
}
