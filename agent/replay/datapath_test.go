package replay

import (
	"fmt"
	"maps"
	"net/netip"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/desired"
	bmaps "github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/testutil"
)

// TestLoadDatapath: the datapath stage fills a fresh datapath from the
// config: the allow CIDR under the config allow id, the block CIDR and the
// block file under theirs, the block feed's entries under the first feed
// id except the one that would block allow-listed space, the IPv6 prefix
// of the policy; and a scorer only with reputation on.
func TestLoadDatapath(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	bad := writeFile(t, dir, "bad.txt", "198.18.5.0/24\n")
	feed := writeFile(t, dir, "feed.txt", "198.18.6.0/24\n198.18.0.0/16\n2001:2:0:7::/64\n")
	score := writeFile(t, dir, "score.txt", "198.18.8.0/24\n")
	base := fmt.Sprintf(`
interface "eth0" {}
allow {
  cidrs = ["198.18.0.10/32"]
}
block {
  cidrs = ["198.18.4.0/24"]
  files = ["%s"]
}
limits {
  ipv6_prefix = 56
}
feed "drop" {
  path   = "%s"
  format = "plain"
  action = "block"
}
feed "judge" {
  path   = "%s"
  format = "plain"
  action = "score"
  weight = 10
}
maps {
  sources      = 4096
  rule_buckets = 4096
  verdicts     = 1024
}
`, bad, feed, score)
	for _, mode := range []string{"off", "shadow"} {
		t.Run(mode, func(t *testing.T) {
			path := writeFile(t, dir, "bulwark-"+mode+".hcl", base+"reputation {\n  mode = \""+mode+"\"\n  max_verdicts = 1000\n}\n")
			cfg, diags := config.LoadWithOptions(path, config.Options{SkipInterfaceCheck: true})
			if diags.HasErrors() {
				t.Fatal(config.FormatDiagnostics(diags))
			}
			want, diags := desired.Compile(cfg)
			if diags.HasErrors() {
				t.Fatal(config.FormatDiagnostics(diags))
			}
			dp, err := loadDatapath(cfg, want, testutil.SmallSizes(), hclog.NewNullLogger())
			if err != nil {
				t.Fatal(err)
			}
			defer dp.Close()
			if (dp.engine != nil) != (mode != "off") {
				t.Errorf("reputation %s: scorer %v", mode, dp.engine != nil)
			}
			if p := dp.Maps.IPv6Prefix(); p != 56 {
				t.Errorf("IPv6 prefix %d; want 56", p)
			}
			check := func(name string, got []netip.Prefix, ids []uint32, want map[string]uint32) {
				t.Helper()
				have := map[string]uint32{}
				for i, p := range got {
					have[p.String()] = ids[i]
				}
				if !maps.Equal(have, want) {
					t.Errorf("%s list %v; want %v", name, have, want)
				}
			}
			es, err := dp.Maps.Allow.Entries()
			if err != nil {
				t.Fatal(err)
			}
			var ps []netip.Prefix
			var ids []uint32
			for _, e := range es {
				ps, ids = append(ps, e.Prefix), append(ids, e.ListID)
			}
			check("allow", ps, ids, map[string]uint32{"198.18.0.10/32": desired.ListConfigAllow})
			if es, err = dp.Maps.Block.Entries(); err != nil {
				t.Fatal(err)
			}
			ps, ids = nil, nil
			for _, e := range es {
				ps, ids = append(ps, e.Prefix), append(ids, e.ListID)
			}
			check("block", ps, ids, map[string]uint32{
				"198.18.4.0/24":   desired.ListConfigBlock,
				"198.18.5.0/24":   bmaps.FirstFileList, // the first list file (after the fleet's list, 4, and CrowdSec's, 5)
				"198.18.6.0/24":   512,                 // the first block feed
				"2001:2:0:7::/64": 512,                 // the first block feed
			})
		})
	}
}
