package replay_test

import (
	"bytes"
	"fmt"
	"math/rand"
	"path/filepath"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/test/testutil"
)

// cpusConfig exercises every kind of state a replay on several CPUs
// splits: per-source buckets, rule buckets, the aggregate limit of /24s
// and /56s, classes, lists, and the scorer's verdicts.
const cpusConfig = `
interface "eth0" {}
allow {
  cidrs = ["198.18.250.0/24"]
}
block {
  cidrs = ["198.19.200.0/24", "2001:2:0:ff::/64"]
}
limits {
  ipv6_prefix = 64
  default {
    pps   = 40
    burst = 80
  }
  rule "dns" {
    protocol = "udp"
    ports    = ["53"]
    pps      = 10
    burst    = 20
  }
  rule "syn" {
    protocol  = "tcp"
    tcp_flags = "syn"
    pps       = 5
    burst     = 10
  }
  class "nat" {
    cidrs      = ["198.18.64.0/18"]
    multiplier = 4
  }
  aggregate {
    ipv4_prefix = 24
    ipv6_prefix = 56
    pps         = 100
    burst       = 100
  }
  %s
}
maps {
  sources      = 65536
  rule_buckets = 65536
  verdicts     = 4096
}
reputation {
  mode         = "enforce"
  interval     = "1s"
  max_verdicts = 4096
}
`

// cpusCapture is 20 s of traffic from 600 IPv4 sources in 12 /24s and
// 200 IPv6 sources in 4 /56s (several /64s each), some of them busy
// enough for the per-source, rule and aggregate limits, one flooder for
// the scorer, plus allowed and blocked sources.
func cpusCapture(t *testing.T, dir string) string {
	rng := rand.New(rand.NewSource(7))
	var frames [][]byte
	for i := 0; i < 600; i++ {
		src := fmt.Sprintf("198.18.%d.%d", 60+i%12, i/12+1)
		frames = append(frames,
			testutil.UDP4(t, src, "198.18.0.1", 53, 40),
			testutil.TCP4(t, src, "198.18.0.1", 443, testutil.FlagSYN),
			testutil.UDP4(t, src, "198.18.0.1", 9000, 200))
	}
	for i := 0; i < 200; i++ {
		src := fmt.Sprintf("2001:2:0:%x%02x::%x", i%4, i%7, i+1)
		frames = append(frames, testutil.UDP6(t, src, "2001:2::1", 9000, 100),
			testutil.TCP6(t, src, "2001:2::1", 80, testutil.FlagSYN))
	}
	special := [][]byte{
		testutil.UDP4(t, "198.18.250.9", "198.18.0.1", 9000, 100),  // allowed
		testutil.UDP4(t, "198.19.200.9", "198.18.0.1", 9000, 100),  // blocked
		testutil.UDP6(t, "2001:2:0:ff::9", "2001:2::1", 9000, 100), // blocked
	}
	flood := testutil.UDP4(t, "198.18.0.66", "198.18.0.1", 9000, 60)
	const n = 60_000
	var pkts []pkt
	for i := 0; i < n; i++ {
		at := captureStart.Add(time.Duration(i) * 20 * time.Second / n)
		var f []byte
		switch r := rng.Intn(100); {
		case r < 3:
			f = special[rng.Intn(len(special))]
		case r < 20 && i > n/2:
			f = flood
		case r < 50:
			// A busy few: the first 30 IPv4 sources' frames.
			f = frames[rng.Intn(90)]
		default:
			f = frames[rng.Intn(len(frames))]
		}
		pkts = append(pkts, pkt{at, f})
	}
	return writePcap(t, filepath.Join(dir, "mixed.pcap"), ltEthernet, pkts)
}

// TestReplayCPUsAgree: a replay on several CPUs gives the same report and
// the same dropped frames, in the same order, as one on a single CPU: on
// a capture that exercises every limit and the scorer, on the shared
// captures, and with a new-source ceiling tight enough to bind (where the
// replay must fall back to one CPU).
func TestReplayCPUsAgree(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	mixed := cpusCapture(t, dir)
	shared := sharedCaptures(t)
	for _, tt := range []struct {
		name       string
		newSources string
		captures   []string
		want       []string // rules that must have dropped something
	}{
		{"mixed", "", []string{mixed}, []string{"default", "dns", "syn", "aggregate"}},
		{"shared", "", shared, nil},
		{"mixed, ceiling binds", "new_sources {\n    pps   = 50\n    burst = 100\n  }", []string{mixed},
			[]string{"new_sources"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := writeFile(t, filepath.Join(t.TempDir(), "bulwark.hcl"), fmt.Sprintf(cpusConfig, tt.newSources))
			var outs [2]string
			var drops [2][]byte
			for i, cpus := range []string{"1", "2"} {
				out := filepath.Join(t.TempDir(), "dropped.pcap")
				r := replay(t, append([]string{"--json", "--cpus", cpus, "--write-dropped", out, "--config", cfg},
					tt.captures...)...)
				if r.code != 0 {
					t.Fatalf("--cpus %s: exit %d\n%s", cpus, r.code, r.stderr)
				}
				outs[i], drops[i] = r.stdout, readAll(t, out)
			}
			if outs[0] != outs[1] {
				t.Errorf("reports differ between --cpus 1 and --cpus 2:\n%s\n---\n%s", outs[0], outs[1])
			}
			if !bytes.Equal(drops[0], drops[1]) {
				t.Errorf("--write-dropped differs between --cpus 1 and --cpus 2 (%d and %d bytes)", len(drops[0]), len(drops[1]))
			}
			rep := replayJSON(t, cfg, tt.captures...)
			for _, rule := range tt.want {
				if rep.Rules[rule] == 0 {
					t.Errorf("rule %s dropped nothing: the test does not exercise it (rules %v)", rule, rep.Rules)
				}
			}
			if tt.name == "mixed" && len(rep.Verdicts) == 0 {
				t.Errorf("no verdict: the scorer is not exercised")
			}
		})
	}
}
