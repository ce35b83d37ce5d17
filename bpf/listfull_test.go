package bpf_test

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// TestListAddFull: an Add that does not fit one of a list's maps fails
// with a *maps.FullError naming the map and its size, leaves none of its
// entries in the list, and the entries there before still decide.
func TestListAddFull(t *testing.T) {
	const room = 64
	for _, tt := range []struct {
		name, mapName string
		entry         func(i int) netip.Prefix
	}{
		{"IPv4 hosts", "block_hosts4", func(i int) netip.Prefix {
			return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}), 32)
		}},
		{"IPv6 hosts", "block_hosts6", func(i int) netip.Prefix {
			return netip.MustParsePrefix(fmt.Sprintf("2001:2::%x/128", i+1))
		}},
		{"IPv4 prefixes", "block_nets4", func(i int) netip.Prefix {
			return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(i), 0}), 24)
		}},
		{"IPv6 prefixes", "block_nets6", func(i int) netip.Prefix {
			return netip.MustParsePrefix(fmt.Sprintf("2001:2:0:%x::/64", i+1))
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sizes := testutil.SmallSizes()
			sizes.BlockHosts, sizes.BlockPrefixes = room, room
			d := testutil.Load(t, testutil.Setup{Sizes: sizes})
			// One entry in force before: a host the frame below comes from.
			before := maps.Entry{Prefix: netip.MustParsePrefix("198.18.66.7/32"), ListID: 1}
			if err := d.Maps.Block.Add([]maps.Entry{before}); err != nil {
				t.Fatal(err)
			}
			var add []maps.Entry
			for i := 0; i < 2*room; i++ {
				add = append(add, maps.Entry{Prefix: tt.entry(i), ListID: 2})
			}
			err := d.Maps.Block.Add(add)
			var fe *maps.FullError
			if !errors.As(err, &fe) || fe.Map != tt.mapName || fe.Max != room {
				t.Fatalf("Add of %d entries: %v; want a FullError for %s of %d", len(add), err, tt.mapName, room)
			}
			es, err := d.Maps.Block.Entries()
			if err != nil {
				t.Fatal(err)
			}
			if len(es) != 1 || es[0].Prefix != before.Prefix {
				t.Fatalf("after the refused Add the list holds %v; want only %v", es, before.Prefix)
			}
			if _, act, why := run(t, d, testutil.UDP4(t, "198.18.66.7", "198.18.0.1", 9000, 20)); act != maps.ActionDrop || why != maps.ReasonBlocklist {
				t.Fatalf("the entry in force before: %s/%s, want drop/blocklist", act, why)
			}
		})
	}
}
