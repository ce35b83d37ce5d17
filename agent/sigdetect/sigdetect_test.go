package sigdetect_test

import (
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/agent/sigdetect"
	"github.com/bulwark-filter/bulwark/bpf/model"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/sigflood"
)

// benign loads a real capture of benign traffic.
func benign(t *testing.T, name string) []sigflood.Packet {
	t.Helper()
	ps, _, err := sigflood.ReadPcap(filepath.Join("..", "..", "test", "testdata", "pcaps", name))
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func matches(t *testing.T, s *maps.Signature, frame []byte) bool {
	f, ok := model.FieldsOf(frame)
	return ok && f.Matches(s)
}

// TestFloods runs real benign traffic for 10 s, then a spoofed flood on
// top of it, through the detector, and checks the signature it finds
// against every packet: the flood's and the benign capture's.
func TestFloods(t *testing.T) {
	web := benign(t, "zeek_bro.org.pcap")
	lan := benign(t, "zeek_wikipedia.pcap")
	for _, c := range []struct {
		flood sigflood.Flood
		want  maps.SigField // fields the signature must name
	}{
		{sigflood.Flood{Kind: "syn", DstIP: net.IP{198, 18, 0, 1}, DstPort: 80, PPS: 5000, Duration: 5 * time.Second, Seed: 1},
			maps.SigProto | maps.SigDPort | maps.SigTCPFlags | maps.SigTCPOptLen},
		{sigflood.Flood{Kind: "udp", DstIP: net.IP{198, 18, 0, 1}, DstPort: 53, PPS: 5000, Duration: 5 * time.Second, Seed: 2},
			maps.SigProto | maps.SigDPort | maps.SigIPLen},
	} {
		t.Run(c.flood.Kind, func(t *testing.T) {
			attack, err := sigflood.Build(c.flood)
			if err != nil {
				t.Fatal(err)
			}
			d := sigdetect.New(sigdetect.Config{})
			found := floodRun(t, d, 15, [][]sigflood.Packet{web, lan}, attack, func(f []byte) { d.Observe(f, 1) })
			if len(found) != 1 {
				t.Fatalf("after the flood's first second: %d findings, want 1", len(found))
			}
			f := found[0]
			t.Logf("%s: %s (%s)", f.Key, f.Sig.String(), f.Why())
			if f.Sig.Fields&c.want != c.want {
				t.Errorf("signature %s lacks fields %#x", f.Sig.String(), uint32(c.want&^f.Sig.Fields))
			}
			checkSignature(t, &f.Sig, attack, web, lan)
		})
	}
}

// TestCountAndSample feeds detection as the live agent does: the packet and
// new-source counts per destination from elsewhere (here counted by the
// test) and a 1-in-8 sample of the packets. It finds the flood's
// destination in the flood's first second with a signature that covers 95 %
// of the flood and no benign packet; with the counts and no sample it
// finds nothing (a search needs sampled packets).
func TestCountAndSample(t *testing.T) {
	web := benign(t, "zeek_bro.org.pcap")
	flood := sigflood.Flood{Kind: "syn", DstIP: net.IP{198, 18, 0, 1}, DstPort: 80, PPS: 5000, Duration: 3 * time.Second, Seed: 3}
	attack, err := sigflood.Build(flood)
	if err != nil {
		t.Fatal(err)
	}
	for _, sampled := range []bool{true, false} {
		d := sigdetect.New(sigdetect.Config{})
		seen := map[string]bool{}
		n := 0
		feed := func(frame []byte) {
			p, r := model.Parse(frame)
			if r != model.ParseOK {
				return
			}
			k := sigdetect.Key{Proto: p.Proto}
			if p.Proto == model.ProtoTCP || p.Proto == model.ProtoUDP {
				k.Port = p.DPort
			}
			newSrc := 0.0
			if !seen[p.Src.String()] {
				seen[p.Src.String()], newSrc = true, 1
			}
			d.Count(k, 1, newSrc)
			if n++; sampled && n%8 == 0 {
				d.Sample(frame)
			}
		}
		found := floodRun(t, d, 12, [][]sigflood.Packet{web}, attack, feed)
		if !sampled {
			if len(found) != 0 {
				t.Errorf("counts without samples: findings %+v, want none", found)
			}
			continue
		}
		if len(found) != 1 || found[0].Key != (sigdetect.Key{Proto: 6, Port: 80}) {
			t.Fatalf("after the flood's first second: findings %+v, want one for tcp-80", found)
		}
		checkSignature(t, &found[0].Sig, attack, web)
	}
}

// floodRun shows d every benign capture once a second for secs seconds and
// the flood from second 10 on, each packet through feed, ticking after each
// second. It fails t on a finding before the flood and returns those of
// the flood's first second.
func floodRun(t *testing.T, d *sigdetect.Detector, secs int, benigns [][]sigflood.Packet, attack []sigflood.Packet,
	feed func([]byte)) []sigdetect.Finding {
	t.Helper()
	start := time.Unix(1_700_000_000, 0)
	var found []sigdetect.Finding
	at := 0
	for sec := 0; sec < secs; sec++ {
		for _, bs := range benigns {
			for _, p := range bs {
				feed(p.Frame)
			}
		}
		for sec >= 10 && at < len(attack) && attack[at].At < time.Duration(sec-9)*time.Second {
			feed(attack[at].Frame)
			at++
		}
		fs := d.Tick(start.Add(time.Duration(sec+1) * time.Second))
		if sec < 10 && len(fs) > 0 {
			t.Fatalf("second %d, before the flood: findings %+v", sec, fs)
		}
		if sec == 10 {
			found = fs
		}
	}
	return found
}

// checkSignature checks that s matches at least 95 % of the flood and no
// benign packet.
func checkSignature(t *testing.T, s *maps.Signature, attack []sigflood.Packet, benigns ...[]sigflood.Packet) {
	t.Helper()
	hit := 0
	for _, p := range attack {
		if matches(t, s, p.Frame) {
			hit++
		}
	}
	if hit*100 < 95*len(attack) {
		t.Errorf("the signature %s matches %d of %d flood packets, want 95%%", s.String(), hit, len(attack))
	}
	for _, bs := range benigns {
		for _, p := range bs {
			if matches(t, s, p.Frame) {
				t.Errorf("the signature %s matches a benign packet", s.String())
			}
		}
	}
}
