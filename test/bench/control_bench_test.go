package bench

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/agent/feeds"
	"github.com/bulwark-filter/bulwark/loader"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// hostEntries is n distinct /32 entries in 198.18.0.0/15 and beyond it
// only as 2001:2::/48 hosts (the benchmark ranges).
func hostEntries(n, offset int, id uint32) []maps.Entry {
	es := make([]maps.Entry, n)
	for i := range es {
		k := i + offset
		var a netip.Addr
		if k < 1<<17 {
			a = netip.AddrFrom4([4]byte{198, byte(18 + k>>16), byte(k >> 8), byte(k)})
		} else {
			b := netip.MustParseAddr("2001:2::").As16()
			b[13], b[14], b[15] = byte(k>>16), byte(k>>8), byte(k)
			a = netip.AddrFrom16(b)
		}
		es[i] = maps.Entry{Prefix: netip.PrefixFrom(a, a.BitLen()), ListID: id}
	}
	return es
}

// BenchmarkReconcile1M loads 1M block entries, then applies a 10 % change
// the way a reload does (make-before-break: 100k new entries written, then
// 100k stale ones deleted) and reports both times.
func BenchmarkReconcile1M(b *testing.B) {
	const n = 1_000_000
	s := testutil.SmallSizes()
	s.BlockHosts = 1 << 20
	d := testutil.Load(b, testutil.Setup{Sizes: s})
	all := hostEntries(n, 0, 3)
	start := time.Now()
	if err := d.Maps.Block.Add(all); err != nil {
		b.Fatal(err)
	}
	load := time.Since(start)
	b.ResetTimer()
	var change time.Duration
	for i := 0; i < b.N; i++ {
		added := hostEntries(n/10, n+i*(n/10), 3)
		stale := make([]netip.Prefix, n/10)
		for j := range stale {
			stale[j] = all[(i*(n/10)+j)%n].Prefix
		}
		t0 := time.Now()
		if err := d.Maps.Block.Add(added); err != nil {
			b.Fatal(err)
		}
		if err := d.Maps.Block.Delete(stale); err != nil {
			b.Fatal(err)
		}
		change += time.Since(t0)
		// Restore the list for the next round (not timed).
		b.StopTimer()
		ps := make([]netip.Prefix, len(added))
		for j, e := range added {
			ps[j] = e.Prefix
		}
		if err := d.Maps.Block.Delete(ps); err != nil {
			b.Fatal(err)
		}
		readd := make([]maps.Entry, len(stale))
		for j, p := range stale {
			readd[j] = maps.Entry{Prefix: p, ListID: 3}
		}
		if err := d.Maps.Block.Add(readd); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(load.Seconds(), "s/load-1M")
	b.ReportMetric(change.Seconds()/float64(b.N), "s/change-10%")
}

// BenchmarkFeedParse parses a million-line plain feed.
func BenchmarkFeedParse(b *testing.B) {
	var buf bytes.Buffer
	buf.WriteString("# a feed\n")
	for _, e := range hostEntries(1_000_000, 0, 0) {
		fmt.Fprintf(&buf, "%s\n", e.Prefix.Addr())
	}
	data := buf.Bytes()
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	var total time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		l, err := feeds.Parse(feeds.FormatPlain, bytes.NewReader(data), feeds.ParseOptions{})
		if err != nil || l.Len() != 1_000_000 {
			b.Fatalf("parse: %v, %d entries", err, l.Len())
		}
		total += time.Since(t0)
	}
	b.ReportMetric(1_000_000*float64(b.N)/total.Seconds(), "entries/s")
}

// BenchmarkMapMemory reports the kernel memory of every map at the
// default sizes, as the kernel reports it (memlock), and the total.
func BenchmarkMapMemory(b *testing.B) {
	testutil.RequireRoot(b)
	d, err := loader.Load(loader.Options{Sizes: loader.DefaultSizes()})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	mem, err := d.Maps.Memory()
	if err != nil {
		b.Fatal(err)
	}
	var total uint64
	for name, n := range mem {
		total += n
		b.ReportMetric(float64(n)/1e6, "MB:"+name)
	}
	b.ReportMetric(float64(total)/1e6, "MB:total")
}
