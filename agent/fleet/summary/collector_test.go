package summary

import (
	"reflect"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/maps"
)

func TestCollector(t *testing.T) {
	const m0 = uint64(1000) << 30 // datapath time at wall t0, on a kernel port window boundary
	mono := func(d time.Duration) uint64 { return m0 + uint64(d) }
	kw := func(d time.Duration) uint32 { return maps.PortWindowOf(mono(d)) }
	c, err := NewCollector("edge-1", time.Minute, 3)
	if err != nil {
		t.Fatal(err)
	}
	a, b, old, icmp, over := v4(1), v4(2), v4(3), v4(4), v4(5)
	at := func(d time.Duration, srcs ...maps.Source) { c.Observe(0, t0.Add(d), mono(d), srcs) }
	// t0+5s: a (active before the window, 100 packets so far, port 22 this
	// kernel window), b (new in the window: 5 packets, port 80), old (last
	// seen before the window: ignored).
	at(5*time.Second,
		maps.Source{Source: a, FirstSeenNS: m0 - uint64(10*time.Second), LastSeenNS: mono(5 * time.Second), Packets: 100,
			PortWindow: kw(5 * time.Second), PortBits: sketchOf(22)},
		maps.Source{Source: b, FirstSeenNS: mono(2 * time.Second), LastSeenNS: mono(2 * time.Second), Packets: 5,
			PortWindow: kw(2 * time.Second), PortBits: sketchOf(80)},
		maps.Source{Source: old, FirstSeenNS: 1, LastSeenNS: m0 - 1, Packets: 9, PortWindow: kw(-2 * time.Second), PortBits: sketchOf(9)})
	// t0+30s: a again, port 23 in a later kernel window (port 22's bits are
	// gone from the datapath); icmp: only ICMP in the window, its port bits
	// are of a kernel window that ended before the window began; over: a
	// third source in the window, over the cap of 3 (a, b, icmp).
	at(30*time.Second,
		maps.Source{Source: a, FirstSeenNS: m0 - uint64(10*time.Second), LastSeenNS: mono(30 * time.Second), Packets: 103,
			PortWindow: kw(30 * time.Second), PortBits: sketchOf(23)},
		maps.Source{Source: icmp, FirstSeenNS: 1, LastSeenNS: mono(20 * time.Second), Packets: 50,
			PortWindow: kw(-3 * time.Second), PortBits: sketchOf(443)},
		maps.Source{Source: over, FirstSeenNS: mono(29 * time.Second), LastSeenNS: mono(29 * time.Second), Packets: 1})
	if got := c.Take(t0.Add(59 * time.Second)); len(got) != 0 {
		t.Fatalf("a window before its end: %v", got)
	}
	got := c.Take(t0.Add(61 * time.Second))
	if len(got) != 1 {
		t.Fatalf("took %d windows, want 1", len(got))
	}
	// a: 103-100 packets (counted from first sight), ports {22, 23}; icmp:
	// packets 50 (first seen before the window, not in the last one: from
	// first sight, 50-50 = 0); b: 5 (first seen in the window), port 80.
	want := &Summary{Node: "edge-1", Start: t0, Length: time.Minute, OmittedSources: 1, Entries: []Entry{
		{Source: a, Ports: sketchOf(22, 23), Packets: 3},
		{Source: b, Ports: sketchOf(80), Packets: 5},
		{Source: icmp, Packets: 0},
	}}
	if !reflect.DeepEqual(got[0], want) {
		t.Fatalf("summary\n got %+v\nwant %+v", got[0], want)
	}
	// The next window: a's packets count from the last value of the window
	// before (103), not from first sight.
	at(65*time.Second, maps.Source{Source: a, FirstSeenNS: 1, LastSeenNS: mono(64 * time.Second), Packets: 110,
		PortWindow: kw(64 * time.Second), PortBits: sketchOf(24)})
	got = c.Take(t0.Add(2 * time.Minute))
	if len(got) != 1 || len(got[0].Entries) != 1 || got[0].Entries[0].Packets != 7 || got[0].Entries[0].Ports != sketchOf(24) ||
		!got[0].Start.Equal(t0.Add(time.Minute)) {
		t.Fatalf("second window: %+v", got)
	}
	// Two interfaces: each counts its own packets; the summary adds them
	// up and ORs the ports.
	c.Observe(0, t0.Add(125*time.Second), mono(125*time.Second), []maps.Source{{Source: b, FirstSeenNS: mono(121 * time.Second),
		LastSeenNS: mono(121 * time.Second), Packets: 4, PortWindow: kw(121 * time.Second), PortBits: sketchOf(1)}})
	c.Observe(1, t0.Add(125*time.Second), mono(125*time.Second), []maps.Source{{Source: b, FirstSeenNS: mono(122 * time.Second),
		LastSeenNS: mono(122 * time.Second), Packets: 6, PortWindow: kw(122 * time.Second), PortBits: sketchOf(2)}})
	got = c.Take(t0.Add(3 * time.Minute))
	if len(got) != 1 || len(got[0].Entries) != 1 || got[0].Entries[0] != (Entry{Source: b, Ports: sketchOf(1, 2), Packets: 10}) {
		t.Fatalf("two interfaces: %+v", got)
	}
	if _, err := NewCollector("bad name", time.Minute, 0); err == nil {
		t.Error("a bad node name: no error")
	}
	if _, err := NewCollector("n", 1500*time.Millisecond, 0); err == nil {
		t.Error("a window of 1.5 s (not whole seconds): no error")
	}
}
