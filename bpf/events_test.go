package bpf_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/bulwark-filter/bulwark/bpf"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// TestDropEvents checks the ring of sampled drops: one in SampleEvery drops
// is written, with the frame's first bytes, its reason and rule; at most
// SampleMaxPerSec per second of the datapath's clock; passes are never
// sampled; and the misc counters account for every sampled drop.
func TestDropEvents(t *testing.T) {
	blocked := testutil.UDP4(t, "198.18.66.7", "198.18.1.1", 53, 200)
	limited := testutil.UDP4(t, "198.18.3.3", "198.18.1.1", 53, 20)
	fine := testutil.UDP4(t, "198.18.2.2", "198.18.1.1", 80, 20)

	tests := []struct {
		name       string
		every, max uint32
		seconds    int // replay-clock seconds the drops are spread over
		dropsPerS  int
		wantEvents int
		wantCapped uint64
	}{
		{"one in ten", 10, 1000, 1, 100, 10, 0},
		{"every drop", 1, 1000, 1, 7, 7, 0},
		{"capped per second", 1, 5, 3, 20, 15, 45},
		{"off", 0, 1000, 1, 50, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pinToOneCPU(t) // the 1-in-N count and the budget are per CPU
			d := testutil.Load(t, testutil.Setup{
				ReplayClock: true,
				Policy: maps.Policy{SampleEvery: tt.every, SampleMaxPerSec: tt.max,
					Rules: []maps.Rule{{Name: "dns", Protocol: maps.ProtoUDP, Ports: []maps.PortRange{{Lo: 53, Hi: 53}},
						// A byte bucket smaller than any frame: every packet is over.
						Limit: maps.Limit{BytesPerSec: 1, ByteBurst: 1}}}},
				Block: []maps.Entry{{Prefix: netip.MustParsePrefix("198.18.66.0/24"), ListID: 3}},
			})
			rd, err := d.Maps.Events()
			if err != nil {
				t.Fatal(err)
			}
			defer rd.Close()

			const base = uint64(1e15)
			for s := 0; s < tt.seconds; s++ {
				for i := 0; i < tt.dropsPerS; i++ {
					now := base + uint64(s)*1e9 + uint64(i)
					frame := blocked
					if i%2 == 1 {
						frame = limited
					}
					if _, ret, err := d.RunAt(frame, now); err != nil || ret != xdpDrop {
						t.Fatalf("run: %d %v, want drop", ret, err)
					}
					if _, ret, err := d.RunAt(fine, now); err != nil || ret != xdpPass {
						t.Fatalf("run: %d %v, want pass", ret, err)
					}
				}
			}

			var events []bpf.BulwarkDropEvent
			for _, raw := range readRing(t, rd) {
				var ev bpf.BulwarkDropEvent
				if err := binary.Read(bytes.NewReader(raw), binary.LittleEndian, &ev); err != nil {
					t.Fatal(err)
				}
				events = append(events, ev)
			}
			if len(events) != tt.wantEvents {
				t.Fatalf("%d events, want %d", len(events), tt.wantEvents)
			}
			for _, ev := range events {
				want, reason, rule := blocked, maps.ReasonBlocklist, uint32(3) // the list id
				if maps.Reason(ev.Reason) == maps.ReasonRatelimit {
					want, reason, rule = limited, maps.ReasonRatelimit, 1
				}
				if maps.Reason(ev.Reason) != reason || ev.Rule != rule || maps.Action(ev.Action) != maps.ActionDrop {
					t.Errorf("event reason %d rule %d action %d", ev.Reason, ev.Rule, ev.Action)
				}
				n := min(len(want), 128)
				if int(ev.CapLen) != n || int(ev.PktLen) != len(want) || !bytes.Equal(ev.Data[:n], want[:n]) {
					t.Errorf("event holds %d of %d bytes, or not the frame's first bytes", ev.CapLen, ev.PktLen)
				}
				if ev.TsNs < base {
					t.Errorf("event time %d before the replay clock's base", ev.TsNs)
				}
			}
			misc, err := d.Maps.Misc()
			if err != nil {
				t.Fatal(err)
			}
			if misc.Sampled != uint64(tt.wantEvents) || misc.SampleCapped != tt.wantCapped || misc.SampleLost != 0 {
				t.Errorf("misc counters %+v, want sampled %d capped %d", misc, tt.wantEvents, tt.wantCapped)
			}
		})
	}
}

// readRing reads the records in rd until it has been empty for 200 ms.
func readRing(t *testing.T, rd *ringbuf.Reader) [][]byte {
	t.Helper()
	var out [][]byte
	rd.SetDeadline(time.Now().Add(200 * time.Millisecond))
	for {
		rec, err := rd.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, ringbuf.ErrClosed) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rec.RawSample)
	}
}
