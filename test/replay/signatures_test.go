package replay_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/bpf/model"
	"github.com/bulwark-filter/bulwark/test/sigflood"
)

// attackNet holds every flood source; the benign captures have none in it.
var attackNet = netip.MustParsePrefix("198.18.0.0/15")

func isAttack(frame []byte) bool {
	p, r := model.Parse(frame)
	return r == model.ParseOK && attackNet.Contains(p.Src)
}

// sigReport is the part of `bulwark replay --json` this test reads.
type sigReport struct {
	Packets    uint64 `json:"packets"`
	Signatures []struct {
		Name, Match, Action, At, Until string
		Coverage, Collateral           float64
	} `json:"signatures"`
}

// floodFigures is what TestSignatureFloods measured of one flood with
// detect = "enforce"; BULWARK_SIGREPLAY_OUT names a file to write them to
// (make bench).
type floodFigures struct {
	Kind          string  `json:"kind"`
	PPS           int     `json:"pps"`
	Seconds       int     `json:"seconds"`
	SignatureAt   string  `json:"signature_at"` // capture time from the flood's start
	Signature     string  `json:"signature"`
	Late          int     `json:"attack_from_3s"`
	LateDropped   int     `json:"attack_from_3s_dropped"`
	LateDropPct   float64 `json:"attack_from_3s_dropped_pct"`
	Benign        int     `json:"benign"`
	BenignDropped int     `json:"benign_dropped"`
	BenignDropPct float64 `json:"benign_dropped_pct"`
}

// TestSignatureFloods merges real benign captures with a spoofed flood
// (random sources over a /15, header distributions as flood tools send
// them) starting 2 s in, and replays them with signature detection on.
// From 3 s after the flood starts at least 95 % of its packets must be
// dropped, and at most 0.1 % of the benign packets ever; the figures come
// from the dropped-frames pcap and the flood's own count. In shadow mode
// the signature is found and nothing is dropped.
func TestSignatureFloods(t *testing.T) {
	dir := t.TempDir()
	benign := []string{filepath.Join(pcapDir, "zeek_bro.org.pcap"), filepath.Join(pcapDir, "zeek_wikipedia.pcap")}
	nBenign := 0
	for _, b := range benign {
		ps, _, err := sigflood.ReadPcap(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			if isAttack(p.Frame) {
				t.Fatalf("%s has a source in %s", b, attackNet)
			}
		}
		nBenign += len(ps)
		t.Logf("%s: %d packets over %s", filepath.Base(b), len(ps), ps[len(ps)-1].At)
	}
	const pps, secs = 10_000, 6
	var figures []floodFigures
	defer func() {
		if path := os.Getenv("BULWARK_SIGREPLAY_OUT"); path != "" {
			names := []string{filepath.Base(benign[0]), filepath.Base(benign[1])}
			b, _ := json.MarshalIndent(map[string]any{"floods": figures, "benign_captures": names}, "", "  ")
			if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
				t.Error(err)
			}
		}
	}()
	for _, f := range []sigflood.Flood{
		{Kind: "syn", DstIP: net.IP{198, 18, 0, 1}, DstPort: 80, PPS: pps, Duration: secs * time.Second, Seed: 7},
		{Kind: "udp", DstIP: net.IP{198, 18, 0, 1}, DstPort: 53, PPS: pps, Duration: secs * time.Second, Seed: 8},
	} {
		t.Run(f.Kind, func(t *testing.T) {
			attack, err := sigflood.Build(f)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
			flood := filepath.Join(dir, f.Kind+".pcap")
			if err := sigflood.WritePcap(flood, start, attack); err != nil {
				t.Fatal(err)
			}
			late := 0 // flood packets from 3 s on, by arithmetic: pps x (secs - 3)
			for _, p := range attack {
				if p.At >= 3*time.Second {
					late++
				}
			}
			if late != pps*(secs-3) {
				t.Fatalf("%d flood packets from 3 s on, want %d", late, pps*(secs-3))
			}
			for _, mode := range []string{"enforce", "shadow"} {
				cfg := writeFile(t, filepath.Join(dir, f.Kind+"-"+mode+".hcl"),
					fmt.Sprintf("interface \"eth0\" {}\nsignatures {\n  detect = %q\n}\n", mode))
				dropped := filepath.Join(dir, f.Kind+"-"+mode+"-dropped.pcap")
				r := replay(t, append([]string{"--json", "--config", cfg, "--write-dropped", dropped, "--merge",
					"--offset", "0s", "--offset", "0s", "--offset", "2s"}, append(benign, flood)...)...)
				if r.code != 0 {
					t.Fatalf("replay: exit %d: %s", r.code, r.stderr)
				}
				var rep sigReport
				if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
					t.Fatal(err)
				}
				if rep.Packets != uint64(nBenign+len(attack)) {
					t.Errorf("%s: report counts %d packets, want %d + %d", mode, rep.Packets, nBenign, len(attack))
				}
				if len(rep.Signatures) != 1 {
					t.Fatalf("%s: %d signatures detected, want 1: %+v", mode, len(rep.Signatures), rep.Signatures)
				}
				t.Logf("%s: %+v", mode, rep.Signatures[0])
				ps, first, err := sigflood.ReadPcap(dropped)
				if err != nil {
					t.Fatal(err)
				}
				benignDropped, lateDropped := 0, 0
				for _, p := range ps {
					switch {
					case !isAttack(p.Frame):
						benignDropped++
					case !first.Add(p.At).Before(start.Add(3 * time.Second)):
						// The dropped pcap keeps each frame's original time.
						lateDropped++
					}
				}
				if mode == "shadow" {
					if len(ps) != 0 || rep.Signatures[0].Action != "count" {
						t.Errorf("shadow: %d frames dropped, signature action %s; want none, count", len(ps), rep.Signatures[0].Action)
					}
					continue
				}
				t.Logf("flood from 3 s on: %d of %d dropped (%.2f%%); benign dropped %d of %d",
					lateDropped, late, 100*float64(lateDropped)/float64(late), benignDropped, nBenign)
				// The flood starts 2 s into the merged replay.
				at, _ := time.ParseDuration(rep.Signatures[0].At)
				figures = append(figures, floodFigures{Kind: f.Kind, PPS: pps, Seconds: secs, SignatureAt: (at - 2*time.Second).String(),
					Signature: rep.Signatures[0].Match, Late: late, LateDropped: lateDropped,
					LateDropPct: 100 * float64(lateDropped) / float64(late), Benign: nBenign, BenignDropped: benignDropped,
					BenignDropPct: 100 * float64(benignDropped) / float64(nBenign)})
				if lateDropped*100 < 95*late {
					t.Errorf("flood packets from 3 s on: %d of %d dropped, want at least 95%%", lateDropped, late)
				}
				if benignDropped*1000 > nBenign {
					t.Errorf("benign packets dropped: %d of %d, want at most 0.1%%", benignDropped, nBenign)
				}
			}
		})
	}
}
