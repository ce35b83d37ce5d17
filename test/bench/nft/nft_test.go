package nft

import (
	"math"
	"net/netip"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/netns"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// TestNFTSmoke runs the harness small and fast (10k entries, the fewest
// that list all 8192 generated sources; a few hundred
// thousand frames) and checks that every receiver counts the drops, so the
// benchmark cannot silently measure nothing. It asserts no timing: the
// generator sends a number of frames (one live-frames run of 200k), and
// what the per-source limit may pass follows from the time they took.
func TestNFTSmoke(t *testing.T) {
	testutil.RequireRoot(t)
	b := Bounds{MaxPkts: 200_000, MaxDur: time.Second, GenPkts: 50_000, GenMaxDur: 200 * time.Millisecond}
	// The limit cases: 256 sources (MaskFew) at limitPPS each, burst 5.
	// Over the w seconds from the send's start to the counters' read (every
	// frame counted reached the receiver within it), a source's bucket
	// passes at most what it holds at the start plus w of refill: nft's
	// holds a second of rate besides the burst (nft_limit's tokens_max), so
	// at most 5 + limitPPS x (1 + w) + 1 (rounding). Some of the 200k are
	// then dropped as long as w < 70 s, however busy the machine.
	const limitPPS, limitSources, limitBurst = 10, 256, 5
	es := Entries(10000, 1)
	cases := []struct {
		name string
		mask int32
		mk   func(*netns.Testbed) (*Receiver, error)
		all  bool // every frame must be dropped
	}{
		{"bulwark-block", MaskAll, func(tb *netns.Testbed) (*Receiver, error) { return Bulwark(tb, es, 0) }, true},
		{"nft-block", MaskAll, func(tb *netns.Testbed) (*Receiver, error) { return NFT(tb, t.TempDir(), es, OneSet, 0) }, true},
		{"nft-split-block", MaskAll, func(tb *netns.Testbed) (*Receiver, error) { return NFT(tb, t.TempDir(), es, Split, 0) }, true},
		{"bulwark-limit", MaskFew, func(tb *netns.Testbed) (*Receiver, error) { return Bulwark(tb, nil, limitPPS) }, false},
		{"nft-limit", MaskFew, func(tb *netns.Testbed) (*Receiver, error) { return NFT(tb, t.TempDir(), nil, OneSet, limitPPS) }, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tb := netns.New(t, netns.Options{})
			g, err := NewGenerator(tb, c.mask)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			r, err := c.mk(tb)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			res, err := Measure(g, r, b)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("sent %d seen %d dropped %d: %.2f Mpps, receiver %.0f ns/pkt", res.Sent, res.Seen, res.Dropped, res.DroppedMpps, res.RecvNsPerPkt)
			if res.Seen < res.Sent*9/10 {
				t.Errorf("receiver saw %d of %d frames sent", res.Seen, res.Sent)
			}
			if c.all && res.Dropped < res.Sent*99/100 {
				t.Errorf("dropped %d of %d frames; every source is in the block list", res.Dropped, res.Sent)
			}
			if !c.all {
				most := limitSources * (limitBurst + 1 + uint64(math.Ceil(limitPPS*(1+res.CountedS))))
				if passed := res.Seen - min(res.Dropped, res.Seen); res.Dropped == 0 || passed > most {
					t.Errorf("per-source limit passed %d of %d seen (dropped %d) in %.2f s; %d sources at %d pps, burst %d, pass at most %d",
						passed, res.Seen, res.Dropped, res.CountedS, limitSources, limitPPS, limitBurst, most)
				}
			}
		})
	}
}

// TestEntries checks the generated list: the size, 10 % prefixes, every
// generated source listed.
func TestEntries(t *testing.T) {
	es := Entries(10000, 3)
	if len(es) != 10000 {
		t.Fatalf("%d entries", len(es))
	}
	hosts := map[string]bool{}
	var nets int
	for _, e := range es {
		if e.Prefix.Bits() == 32 {
			hosts[e.Prefix.Addr().String()] = true
		} else {
			nets++
		}
	}
	if nets != 1000 || len(hosts) != 9000 {
		t.Errorf("%d prefixes, %d distinct hosts", nets, len(hosts))
	}
	for _, s := range SourceAddrs() {
		if !hosts[s.String()] {
			t.Fatalf("source %s not listed", s)
		}
	}
}

// parseSets reads the sets of an nft file written by Ruleset: name ->
// type, interval flag and elements.
func parseSets(t *testing.T, file string) map[string]nftSet {
	t.Helper()
	re := regexp.MustCompile(`(?s)set (\w+) \{ type (\w+);( flags interval;)? elements = \{\n(.*?) \}; \}`)
	out := map[string]nftSet{}
	for _, m := range re.FindAllStringSubmatch(file, -1) {
		var elems []string
		for _, e := range strings.FieldsFunc(m[4], func(r rune) bool { return r == ',' || r == '\n' }) {
			elems = append(elems, strings.TrimSpace(e))
		}
		out[m[1]] = nftSet{Name: m[1], Type: m[2], Interval: m[3] != "", Elems: elems}
	}
	return out
}

// TestRulesetLayouts checks the split of a block list: Entries(n) has
// n/10 prefixes and n - n/10 hosts, so the split layout's hash set holds
// 9,000 of 10,000 entries and its interval set 1,000, the one-set layout
// all 10,000 in one interval set; the host set is matched first.
func TestRulesetLayouts(t *testing.T) {
	const n = 10000
	es := Entries(n, 5)
	split := Ruleset("veth0", es, Split, 0)
	sets := parseSets(t, split)
	if len(sets) != 2 {
		t.Fatalf("split layout: %d sets, want 2 (hosts4, nets4):\n%.500s", len(sets), split)
	}
	h, p := sets["hosts4"], sets["nets4"]
	if h.Interval || len(h.Elems) != n-n/10 || h.Type != "ipv4_addr" {
		t.Errorf("hosts4: interval %v, %d elements, type %s; want a hash set of %d ipv4_addr", h.Interval, len(h.Elems), h.Type, n-n/10)
	}
	if !p.Interval || len(p.Elems) != n/10 {
		t.Errorf("nets4: interval %v, %d elements; want an interval set of %d", p.Interval, len(p.Elems), n/10)
	}
	for _, e := range h.Elems {
		if strings.Contains(e, "/") {
			t.Fatalf("host set holds a prefix: %s", e)
		}
	}
	for _, e := range p.Elems {
		if !strings.Contains(e, "/") {
			t.Fatalf("prefix set holds a host: %s", e)
		}
	}
	hi, pi := strings.Index(split, "ip saddr @hosts4"), strings.Index(split, "ip saddr @nets4")
	if hi < 0 || pi < 0 || hi > pi {
		t.Errorf("rules: hosts4 at %d, nets4 at %d; want the host set matched first", hi, pi)
	}
	one := parseSets(t, Ruleset("veth0", es, OneSet, 0))
	if b := one["block4"]; len(one) != 1 || !b.Interval || len(b.Elems) != n {
		t.Errorf("one-set layout: %d sets, block4 interval %v with %d elements; want one interval set of %d", len(one), b.Interval, len(b.Elems), n)
	}

	// Both families, hand-written: one of each kind.
	mixed := []maps.Entry{
		{Prefix: netip.MustParsePrefix("198.18.0.8/32")}, {Prefix: netip.MustParsePrefix("198.19.0.0/24")},
		{Prefix: netip.MustParsePrefix("2001:2::1/128")}, {Prefix: netip.MustParsePrefix("2001:2:1::/48")},
	}
	want := map[string]nftSet{
		"hosts4": {Name: "hosts4", Type: "ipv4_addr", Elems: []string{"198.18.0.8"}},
		"nets4":  {Name: "nets4", Type: "ipv4_addr", Interval: true, Elems: []string{"198.19.0.0/24"}},
		"hosts6": {Name: "hosts6", Type: "ipv6_addr", Elems: []string{"2001:2::1"}},
		"nets6":  {Name: "nets6", Type: "ipv6_addr", Interval: true, Elems: []string{"2001:2:1::/48"}},
	}
	mr := Ruleset("veth0", mixed, Split, 0)
	if got := parseSets(t, mr); !reflect.DeepEqual(got, want) {
		t.Errorf("split of both families:\n got %+v\nwant %+v", got, want)
	}
	if !strings.Contains(mr, "ip6 saddr @hosts6") || !strings.Contains(mr, "ip6 saddr @nets6") {
		t.Errorf("no ip6 rules:\n%s", mr)
	}
	want = map[string]nftSet{
		"block4": {Name: "block4", Type: "ipv4_addr", Interval: true, Elems: []string{"198.18.0.8", "198.19.0.0/24"}},
		"block6": {Name: "block6", Type: "ipv6_addr", Interval: true, Elems: []string{"2001:2::1", "2001:2:1::/48"}},
	}
	if got := parseSets(t, Ruleset("veth0", mixed, OneSet, 0)); !reflect.DeepEqual(got, want) {
		t.Errorf("one set of both families:\n got %+v\nwant %+v", got, want)
	}
	for _, r := range []string{Ruleset("veth0", nil, Split, 0), Ruleset("veth0", nil, OneSet, 100)} {
		if strings.Contains(r, "elements") || !strings.Contains(r, `counter name "cdrop" drop`) {
			t.Errorf("drop-all or limit ruleset has sets of elements or no drop rule:\n%s", r)
		}
	}
}

// TestSample checks the sample against a plain scan of every entry:
// k listed hosts, k addresses in listed prefixes, k addresses no entry
// covers.
func TestSample(t *testing.T) {
	const k = 16
	es := Entries(10000, 7)
	addrs, want := Sample(es, k, 1)
	if len(addrs) != 3*k {
		t.Fatalf("%d addresses, want %d", len(addrs), 3*k)
	}
	for i, a := range addrs {
		covered, host := false, false
		for _, e := range es {
			if e.Prefix.Contains(a) {
				covered, host = true, e.Prefix.Bits() == 32
			}
		}
		if want[i] != covered {
			t.Errorf("%s: want %v, a scan of the list says %v", a, want[i], covered)
		}
		kind := i / k // 0 hosts, 1 in prefixes, 2 misses
		if (kind == 0) != (covered && host) || (kind == 1) != (covered && !host) || (kind == 2) != !covered {
			t.Errorf("address %d (%s): covered %v by a host %v, out of its place in the sample", i, a, covered, host)
		}
	}
	if a, w := Sample(nil, k, 1); a != nil || w != nil {
		t.Errorf("sample of an empty list: %v %v", a, w)
	}
}

// TestSummarize checks the medians, spreads and ratios on made-up rounds:
// the figures below are worked out by hand.
func TestSummarize(t *testing.T) {
	rs := []Result{}
	add := func(recv, test string, rep, attempt int, ns float64, held, accepted bool) {
		rs = append(rs, Result{Receiver: recv, Test: test, Entries: 1000, Group: 1000, Rep: rep, Attempt: attempt,
			RecvNsPerPkt: ns, GenHeld: held, Accepted: accepted, DroppedMpps: 1e3 / ns})
	}
	for i, ns := range []float64{20, 22, 21} {
		add("xdp-drop", "floor", i+1, 1, ns, true, true)
		add("nft-drop", "floor", i+1, 1, []float64{140, 150, 147}[i], true, true)
		add("nft-split", "block", i+1, 1, []float64{200, 240, 210}[i], true, true)
		add("nft", "block", i+1, 1, []float64{600, 630, 615}[i], true, true)
	}
	add("bulwark", "block", 1, 1, 500, false, false) // re-run
	add("bulwark", "block", 1, 2, 100, true, true)
	add("bulwark", "block", 2, 1, 120, true, true)
	add("bulwark", "block", 3, 1, 105, false, true) // retries spent
	var b Summary
	for _, s := range Summarize(rs) {
		if s.Receiver == "bulwark" {
			b = s
		}
	}
	// bulwark: 100 105 120 -> median 105, spread 20/105; nft-split median
	// 210, nft 615, xdp-drop 21, nft-drop 147. By round: 200/100 = 2,
	// 240/120 = 2, 210/105 = 2.
	near := func(name string, got, want float64) {
		if math.Abs(got-want) > 1e-9 {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if b.Reps != 3 || b.Reruns != 1 || b.Unstable != 1 {
		t.Errorf("reps %d reruns %d unstable %d, want 3 1 1", b.Reps, b.Reruns, b.Unstable)
	}
	near("median", b.MedianNs, 105)
	near("spread", b.SpreadPct, 100*20.0/105)
	near("vs nft best", b.VsBest, 2)
	near("vs nft", b.VsNFT, 615.0/105)
	near("x floor", b.XFloor, 5)
	near("floor ratio", b.FloorRatio, 7)
	near("ceiling", b.Ceiling, 10)
	near("round min", b.VsBestMin, 2)
	near("round max", b.VsBestMax, 2)
	near("median of 4", Median([]float64{4, 1, 3, 2}), 2.5)
	if hs := Headlines(Summarize(rs)); len(hs) != 1 || !strings.Contains(hs[0], "2.00x nft (best config") || !strings.Contains(hs[0], "5.00x of the XDP floor") {
		t.Errorf("headlines: %q", hs)
	}
}

// TestRulesetsDropSameFrames sends frames from a sample of addresses
// through Bulwark and both nft layouts with the same small block list
// (hosts and prefixes in 198.18.0.0/15): every receiver must drop every
// frame from a listed address (dropped count == hits) and none of the
// others (no drop), the expectation worked out by a scan of the list.
func TestRulesetsDropSameFrames(t *testing.T) {
	testutil.RequireRoot(t)
	var es []maps.Entry
	for i := 1; i <= 24; i++ {
		es = append(es, maps.Entry{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(8 * i)}), 32), ListID: 1})
	}
	for _, p := range []string{"198.19.0.0/24", "198.19.1.2/31", "198.19.2.128/25", "198.19.8.0/22"} {
		es = append(es, maps.Entry{Prefix: netip.MustParsePrefix(p), ListID: 1})
	}
	var hits, misses []netip.Addr
	classify := func(a netip.Addr) {
		for _, e := range es {
			if e.Prefix.Contains(a) {
				hits = append(hits, a)
				return
			}
		}
		misses = append(misses, a)
	}
	for _, e := range es {
		first, last := e.Prefix.Addr(), lastAddr(e.Prefix)
		classify(first)
		classify(last)
		classify(first.Prev())
		classify(last.Next())
	}
	// 24 hosts: 2 hits (first and last are the host) and 2 misses each
	// (host-1 and host+1, none listed); 4 prefixes, no two adjacent: 2
	// hits and 2 misses each.
	if len(hits) != 48+8 || len(misses) != 48+8 {
		t.Fatalf("%d hits, %d misses; want 56 and 56", len(hits), len(misses))
	}
	cases := []struct {
		name string
		mk   func(*netns.Testbed) (*Receiver, error)
	}{
		{"bulwark", func(tb *netns.Testbed) (*Receiver, error) { return Bulwark(tb, es, 0) }},
		{"nft", func(tb *netns.Testbed) (*Receiver, error) { return NFT(tb, t.TempDir(), es, OneSet, 0) }},
		{"nft-split", func(tb *netns.Testbed) (*Receiver, error) { return NFT(tb, t.TempDir(), es, Split, 0) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tb := netns.New(t, netns.Options{})
			r, err := c.mk(tb)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			s, err := tb.NewSender()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			send := func(addrs []netip.Addr) (dropped, seen uint64) {
				c0, err := r.Read()
				if err != nil {
					t.Fatal(err)
				}
				frames := make([][]byte, len(addrs))
				for i, a := range addrs {
					frames[i] = netns.UDP4(tb.ServerMAC, tb.ClientMAC, a, netns.ServerAddr4, 40000, 9000, netns.Payload(uint64(i), 18))
				}
				if _, _, err := s.Send(frames, len(frames), time.Now().Add(5*time.Second), 0); err != nil {
					t.Fatal(err)
				}
				// The frames are counted as the server veth handles them:
				// wait (bounded) until all are seen.
				var c1 Counts
				for end := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
					if c1, err = r.Read(); err != nil {
						t.Fatal(err)
					}
					if c1.Seen-c0.Seen >= uint64(len(addrs)) || time.Now().After(end) {
						break
					}
				}
				return c1.Dropped - c0.Dropped, c1.Seen - c0.Seen
			}
			if d, seen := send(hits); d != uint64(len(hits)) {
				t.Errorf("listed sources: dropped %d of %d frames (%d seen)", d, len(hits), seen)
			}
			if d, seen := send(misses); d != 0 || seen < uint64(len(misses)) {
				t.Errorf("unlisted sources: dropped %d, seen %d of %d frames; want none dropped, all seen", d, seen, len(misses))
			}
			// The same verdicts without traffic, as the suite checks the
			// big lists.
			want := make([]bool, 0, len(hits)+len(misses))
			for range hits {
				want = append(want, true)
			}
			for range misses {
				want = append(want, false)
			}
			if err := CheckSample(r, append(append([]netip.Addr(nil), hits...), misses...), want); err != nil {
				t.Error(err)
			}
		})
	}
}
