// Package migrate tests the move of a host's ipset and nftables block sets
// into Bulwark: the real ipset and nft build sets in a network namespace of
// the test's own (the host's sets are untouched), `ipset save` and `nft -j
// list set|ruleset` export them, `bulwark block import` reads the exports
// into a real agent, and the agent's XDP program then drops the frames of
// exactly the sets' addresses.
package migrate

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/agent/api"
	"github.com/bulwark-filter/bulwark/test/agenttest"
)

func TestMain(m *testing.M) { os.Exit(agenttest.Main(m, "bwk-mig-bin-")) }

// frames is how many frames each check sends from one source.
const frames = 20

// setsNS makes a network namespace for the sets and removes it (and so its
// sets and tables) at the end.
func setsNS(t *testing.T) string {
	t.Helper()
	ns := "bwk-mig-" + agenttest.RandHex(4)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Logf("cleanup: ip netns del %s: %v: %s", ns, err, out)
		}
	})
	return ns
}

// inNS runs a command in ns with stdin and returns its stdout.
func inNS(t *testing.T, ns, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var errb strings.Builder
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return string(out)
}

// importFile runs `bulwark block import` and returns its stdout; the
// command must succeed.
func importFile(t *testing.T, e *agenttest.Env, args ...string) string {
	t.Helper()
	return e.MustCLI(append([]string{"block", "import"}, args...)...)
}

// The sets: what the test puts in them, and the prefixes that cover exactly
// those addresses (by hand: 198.18.54.1-198.18.54.3 is .1/32 and .2/31).
var (
	ipsetScript = `create mig4 hash:ip family inet
add mig4 198.18.50.1
add mig4 198.18.50.2
create mignet hash:net family inet
add mignet 198.18.51.0/24
create mig6 hash:net family inet6
add mig6 2001:2:0:50::/64
create ports hash:ip,port family inet
add ports 198.18.59.1,tcp:22
`
	ipsetWant = []string{"198.18.50.1/32", "198.18.50.2/32", "198.18.51.0/24", "2001:2:0:50::/64"}

	nftScript = `table inet mig {
	set blk4 {
		type ipv4_addr
		flags interval
		elements = { 198.18.52.7, 198.18.53.0/24, 198.18.54.1-198.18.54.3 }
	}
	set blk6 {
		type ipv6_addr
		flags interval
		elements = { 2001:2:0:52::/64, 2001:2:0:53::9 }
	}
	set other {
		type ipv4_addr
		elements = { 198.18.58.1 }
	}
}
`
	nftSetWant     = []string{"198.18.52.7/32", "198.18.53.0/24", "198.18.54.1/32", "198.18.54.2/31"}
	nftRulesetWant = []string{"2001:2:0:52::/64", "2001:2:0:53::9/128"}

	// Addresses in the sets (dropped after the import) and next to them
	// (delivered).
	inSets = []string{"198.18.50.1", "198.18.50.2", "198.18.51.77", "2001:2:0:50::1234", "198.18.52.7",
		"198.18.53.200", "198.18.54.1", "198.18.54.3", "2001:2:0:52::1", "2001:2:0:53::9"}
	outside = []string{"198.18.50.3", "198.18.52.8", "198.18.54.0", "198.18.54.4", "2001:2:0:53::a", "198.18.58.1",
		"198.18.59.1", "2001:2:0:51::1"}
)

func TestMigrateIPSetAndNFT(t *testing.T) {
	e := agenttest.NewEnv(t, agenttest.Options{DirPrefix: "bwk-mig-", Receiver: true, Sender: true})
	// 198.18.51.0/24 is in the config's block list too: the import leaves
	// it as it is (origin config).
	e.WriteConfig("", agenttest.Config{Block: []string{"198.18.51.0/24"}})
	e.Start()
	for _, s := range append(slices.Clone(inSets), outside...) {
		if s == "198.18.51.77" {
			continue // in the config's block list
		}
		if got := e.Send(agenttest.Addr(s), frames); got != frames {
			t.Fatalf("before the import: %d of %d frames from %s delivered", got, frames, s)
		}
	}

	ns := setsNS(t)
	inNS(t, ns, ipsetScript, "ipset", "restore")
	inNS(t, ns, nftScript, "nft", "-f", "-")
	write := func(name, text string) string {
		p := filepath.Join(e.Dir, name)
		agenttest.WriteFile(t, p, text)
		return p
	}
	ipsetFile := write("ipset.save", inNS(t, ns, "", "ipset", "save"))
	setFile := write("blk4.json", inNS(t, ns, "", "nft", "-j", "list", "set", "inet", "mig", "blk4"))
	rulesetFile := write("ruleset.json", inNS(t, ns, "", "nft", "-j", "list", "ruleset"))

	// A dry run says what would change and changes nothing.
	out := importFile(t, e, ipsetFile, "--dry-run")
	wantDry := []string{"dry run: would add 3, already present 1"}
	for _, c := range ipsetWant {
		if c == "198.18.51.0/24" {
			wantDry = append(wantDry, "= "+c+" (config)")
		} else {
			wantDry = append(wantDry, "+ "+c)
		}
	}
	// ipset save lists a hash's elements in no set order: compare the
	// lines after the first as sets.
	got := strings.Split(strings.TrimSpace(out), "\n")
	slices.Sort(got[1:])
	slices.Sort(wantDry[1:])
	if !slices.Equal(got, wantDry) {
		t.Errorf("dry run:\n%s\nwant:\n%s", out, strings.Join(wantDry, "\n"))
	}
	if es := e.List("block"); len(es) != 1 {
		t.Fatalf("after the dry run the block list holds %d entries, want the config's 1: %+v", len(es), es)
	}

	// Bad input: a precise error, exit 2, nothing imported.
	bad := write("bad.save", "create s hash:ip family inet\nadd s 198.18.57.1\nadd s 198.18.57.300\n")
	if r := e.CLI("block", "import", bad); r.Code != 2 || !strings.Contains(r.Stderr, `line 3: set "s": "198.18.57.300" is not an IP address`) {
		t.Errorf("bad input: %s; want exit 2 naming line 3", r)
	}
	if es := e.List("block"); len(es) != 1 {
		t.Fatalf("after a refused import the block list holds %d entries, want 1: %+v", len(es), es)
	}

	// The imports: ipset save (auto-detected), an nft set, one set of an
	// nft ruleset; again, and everything is present.
	if out := importFile(t, e, ipsetFile, "--reason", "from ipset", "--ttl", "1h"); out != "added 3, already present 1\n" {
		t.Errorf("ipset import: %q", out)
	}
	if out := importFile(t, e, setFile, "--format", "nft"); out != fmt.Sprintf("added %d, already present 0\n", len(nftSetWant)) {
		t.Errorf("nft set import: %q", out)
	}
	if out := importFile(t, e, rulesetFile, "--set", "blk6"); out != fmt.Sprintf("added %d, already present 0\n", len(nftRulesetWant)) {
		t.Errorf("nft ruleset import: %q", out)
	}
	if out := importFile(t, e, ipsetFile); out != "added 0, already present 4\n" {
		t.Errorf("second ipset import: %q", out)
	}

	// The block list is the sets' prefixes, with their origins; the ipset
	// entries have the TTL.
	want := slices.Concat(ipsetWant, nftSetWant, nftRulesetWant)
	es := e.List("block")
	got = nil
	for _, le := range es {
		got = append(got, le.CIDR)
		wantOrigin, ttl := "runtime", slices.Contains(ipsetWant, le.CIDR)
		if le.CIDR == "198.18.51.0/24" {
			wantOrigin, ttl = "config", false
		}
		if le.Origin != wantOrigin || (ttl != (le.ExpiresIn > 3000 && le.ExpiresIn <= 3600)) || (!ttl && le.ExpiresIn != 0) {
			t.Errorf("entry %+v: want origin %s, TTL %v (1h)", le, wantOrigin, ttl)
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("block list %v, want %v", got, want)
	}
	if r := e.CLI("block", "list"); r.Code != 0 || !strings.Contains(r.Stdout, "ORIGIN") || !strings.Contains(r.Stdout, "runtime") {
		t.Errorf("block list (table) shows no origins: %s", r)
	}

	// The export reads back as the same list.
	plain := strings.Fields(e.MustCLI("block", "export"))
	slices.Sort(plain)
	if !slices.Equal(plain, want) {
		t.Errorf("block export: %v, want %v", plain, want)
	}
	var exported []api.ListEntry
	if err := json.Unmarshal([]byte(e.MustCLI("block", "export", "--format", "json")), &exported); err != nil || len(exported) != len(want) {
		t.Errorf("block export --format json: %d entries, %v; want %d", len(exported), err, len(want))
	}

	// The plain export, read back on stdin, is all present.
	cmd := exec.Command(agenttest.Bin, "--socket", e.Sock, "block", "import", "-", "--dry-run")
	cmd.Stdin = strings.NewReader(e.MustCLI("block", "export"))
	if out, err := cmd.Output(); err != nil || !strings.HasPrefix(string(out), fmt.Sprintf("dry run: would add 0, already present %d\n", len(want))) {
		t.Errorf("export | import - --dry-run: %v: %q", err, out)
	}

	// The datapath: frames from the sets' addresses are dropped, the others
	// delivered.
	for _, s := range inSets {
		if got := e.Send(agenttest.Addr(s), frames); got != 0 {
			t.Errorf("%s (in a set): %d of %d frames delivered, want 0", s, got, frames)
		}
	}
	for _, s := range outside {
		if got := e.Send(agenttest.Addr(s), frames); got != frames {
			t.Errorf("%s (in no set): %d of %d frames delivered", s, got, frames)
		}
	}
	// allow import takes the same input: an allowed address passes
	// although a block set holds it (the allow list wins).
	allowFile := write("allow.txt", "# monitoring\n198.18.52.7\n")
	if out := e.MustCLI("allow", "import", allowFile); out != "added 1, already present 0\n" {
		t.Errorf("allow import: %q", out)
	}
	if got := e.Send(agenttest.Addr("198.18.52.7"), frames); got != frames {
		t.Errorf("198.18.52.7 allowed by import: %d of %d frames delivered", got, frames)
	}
	// The import is in the audit log with its reason.
	n := 0
	for _, r := range agenttest.AuditLog[struct {
		What, Why, Result string
	}](e) {
		if r.What == "block.import" && r.Why == "from ipset" && r.Result == "ok" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("audit log: %d ok block.import records with reason %q, want 1", n, "from ipset")
	}
}

// TestImportLarge imports 100,000 hosts (90,000 IPv4, 10,000 IPv6) from a
// plain list in one request and logs how long the import and a dry run of
// it take; the first, the last and one outside are checked in the
// datapath.
func TestImportLarge(t *testing.T) {
	const n4, n6 = 90000, 10000
	e := agenttest.NewEnv(t, agenttest.Options{DirPrefix: "bwk-mig-", Receiver: true, Sender: true})
	e.WriteConfig("", agenttest.Config{Maps: agenttest.Sizes{BlockHosts: 1 << 17}})
	e.Start()
	var b strings.Builder
	first := agenttest.Addr("198.18.128.0")
	a := first
	var last4 netip.Addr
	for range n4 {
		b.WriteString(a.String() + "\n")
		last4, a = a, a.Next()
	}
	outside := a // the address after the last
	a6 := agenttest.Addr("2001:2:0:99::1")
	var last6 netip.Addr
	for range n6 {
		b.WriteString(a6.String() + "\n")
		last6, a6 = a6, a6.Next()
	}
	list := filepath.Join(e.Dir, "big.txt")
	agenttest.WriteFile(t, list, b.String())

	start := time.Now()
	if out := importFile(t, e, list, "--dry-run"); !strings.HasPrefix(out, fmt.Sprintf("dry run: would add %d, already present 0\n", n4+n6)) {
		t.Fatalf("dry run: %.200q", out)
	}
	dry := time.Since(start)
	start = time.Now()
	if out := importFile(t, e, list); out != fmt.Sprintf("added %d, already present 0\n", n4+n6) {
		t.Fatalf("import: %q", out)
	}
	t.Logf("import of %d hosts: dry run %s, import %s (each: the CLI's parse, one request, the agent's write)", n4+n6, dry, time.Since(start))
	if got := len(e.List("block")); got != n4+n6 {
		t.Errorf("block list holds %d entries, want %d", got, n4+n6)
	}
	for _, src := range []netip.Addr{first, last4, last6} {
		if got := e.Send(src, frames); got != 0 {
			t.Errorf("%s (imported): %d of %d frames delivered, want 0", src, got, frames)
		}
	}
	if got := e.Send(outside, frames); got != frames {
		t.Errorf("%s (not imported): %d of %d frames delivered", outside, got, frames)
	}
}
