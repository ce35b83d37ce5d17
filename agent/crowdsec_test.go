package agent

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/crowdsec"
	"github.com/bulwark-filter/bulwark/agent/desired"
	"github.com/bulwark-filter/bulwark/loader"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// startupAddr is the i-th address of a startup answer: 198.18.64.0 + i.
func startupAddr(i int) netip.Addr {
	v := uint32(198)<<24 | uint32(18)<<16 | uint32(64)<<8 + uint32(i)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// startupAnswer is a /v1/decisions/stream startup answer of n ip ban
// decisions as crowdsec 1.4.6 writes them (origin cscli-import, 4 h).
func startupAnswer(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"deleted":null,"new":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"duration":"3h59m59.%03ds","id":%d,"origin":"cscli-import","scenario":"test/import","scope":"Ip","simulated":false,"type":"ban","until":"2026-01-01T04:00:00Z","value":"%s"}`,
			i%1000, i+1, startupAddr(i))
	}
	b.WriteString("]}\n")
	return []byte(b.String())
}

// crowdSecTestLink is a CrowdSec link of an agent over one real datapath
// (loaded, not attached) that pulls from lapi, auditing to a file.
func crowdSecTestLink(t testing.TB, d *loader.Datapath, lapi string) (*crowdSecLink, string) {
	t.Helper()
	cfg := &config.Config{}
	a, auditPath := testAgentOn(t, cfg, d, "bwk-cs0")
	u, err := url.Parse(lapi)
	if err != nil {
		t.Fatal(err)
	}
	settings := &desired.CrowdSec{URL: u, Interval: time.Second, Resync: time.Minute, MaxBytes: 1 << 30,
		Filter: crowdsec.Filter{Scopes: []string{crowdsec.ScopeIP, crowdsec.ScopeRange}, Max: 1 << 18,
			Actions: map[string]crowdsec.Action{"ban": crowdsec.ActionBlock}}}
	l, err := a.newCrowdSec(settings, cfg, d.Maps.Allow)
	if err != nil {
		t.Fatal(err)
	}
	return l, auditPath
}

// serveAnswer serves body as every answer of the decision stream.
func serveAnswer(t testing.TB, body []byte) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// countCrowdSecVerdicts is how many verdicts of origin crowdsec the
// datapath holds.
func countCrowdSecVerdicts(t testing.TB, d *loader.Datapath) int {
	t.Helper()
	vs, err := d.Maps.Verdicts()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, v := range vs {
		if v.Origin == maps.OriginCrowdSec && v.Action == maps.VerdictBlock {
			n++
		}
	}
	return n
}

// BenchmarkCrowdSecStartup100k times a startup pull of 100,000 ip
// decisions, from the LAPI's answer (served on loopback) to every verdict
// in the verdict map of a real datapath: read, decode, merge, guard,
// write, labels, audit. empty: a first start, the maps empty; restart: a
// new agent (an empty book) on maps that hold the verdicts already (pins
// kept); resync: the same agent's periodic full pull, nothing changed.
// Profile it with
// `go test -run '^$' -bench CrowdSecStartup -cpuprofile cpu.out ./agent/`.
func BenchmarkCrowdSecStartup100k(b *testing.B) {
	const n = 100_000
	sizes := testutil.SmallSizes()
	sizes.Verdicts = 1 << 18
	lapi := serveAnswer(b, startupAnswer(n))
	for _, c := range []struct {
		name   string
		before int // pulls before the timed one: by another link, then by the same
		same   bool
	}{{"empty", 0, false}, {"restart", 1, false}, {"resync", 1, true}} {
		b.Run(c.name, func(b *testing.B) {
			var cpu time.Duration // the process's CPU time in the pulls: the busy machine's load does not count
			for range b.N {
				b.StopTimer()
				d := testutil.Load(b, testutil.Setup{Sizes: sizes})
				l, _ := crowdSecTestLink(b, d, lapi)
				if c.before > 0 {
					if _, ok := l.pull(context.Background(), true); !ok {
						b.Fatal("the first startup pull failed")
					}
					if !c.same {
						l, _ = crowdSecTestLink(b, d, lapi)
					}
				}
				cpu0 := cpuTime(b)
				b.StartTimer()
				if _, ok := l.pull(context.Background(), true); !ok {
					b.Fatal("the startup pull failed")
				}
				b.StopTimer()
				cpu += cpuTime(b) - cpu0
				if got := countCrowdSecVerdicts(b, d); got != n {
					b.Fatalf("%d crowdsec verdicts in the map after the startup pull, want %d", got, n)
				}
				if st := l.statusNow(); st.Active != n || st.Decisions != n {
					b.Fatalf("status %+v after the startup pull; want %d decisions, all in force", st, n)
				}
				b.StartTimer()
			}
			b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
		})
	}
}

// applyAnswer is a startup answer of n decisions as a LAPI fed by
// scenarios, cscli and the community blocklist writes them: IPv4 hosts in
// 198.18.0.0/15, IPv6 hosts each in its own /64 of 2001:2::/48 (one in
// ten), IPv4 /28 and IPv6 /60 ranges (3 and 1 in 200), one ip decision in
// 50 a second one on the address before it (another scenario, shorter), a
// captcha on one in 20; four origins, eight scenarios, durations from
// minutes to a week with the LAPI's fractions of a second. It returns
// how many verdicts (sources) and ranges of the crowdsec list the apply
// writes, by the generator's own count.
func applyAnswer(n int) (body []byte, sources, ranges int) {
	origins := []string{"crowdsec", "cscli", "CAPI", "lists"}
	scenarios := []string{"crowdsecurity/ssh-bf", "crowdsecurity/http-probing", "crowdsecurity/http-bad-user-agent",
		"crowdsecurity/http-crawl-non_statics", "crowdsecurity/ssh-slow-bf", "crowdsecurity/http-sensitive-files",
		"firehol_greensnow", "manual 'ban' from 'host-1'"}
	var b strings.Builder
	b.Grow(n * 220)
	b.WriteString(`{"deleted":null,"new":[`)
	v4, v6, r4, r6 := 0, 0, 0, 0
	last := ""
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		scope, typ, value := "Ip", "ban", ""
		switch {
		case i%200 < 3:
			scope, value = "Range", netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(r4 >> 4), byte(r4 % 16 * 16)}), 28).String()
			r4++
		case i%200 == 3:
			scope, value = "Range", fmt.Sprintf("2001:2:0:%x::/60", r6*16)
			r6++
		case i%50 == 7 && last != "":
			value = last // a second decision on the address before: the first one wins (a ban, longer)
		case i%10 == 1:
			value = fmt.Sprintf("2001:2:0:%x::%x", v6, 1+i%4000)
			v6++
		default:
			value = netip.AddrFrom4([4]byte{198, 18 + byte(v4>>16), byte(v4 >> 8), byte(v4)}).String()
			v4++
			if i%20 == 5 {
				typ = "captcha"
			}
		}
		dur := fmt.Sprintf("%dh%dm%d.%09ds", 1+i%167, i%60, i%59, (i*7919)%1_000_000_000)
		if scope == "Ip" && value == last {
			dur = "59m" + dur[strings.Index(dur, "m")+1:]
		}
		if scope == "Ip" {
			last = value
		}
		fmt.Fprintf(&b, `{"duration":%q,"id":%d,"origin":%q,"scenario":%q,"scope":%q,"simulated":false,"type":%q,`+
			`"until":"2026-12-13T10:00:00.123456789Z","uuid":"%08x-1b2c-4d5e-8f90-%012x","value":%q}`,
			dur, 1_000_000+i, origins[i%len(origins)], scenarios[i%len(scenarios)], scope, typ, i, i, value)
	}
	b.WriteString("]}\n")
	return []byte(b.String()), v4 + v6, r4 + r6
}

// BenchmarkCrowdSecApply100k times the CPU path of a startup pull of
// 100,000 decisions (applyAnswer), without a LAPI or HTTP: the answer
// read from memory by the decoder, merged into the book, checked against
// the guard and written with its labels and audit record into the maps
// of a real datapath (a first start: empty maps). cpu-s/op is the
// process's CPU time (the busy machine's other tenants do not count);
// make bench reports it as "CrowdSec 100k startup apply (CPU path, no
// LAPI)" against the issue's "well under a second".
func BenchmarkCrowdSecApply100k(b *testing.B) {
	const n = 100_000
	body, sources, ranges := applyAnswer(n)
	sizes := testutil.SmallSizes()
	sizes.Verdicts, sizes.BlockPrefixes = 1<<18, 1<<13
	var cpu time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		d := testutil.Load(b, testutil.Setup{Sizes: sizes})
		l, _ := crowdSecTestLink(b, d, "http://127.0.0.1:1")
		l.book = crowdsec.NewBook(crowdsec.Filter{Scopes: []string{crowdsec.ScopeIP, crowdsec.ScopeRange}, Max: 1 << 18,
			Actions: map[string]crowdsec.Action{"ban": crowdsec.ActionBlock, "captcha": crowdsec.ActionThrottle}})
		runtime.GC()
		cpu0 := cpuTime(b)
		b.StartTimer()
		s, err := crowdsec.DecodeStream(bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		written, _, refused, ok := l.apply(s, true)
		b.StopTimer()
		cpu += cpuTime(b) - cpu0
		if !ok || written != sources+ranges || refused != 0 {
			b.Fatalf("apply: %d written, %d refused (%t); want %d sources and %d ranges, none refused", written, refused, ok, sources, ranges)
		}
		if v, r := countCrowdSecEntries(b, d); v != sources || r != ranges {
			b.Fatalf("the maps hold %d crowdsec verdicts and %d ranges; want %d and %d", v, r, sources, ranges)
		}
		b.StartTimer()
	}
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
	b.ReportMetric(float64(len(body))/1e6, "MB/answer")
}

// countCrowdSecEntries is how many verdicts of origin crowdsec, and
// block entries of its list, the datapath holds.
func countCrowdSecEntries(t testing.TB, d *loader.Datapath) (verdicts, ranges int) {
	t.Helper()
	vs, err := d.Maps.Verdicts()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		if v.Origin == maps.OriginCrowdSec {
			verdicts++
		}
	}
	es, err := d.Maps.Block.Entries()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if e.ListID == desired.ListCrowdSecBlock {
			ranges++
		}
	}
	return verdicts, ranges
}

// cpuTime is the process's CPU time so far, user and system.
func cpuTime(t testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestCrowdSecStartupPull: a startup answer of 1,000 decisions puts every
// one into the verdict map (block, origin crowdsec, the decision's
// remaining time) with its label; a new agent on the same maps (a
// restart) keeps them, and a resync that drops half removes that half.
func TestCrowdSecStartupPull(t *testing.T) {
	const n = 1000
	sizes := testutil.SmallSizes()
	sizes.Verdicts = 4096
	d := testutil.Load(t, testutil.Setup{Sizes: sizes})
	var body atomic.Pointer[[]byte]
	first := startupAnswer(n)
	body.Store(&first)
	lapi := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(*body.Load()) }))
	defer lapi.Close()
	check := func(l *crowdSecLink, want int) {
		t.Helper()
		mono := monotonicNow()
		vs, err := d.Maps.Verdicts()
		if err != nil {
			t.Fatal(err)
		}
		got := map[netip.Prefix]maps.VerdictEntry{}
		for _, v := range vs {
			got[v.Source] = v
		}
		for i := range n {
			key := netip.PrefixFrom(startupAddr(i), 32)
			v, ok := got[key]
			// 3h59m59s and a fraction from the answer; the pull took less than a minute.
			left := time.Duration(v.ExpiresNS - mono)
			switch {
			case i >= want && ok:
				t.Errorf("%s: a verdict %+v after the LAPI dropped its decision", key, v)
			case i >= want:
			case !ok || v.Action != maps.VerdictBlock || v.Origin != maps.OriginCrowdSec || left > 4*time.Hour || left < 4*time.Hour-time.Minute:
				t.Fatalf("%s: verdict %+v (present %t, %s left); want a crowdsec block of about 4 h", key, v, ok, left)
			case l.label(key) != "crowdsec:cscli-import/test/import":
				t.Fatalf("%s: label %q", key, l.label(key))
			}
		}
		if st := l.statusNow(); st.Active != want || st.Decisions != want {
			t.Errorf("status %+v; want %d decisions, all in force", st, want)
		}
	}
	l, auditPath := crowdSecTestLink(t, d, lapi.URL)
	if _, ok := l.pull(context.Background(), true); !ok {
		t.Fatal("the startup pull failed")
	}
	check(l, n)
	audit, err := os.ReadFile(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	if c := strings.Count(string(audit), `"crowdsec.pull"`); c != 1 || !strings.Contains(string(audit), fmt.Sprintf("%d written", n)) {
		t.Errorf("audit log %s; want one crowdsec.pull record of %d written", audit, n)
	}
	l, _ = crowdSecTestLink(t, d, lapi.URL) // a restarted agent: the maps hold them, its book is empty
	if _, ok := l.pull(context.Background(), true); !ok {
		t.Fatal("the restarted agent's startup pull failed")
	}
	check(l, n)
	half := startupAnswer(n / 2)
	body.Store(&half)
	if _, ok := l.pull(context.Background(), true); !ok {
		t.Fatal("the resync failed")
	}
	check(l, n/2)
}

// TestCrowdSecBadAnswer: after a startup pull of 1,000 decisions, an
// answer cut short or with a decision of the wrong type fails the pull
// with where it is wrong, and changes nothing: every verdict and label
// stays, the status shows the error.
func TestCrowdSecBadAnswer(t *testing.T) {
	const n = 1000
	sizes := testutil.SmallSizes()
	sizes.Verdicts = 4096
	d := testutil.Load(t, testutil.Setup{Sizes: sizes})
	good := startupAnswer(n)
	var body atomic.Pointer[[]byte]
	body.Store(&good)
	lapi := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(*body.Load()) }))
	defer lapi.Close()
	l, _ := crowdSecTestLink(t, d, lapi.URL)
	if _, ok := l.pull(context.Background(), true); !ok {
		t.Fatal("the first startup pull failed")
	}
	cut := good[:len(good)/2]
	wrong := []byte(strings.Replace(string(good), `"id":501,`, `"id":"501",`, 1))
	for _, c := range []struct {
		name string
		body []byte
		want string
	}{
		{"cut short", cut, "at byte"},
		{"an id that is a string", wrong, "new: decision 501 at byte"},
	} {
		body.Store(&c.body)
		if _, ok := l.pull(context.Background(), true); ok {
			t.Fatalf("%s: the pull worked", c.name)
		}
		st := l.statusNow()
		t.Logf("%s: %s", c.name, st.LastError)
		if !strings.Contains(st.LastError, "not a decision stream") || !strings.Contains(st.LastError, c.want) || st.Reachable {
			t.Errorf("%s: status error %q (reachable %t); want one with %q", c.name, st.LastError, st.Reachable, c.want)
		}
		if got := countCrowdSecVerdicts(t, d); got != n || st.Active != n || st.Decisions != n {
			t.Errorf("%s: %d verdicts in the map, status %d in force of %d held; want all %d kept", c.name, got, st.Active, st.Decisions, n)
		}
		if lab := l.label(netip.PrefixFrom(startupAddr(7), 32)); lab != "crowdsec:cscli-import/test/import" {
			t.Errorf("%s: label %q after the bad answer", c.name, lab)
		}
	}
}

// TestNextPull: which pull after this one is a startup pull.
func TestNextPull(t *testing.T) {
	const iv, resync = 2 * time.Second, time.Minute
	for _, c := range []struct {
		name                 string
		startup, ok          bool
		read                 int
		dirty                bool
		since, full          time.Duration
		wantStartup, wantDty bool
	}{
		{"a failed pull", false, false, 0, false, time.Second, 0, true, false},
		{"a failed pull keeps dirty", false, false, 0, true, time.Second, 0, true, true},
		{"after a startup pull", true, true, 100, true, 0, 0, false, false},
		{"a delta with decisions", false, true, 3, false, 4 * time.Second, 0, false, true},
		{"a quiet delta, nothing before", false, true, 0, false, 30 * time.Second, 0, false, false},
		{"a quiet delta after a burst", false, true, 0, true, 10 * time.Second, 0, true, true},
		{"a quiet delta after a burst, too soon after a startup pull", false, true, 0, true, 9 * time.Second, 0, false, true},
		{"a quiet delta after a burst, the last startup pull slow", false, true, 0, true, 10 * time.Second, 12 * time.Second, false, true},
		{"... and its time later", false, true, 0, true, 12 * time.Second, 12 * time.Second, true, true},
		{"the resync", false, true, 0, false, resync, 0, true, false},
		{"the resync, with decisions", false, true, 5, false, resync, 0, true, true},
		{"the resync, the last startup pull took 90 s", false, true, 0, false, resync, 90 * time.Second, false, false},
		{"... and 90 s later", false, true, 0, false, 90 * time.Second, 90 * time.Second, true, false},
	} {
		s, d := nextPull(c.startup, c.ok, c.read, c.dirty, c.since, c.full, iv, resync)
		if s != c.wantStartup || d != c.wantDty {
			t.Errorf("%s: startup %t, dirty %t; want %t, %t", c.name, s, d, c.wantStartup, c.wantDty)
		}
	}
}
