package replay_test

import (
	"cmp"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// ipSources counts the frames of each IP source address in frames, decoded
// with gopacket's layers (not the program's or the model's parser).
func ipSources(frames []pkt) map[netip.Addr]uint64 {
	n := map[netip.Addr]uint64{}
	for _, f := range frames {
		p := gopacket.NewPacket(f.frame, layers.LayerTypeEthernet, gopacket.DecodeOptions{Lazy: true, NoCopy: true})
		var src []byte
		switch l := p.NetworkLayer().(type) {
		case *layers.IPv4:
			src = l.SrcIP
		case *layers.IPv6:
			src = l.SrcIP
		default:
			continue
		}
		if a, ok := netip.AddrFromSlice(src); ok {
			n[a.Unmap()]++
		}
	}
	return n
}

// TestReplayPoisonedFeed is the example: a capture of ordinary web
// traffic replayed with a block feed that holds 0.0.0.0/0 and ::/0 next to
// good entries. The two poisoned entries are refused (and said so on
// stderr); the good entries drop exactly their sources' frames, counted by
// gopacket; nothing else is dropped as feed:poisoned.
func TestReplayPoisonedFeed(t *testing.T) {
	capture := filepath.Join(pcapDir, "zeek_wikipedia.pcap")
	counts := ipSources(capturePackets(t, capture))
	var v4, v6 []netip.Addr
	for a := range counts {
		if a.Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	if len(v4) < 2 {
		t.Fatalf("%s: %d IPv4 sources, want at least 2 for the test", capture, len(v4))
	}
	// The two busiest IPv4 sources and the busiest IPv6 one are the good
	// entries; ties broken by address, so the choice is stable.
	busiest := func(as []netip.Addr) {
		slices.SortFunc(as, func(a, b netip.Addr) int {
			return cmp.Or(cmp.Compare(counts[b], counts[a]), a.Compare(b))
		})
	}
	busiest(v4)
	listed := []netip.Addr{v4[0], v4[1]}
	if len(v6) > 0 {
		busiest(v6)
		listed = append(listed, v6[0])
	}
	var want uint64
	for _, a := range listed {
		want += counts[a]
	}
	var feed strings.Builder
	feed.WriteString("0.0.0.0/0\n::/0\n")
	for _, a := range listed {
		feed.WriteString(a.String() + "\n")
	}
	dir := t.TempDir()
	feedPath := writeFile(t, filepath.Join(dir, "feed.txt"), feed.String())
	cfg := writeFile(t, filepath.Join(dir, "bulwark.hcl"), fmt.Sprintf(`
interface "eth0" {}
limits {
  ipv6_prefix = 128
}
feed "poisoned" {
  path   = %q
  format = "plain"
}
`, feedPath))

	r := replay(t, "--json", "--config", cfg, capture)
	if r.code != 0 {
		t.Fatalf("replay: exit %d\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, `feed "poisoned": 2 entries refused`) {
		t.Errorf("stderr does not report the 2 refused entries:\n%s", r.stderr)
	}
	rep := replayJSON(t, cfg, capture)
	if rep.Lists["feed:poisoned"] != want {
		t.Errorf("frames dropped as feed:poisoned: %d, want %d (the frames of %v)", rep.Lists["feed:poisoned"], want, listed)
	}
	// The report names IPv6 sources by their tracking prefix, a /128 here.
	name := func(a netip.Addr) string {
		if a.Is6() {
			return netip.PrefixFrom(a, 128).String()
		}
		return a.String()
	}
	for _, a := range listed {
		checkSource(t, rep, name(a), counts[a], 0, counts[a], "blocklist")
	}
	var other uint64
	for _, s := range rep.Sources {
		if !slices.ContainsFunc(listed, func(a netip.Addr) bool { return name(a) == s.Source }) {
			other += s.Reasons["blocklist"]
		}
	}
	if other != 0 {
		t.Errorf("%d frames of sources not in the good entries dropped by a list, want 0", other)
	}
	t.Logf("%s: %d IP frames from %d sources; the good entries %v drop %d", capture, sumCounts(counts), len(counts), listed, want)
}

func sumCounts(m map[netip.Addr]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}
