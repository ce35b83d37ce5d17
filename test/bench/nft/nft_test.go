package nft

import (
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/test/netns"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// TestNFTSmoke runs the harness small and fast (10k entries, the fewest
// that list all 8192 generated sources; a few hundred
// thousand frames) and checks that every receiver counts the drops, so the
// benchmark cannot silently measure nothing. It asserts no timing.
func TestNFTSmoke(t *testing.T) {
	testutil.RequireRoot(t)
	b := Bounds{MaxPkts: 200_000, MaxDur: time.Second, GenPkts: 50_000, GenMaxDur: 200 * time.Millisecond}
	es := Entries(10000, 1)
	cases := []struct {
		name string
		mask int32
		mk   func(*netns.Testbed) (*Receiver, error)
		all  bool // every frame must be dropped
	}{
		{"bulwark-block", MaskAll, func(tb *netns.Testbed) (*Receiver, error) { return Bulwark(tb, es, 0) }, true},
		{"nft-block", MaskAll, func(tb *netns.Testbed) (*Receiver, error) { return NFT(tb, t.TempDir(), es, 0) }, true},
		{"bulwark-limit", MaskFew, func(tb *netns.Testbed) (*Receiver, error) { return Bulwark(tb, nil, 100) }, false},
		{"nft-limit", MaskFew, func(tb *netns.Testbed) (*Receiver, error) { return NFT(tb, t.TempDir(), nil, 100) }, false},
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
			// 256 sources at 100 pps (burst 5) pass a few thousand frames
			// per second at most: nearly all must be dropped.
			if !c.all && (res.Dropped == 0 || res.Dropped < res.Seen*8/10) {
				t.Errorf("per-source limit dropped %d of %d seen", res.Dropped, res.Seen)
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
