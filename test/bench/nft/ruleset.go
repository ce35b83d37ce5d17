package nft

import (
	"fmt"
	"math/rand"
	"net/netip"
	"os/exec"
	"sort"
	"strings"

	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/netns"
)

// Layout is how the nft receiver holds a block list.
type Layout int

const (
	// OneSet: one interval set per family for every entry, hosts included
	// (the configuration of the first comparison).
	OneSet Layout = iota
	// Split: what an operator writes for speed, nft's best configuration:
	// a hash set (no interval flag) of the single hosts and an interval
	// set of the prefixes, per family, the host set matched first.
	Split
	// Bouncer: the set crowdsec-firewall-bouncer (nftables mode) writes
	// its ip decisions to: one hash set of IPv4 addresses with the
	// timeout flag, each element with its decision's timeout (4 h here).
	// Its own chain hooks input, after the IP stack; here the set is
	// matched in the same ingress chain as the other layouts, nft's
	// cheapest place.
	Bouncer
)

// Receiver names of the two layouts.
func (l Layout) String() string {
	switch l {
	case Split:
		return "nft-split"
	case Bouncer:
		return "nft-bouncer"
	}
	return "nft"
}

// bouncerTimeout is the timeout of the Bouncer layout's elements.
const bouncerTimeout = "4h"

// nftSet is one named set of a ruleset.
type nftSet struct {
	Name     string
	Type     string // ipv4_addr or ipv6_addr
	Interval bool
	Timeout  string // the timeout of every element (flags timeout); "" for none
	Elems    []string
}

// blockSets splits a block list into the sets of a layout, in the order
// their rules are matched. Empty sets are left out.
func blockSets(block []maps.Entry, l Layout) []nftSet {
	var h4, h6, n4, n6 []string
	for _, e := range block {
		p := e.Prefix.Masked()
		host := p.IsSingleIP()
		s := p.String()
		if host {
			s = p.Addr().String()
		}
		switch {
		case p.Addr().Is4() && host:
			h4 = append(h4, s)
		case p.Addr().Is4():
			n4 = append(n4, s)
		case host:
			h6 = append(h6, s)
		default:
			n6 = append(n6, s)
		}
	}
	var sets []nftSet
	add := func(name, typ string, interval bool, elems ...[]string) {
		var all []string
		for _, e := range elems {
			all = append(all, e...)
		}
		if len(all) > 0 {
			sets = append(sets, nftSet{Name: name, Type: typ, Interval: interval, Elems: all})
		}
	}
	if l == Bouncer {
		sets = append(sets, nftSet{Name: "blacklists", Type: "ipv4_addr", Timeout: bouncerTimeout, Elems: h4})
		return sets
	}
	if l == Split {
		add("hosts4", "ipv4_addr", false, h4)
		add("nets4", "ipv4_addr", true, n4)
		add("hosts6", "ipv6_addr", false, h6)
		add("nets6", "ipv6_addr", true, n6)
	} else {
		// Entries in list order, as the first comparison loaded them.
		var a4, a6 []string
		for _, e := range block {
			p := e.Prefix.Masked()
			s := p.String()
			if p.IsSingleIP() {
				s = p.Addr().String()
			}
			if p.Addr().Is4() {
				a4 = append(a4, s)
			} else {
				a6 = append(a6, s)
			}
		}
		add("block4", "ipv4_addr", true, a4)
		add("block6", "ipv6_addr", true, a6)
	}
	return sets
}

// Ruleset is the nft file of a receiver on device dev: drop everything
// (block empty, pps 0), a block list in a layout, or a per-source limit
// of pps (dynamic set keyed by saddr). Drops count into the named counter
// "cdrop", what passes into "cpass".
func Ruleset(dev string, block []maps.Entry, l Layout, pps uint64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table netdev %s {\n\tcounter cdrop { }\n\tcounter cpass { }\n", nftTable)
	var rules []string
	switch {
	case pps > 0:
		b.WriteString("\tset lim { type ipv4_addr; size 65536; flags dynamic,timeout; timeout 60s; }\n")
		rules = append(rules, fmt.Sprintf("update @lim { ip saddr limit rate over %d/second burst 5 packets } counter name \"cdrop\" drop", pps))
	case len(block) > 0:
		for _, s := range blockSets(block, l) {
			flags, timeout := "", ""
			if s.Interval {
				flags = " flags interval;"
			}
			if s.Timeout != "" {
				flags, timeout = " flags timeout;", " timeout "+s.Timeout
			}
			fmt.Fprintf(&b, "\tset %s { type %s;%s elements = {\n", s.Name, s.Type, flags)
			for i, e := range s.Elems {
				b.WriteString(e + timeout)
				if i < len(s.Elems)-1 {
					b.WriteByte(',')
				}
				if i%8 == 7 && i < len(s.Elems)-1 {
					b.WriteByte('\n')
				}
			}
			b.WriteString(" }; }\n")
			fam := "ip"
			if s.Type == "ipv6_addr" {
				fam = "ip6"
			}
			rules = append(rules, fmt.Sprintf("%s saddr @%s counter name \"cdrop\" drop", fam, s.Name))
		}
	default:
		rules = append(rules, "counter name \"cdrop\" drop")
	}
	fmt.Fprintf(&b, "\tchain in {\n\t\ttype filter hook ingress device %q priority -500; policy accept;\n", dev)
	for _, r := range rules {
		fmt.Fprintf(&b, "\t\t%s\n", r)
	}
	b.WriteString("\t\tcounter name \"cpass\"\n\t}\n}\n")
	return b.String()
}

// Covered tells whether a is in one of the entries, by arithmetic on the
// sorted, non-overlapping list (Entries makes no overlaps): the expected
// verdict the receivers are checked against.
func Covered(sorted []netip.Prefix, a netip.Addr) bool {
	i := sort.Search(len(sorted), func(i int) bool { return sorted[i].Addr().Compare(a) > 0 })
	return i > 0 && sorted[i-1].Contains(a)
}

// SortedPrefixes is the block list's prefixes in address order, for Covered.
func SortedPrefixes(block []maps.Entry) []netip.Prefix {
	ps := make([]netip.Prefix, len(block))
	for i, e := range block {
		ps[i] = e.Prefix.Masked()
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].Addr().Compare(ps[j].Addr()) < 0 })
	return ps
}

// Sample picks k listed hosts, k addresses inside listed prefixes (the
// first, the last, or a random one) and k addresses no entry covers, seeded.
// It returns the addresses and whether each must be dropped (by Covered).
func Sample(block []maps.Entry, k int, seed int64) ([]netip.Addr, []bool) {
	if len(block) == 0 {
		return nil, nil
	}
	rng := rand.New(rand.NewSource(seed))
	sorted := SortedPrefixes(block)
	var hosts, nets []netip.Prefix
	for _, p := range sorted {
		if p.IsSingleIP() {
			hosts = append(hosts, p)
		} else {
			nets = append(nets, p)
		}
	}
	var out []netip.Addr
	pick := func(ps []netip.Prefix) {
		for i := 0; i < k && len(ps) > 0; i++ {
			p := ps[rng.Intn(len(ps))]
			out = append(out, inside(p, rng))
		}
	}
	pick(hosts)
	pick(nets)
	// Misses: next to a listed entry (one past its last address), or
	// random, kept only if no entry covers them.
	for tries, misses := 0, 0; misses < k && tries < 100*k; tries++ {
		p := sorted[rng.Intn(len(sorted))]
		a := lastAddr(p).Next()
		if tries%2 == 1 {
			a = randomLike(p.Addr(), rng)
		}
		if a.IsValid() && !Covered(sorted, a) {
			out = append(out, a)
			misses++
		}
	}
	want := make([]bool, len(out))
	for i, a := range out {
		want[i] = Covered(sorted, a)
	}
	return out, want
}

// inside is the first, the last or a random address of p.
func inside(p netip.Prefix, rng *rand.Rand) netip.Addr {
	switch rng.Intn(3) {
	case 0:
		return p.Addr()
	case 1:
		return lastAddr(p)
	}
	b := p.Addr().AsSlice()
	r := randomLike(p.Addr(), rng).AsSlice()
	for i := range b {
		hostBits := max(0, min(8, (i+1)*8-p.Bits()))
		m := byte(1<<hostBits - 1)
		b[i] = b[i]&^m | r[i]&m
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// lastAddr is the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := range b {
		hostBits := max(0, min(8, (i+1)*8-p.Bits()))
		b[i] |= byte(1<<hostBits - 1)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// randomLike is a random address of a's family.
func randomLike(a netip.Addr, rng *rand.Rand) netip.Addr {
	b := a.AsSlice()
	for i := range b {
		b[i] = byte(rng.Intn(256))
	}
	r, _ := netip.AddrFromSlice(b)
	return r
}

// nftDrops tells whether the ruleset's sets drop frames from addrs: each
// address is looked up in each set of its family with `nft get element`,
// all in one `nft -i` session, which answers ENOENT, echoing the command,
// when no element covers it.
func nftDrops(tb *netns.Testbed, sets []nftSet, addrs []netip.Addr) ([]bool, error) {
	var cmds strings.Builder
	n := 0
	for _, a := range addrs {
		for _, s := range sets {
			if (s.Type == "ipv4_addr") == a.Is4() {
				fmt.Fprintf(&cmds, "get element netdev %s %s { %s }\n", nftTable, s.Name, a)
				n++
			}
		}
	}
	cmd := exec.Command("ip", "netns", "exec", tb.Server, "nft", "-i")
	cmd.Stdin = strings.NewReader(cmds.String())
	out, _ := cmd.CombinedOutput() // the exit status is that of the last command
	missing := map[string]bool{}
	found, errs := 0, 0
	lines := strings.Split(string(out), "\n")
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "table netdev "+nftTable+" {"):
			found++
		case strings.HasPrefix(l, "Error:"):
			if !strings.Contains(l, "No such file or directory") || i+1 >= len(lines) {
				return nil, fmt.Errorf("nft get element: %s", l)
			}
			f := strings.Fields(lines[i+1]) // get element netdev TABLE SET { ADDR }
			if len(f) != 8 || f[0] != "get" {
				return nil, fmt.Errorf("nft get element: unexpected echo %q", lines[i+1])
			}
			missing[f[4]+" "+f[6]] = true
			errs++
		}
	}
	if found+errs != n {
		return nil, fmt.Errorf("nft get element: %d found and %d missing of %d lookups: %.1000s", found, errs, n, out)
	}
	got := make([]bool, len(addrs))
	for i, a := range addrs {
		for _, s := range sets {
			if (s.Type == "ipv4_addr") == a.Is4() && !missing[s.Name+" "+a.String()] {
				got[i] = true
			}
		}
	}
	return got, nil
}

// CheckSample checks that the receiver drops exactly the addresses marked
// in want (from Sample), without sending traffic: Bulwark runs a frame
// through its program, nft looks the address up in its sets. Receivers
// without a block list have nothing to check.
func CheckSample(r *Receiver, addrs []netip.Addr, want []bool) error {
	if r.drops == nil {
		return nil
	}
	got, err := r.drops(addrs)
	if err != nil {
		return fmt.Errorf("%s: %w", r.Name, err)
	}
	var bad []string
	for i, a := range addrs {
		if got[i] != want[i] {
			bad = append(bad, fmt.Sprintf("%s dropped=%v want %v", a, got[i], want[i]))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%s %d entries: %d of %d sampled verdicts wrong: %s", r.Name, r.Entries, len(bad), len(addrs), strings.Join(bad, "; "))
	}
	return nil
}
