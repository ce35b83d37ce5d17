package guard

import (
	"crypto/rand"
	"encoding/hex"
	"math/big"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/bulwark-filter/bulwark/test/testutil"
)

var defaults = Limits{MinBits4: 8, MinBits6: 32, MaxGrowth4: 5, MaxGrowth6: 24}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func TestCheck(t *testing.T) {
	g := New(defaults, []Protected{
		{pfx("198.18.5.5/32"), WhyHostAddress},
		{pfx("198.18.5.254/32"), WhyGateway},
		{pfx("198.19.0.0/16"), "allow list"},
		{pfx("10.0.0.0/8"), "reputation.protect"},
		{pfx("10.0.0.1/32"), WhyHostAddress}, // nested in 10.0.0.0/8
		{pfx("2001:2:0:1::1/128"), WhyHostAddress},
		{pfx("fe80::1/128"), WhyGateway},
	})
	for _, tc := range []struct {
		entry    string
		reason   string // "": accepted
		overlaps string
	}{
		{"0.0.0.0/0", ReasonBroad, ""},
		{"::/0", ReasonBroad, ""},
		{"128.0.0.0/1", ReasonBroad, ""},
		{"100.0.0.0/7", ReasonBroad, ""},
		{"100.0.0.0/8", "", ""},
		{"2001:db8::/31", ReasonBroad, ""},
		{"2001:db8::/32", "", ""},
		{"::ffff:0.0.0.0/96", ReasonBroad, ""}, // IPv4-mapped 0.0.0.0/0
		// The host's address: the entry itself, one containing it, a mapped one.
		{"198.18.5.5/32", ReasonProtected, "198.18.5.5/32"},
		{"198.18.5.0/24", ReasonProtected, "198.18.5.5/32"},
		{"::ffff:198.18.5.0/120", ReasonProtected, "198.18.5.5/32"},
		{"198.18.5.128/25", ReasonProtected, "198.18.5.254/32"},
		{"198.18.5.4/32", "", ""},
		{"198.18.6.0/24", "", ""},
		// Inside a protected prefix, and containing it.
		{"198.19.3.0/24", ReasonProtected, "198.19.0.0/16"},
		{"198.18.0.0/15", ReasonProtected, "198.18.5.5/32"},
		{"198.20.0.0/16", "", ""},
		// Inside the broad of two nested protected prefixes.
		{"10.5.0.0/16", ReasonProtected, "10.0.0.0/8"},
		{"11.0.0.0/8", "", ""},
		{"2001:2::/48", ReasonProtected, "2001:2:0:1::1/128"},
		{"2001:2:0:2::/64", "", ""},
		{"fe80::/64", ReasonProtected, "fe80::1/128"},
	} {
		r, ok := g.Check(pfx(tc.entry))
		if ok != (tc.reason == "") || (!ok && r.Reason != tc.reason) {
			t.Errorf("Check(%s) = %+v, %v; want reason %q", tc.entry, r, ok, tc.reason)
			continue
		}
		if tc.overlaps != "" && r.Overlaps.Prefix != pfx(tc.overlaps) {
			t.Errorf("Check(%s) overlaps %s, want %s", tc.entry, r.Overlaps.Prefix, tc.overlaps)
		}
	}
}

// TestScreenPoisoned: a feed of 0.0.0.0/0 and ::/0 between good entries
// loses only the two poisoned ones, and the good ones keep their order.
func TestScreenPoisoned(t *testing.T) {
	g := New(defaults, []Protected{{pfx("198.18.1.1/32"), WhyHostAddress}})
	in := []netip.Prefix{pfx("0.0.0.0/0"), pfx("198.18.70.0/24"), pfx("198.18.1.0/24"), pfx("198.18.71.5/32"), pfx("::/0"), pfx("2001:2:0:70::/64")}
	kept, refused := g.Screen(in)
	want := []netip.Prefix{pfx("198.18.70.0/24"), pfx("198.18.71.5/32"), pfx("2001:2:0:70::/64")}
	if len(kept) != len(want) {
		t.Fatalf("kept %v, want %v", kept, want)
	}
	for i := range want {
		if kept[i] != want[i] {
			t.Errorf("kept[%d] = %s, want %s", i, kept[i], want[i])
		}
	}
	reasons := map[string]string{}
	for _, r := range refused {
		reasons[r.Prefix.String()] = r.Reason
	}
	wantR := map[string]string{"0.0.0.0/0": ReasonBroad, "::/0": ReasonBroad, "198.18.1.0/24": ReasonProtected}
	if len(reasons) != len(wantR) {
		t.Errorf("refused %v, want %v", refused, wantR)
	}
	for p, why := range wantR {
		if reasons[p] != why {
			t.Errorf("refusal of %s: %q, want %q", p, reasons[p], why)
		}
	}
	if s := refused[1].String(); !strings.Contains(s, "198.18.1.1/32") || !strings.Contains(s, WhyHostAddress) {
		t.Errorf("refusal text %q does not name the protected address and why", s)
	}
}

func TestCoverage(t *testing.T) {
	pow := func(n uint) *big.Int { return new(big.Int).Lsh(big.NewInt(1), n) }
	sum := func(xs ...*big.Int) *big.Int {
		s := new(big.Int)
		for _, x := range xs {
			s.Add(s, x)
		}
		return s
	}
	for _, tc := range []struct {
		name   string
		ps     []string
		v4, v6 *big.Int
	}{
		{"empty", nil, big.NewInt(0), big.NewInt(0)},
		// 10.1.0.0/16 and 10.200.0.0/16 inside 10.0.0.0/8; 11.0.0.0/24 twice.
		{"nested and duplicates", []string{"10.1.0.0/16", "11.0.0.0/24", "10.0.0.0/8", "11.0.0.0/24", "10.200.0.0/16", "11.0.1.7/32"},
			sum(pow(24), pow(8), big.NewInt(1)), big.NewInt(0)},
		{"whole spaces", []string{"0.0.0.0/0", "::/0", "2001:2::/48"}, pow(32), pow(128)},
		{"mapped counts as IPv4", []string{"::ffff:198.18.0.0/112", "2001:2::/48", "2001:2:0:1::/64"}, pow(16), pow(80)},
	} {
		var ps []netip.Prefix
		for _, s := range tc.ps {
			ps = append(ps, pfx(s))
		}
		c := CoverageOf(ps)
		if c.V4.Cmp(tc.v4) != 0 || c.V6.Cmp(tc.v6) != 0 {
			t.Errorf("%s: coverage %s / %s, want %s / %s", tc.name, c.V4, c.V6, tc.v4, tc.v6)
		}
	}
}

func TestCheckGrowth(t *testing.T) {
	ps := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, pfx(s))
		}
		return out
	}
	// A /5 is 2^27 addresses: eight /8s fit the limit, a ninth does not.
	eight := ps("1.0.0.0/8", "2.0.0.0/8", "3.0.0.0/8", "4.0.0.0/8", "5.0.0.0/8", "6.0.0.0/8", "7.0.0.0/8", "8.0.0.0/8")
	nine := append(ps("9.0.0.0/8"), eight...)
	for _, tc := range []struct {
		name       string
		l          Limits
		prev, next []netip.Prefix
		wantErr    string
	}{
		{"first version at the limit", defaults, nil, eight, ""},
		{"first version over the limit", defaults, nil, nine, "IPv4 coverage would grow at once from 0 to 150994944 addresses"},
		{"one more /8 on top of eight", defaults, eight, nine, ""},
		{"over the limit, but no limit", Limits{MinBits4: 8, MinBits6: 32}, nil, nine, ""},
		{"shrinking", defaults, nine, ps("9.0.0.0/8"), ""},
		{"the same space, rewritten finer", defaults, ps("9.0.0.0/8"), ps("9.0.0.0/9", "9.128.0.0/9"), ""},
		// 2^104 is 256 /32s.
		{"IPv6 over the limit", defaults, ps("2001:2::/48"), ps("2001:2::/48", "2c00::/24", "2d00::/32"), "IPv6 coverage would grow"},
		{"IPv6 at the limit", defaults, ps("2001:2::/48"), ps("2001:2::/48", "2c00::/24"), ""},
	} {
		err := tc.l.CheckGrowth(tc.prev, tc.next)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: error %v, want one with %q", tc.name, err, tc.wantErr)
		}
	}
}

// TestHost reads the protected space of a namespace the test builds: its
// addresses and the gateways of its default routes, not a plain route's.
func TestHost(t *testing.T) {
	testutil.RequireRoot(t)
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	name := "bwk-guard-" + hex.EncodeToString(b)
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ip("netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	ip("-n", name, "link", "add", "d0", "type", "veth", "peer", "name", "d1")
	ip("-n", name, "link", "set", "d1", "up")
	ip("-n", name, "link", "set", "d0", "up")
	ip("-n", name, "addr", "add", "198.18.200.1/24", "dev", "d0")
	ip("-n", name, "-6", "addr", "add", "2001:2:0:9::1/64", "dev", "d0", "nodad")
	ip("-n", name, "route", "add", "default", "via", "198.18.200.254")
	ip("-n", name, "-6", "route", "add", "default", "via", "2001:2:0:9::fe")
	ip("-n", name, "route", "add", "198.19.0.0/16", "via", "198.18.200.253")
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	got, err := Host(h)
	if err != nil {
		t.Fatal(err)
	}
	have := map[netip.Prefix]string{}
	for _, p := range got {
		have[p.Prefix] = p.Why
	}
	for p, why := range map[string]string{
		"198.18.200.1/32": WhyHostAddress, "2001:2:0:9::1/128": WhyHostAddress,
		"198.18.200.254/32": WhyGateway, "2001:2:0:9::fe/128": WhyGateway,
	} {
		if have[pfx(p)] != why {
			t.Errorf("%s: %q, want %q (got %v)", p, have[pfx(p)], why, got)
		}
	}
	if _, ok := have[pfx("198.18.200.253/32")]; ok {
		t.Errorf("the next hop of a route that is not a default route is protected: %v", got)
	}
	// The guard built on them refuses the entries that would cut the
	// namespace off and keeps the rest.
	g := New(defaults, got)
	for entry, ok := range map[string]bool{"198.18.200.0/24": false, "198.18.200.254/32": false, "198.18.200.128/25": false,
		"2001:2:0:9::/64": false, "198.18.201.0/24": true, "198.19.0.0/16": true, "2001:2:0:8::/64": true} {
		if _, got := g.Check(pfx(entry)); got != ok {
			t.Errorf("Check(%s) accepted %v, want %v", entry, got, ok)
		}
	}
}

// BenchmarkFeedUpdate is the guard's work on one update of a feed of 1M
// entries: screen and the growth check (which screens both versions).
func BenchmarkFeedUpdate(b *testing.B) {
	const n = 1 << 20
	ps := make([]netip.Prefix, n)
	for i := range ps {
		a := netip.AddrFrom4([4]byte{byte(11 + i>>18), byte(i >> 10), byte(i >> 2), byte(i << 6)})
		ps[i] = netip.PrefixFrom(a, 26+i%7).Masked()
	}
	var protect []Protected
	for i := range 1000 {
		protect = append(protect, Protected{netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 32), "allow list"})
	}
	g := New(defaults, protect)
	b.ResetTimer()
	for range b.N {
		g.Screen(ps)
		if err := g.Growth(ps[:n/2], ps); err != nil {
			b.Fatal(err)
		}
	}
}
