package nft

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/netns"
)

// BulwarkVerdicts loads the datapath with a block verdict of origin
// crowdsec on every host of block, as the agent's CrowdSec bouncer writes
// ip decisions (PutVerdicts, 4 h), and attaches it natively.
func BulwarkVerdicts(tb *netns.Testbed, block []maps.Entry) (*Receiver, error) {
	sizes := BulwarkSizes()
	sizes.Verdicts = 1 << 18
	if len(block) > int(sizes.Verdicts) {
		return nil, fmt.Errorf("%d verdicts: the bench's verdict map holds %d", len(block), sizes.Verdicts)
	}
	return attachBulwark(tb, sizes, maps.Policy{}, "block", len(block), func(m *maps.Set) error {
		var ts unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
			return err
		}
		expires := uint64(ts.Nano()) + uint64(4*time.Hour)
		vs := make([]maps.VerdictEntry, len(block))
		for i, e := range block {
			if !e.Prefix.IsSingleIP() {
				return fmt.Errorf("verdict on %s: a verdict is on one source", e.Prefix)
			}
			vs[i] = maps.VerdictEntry{Source: e.Prefix, Action: maps.VerdictBlock, ExpiresNS: expires, Origin: maps.OriginCrowdSec}
		}
		return m.PutVerdicts(vs)
	})
}

// CrowdSecSuite measures, for each list of hosts (CrowdSec ip decisions;
// all Sources among them), Bulwark with a verdict per host
// (BulwarkVerdicts) and nft with the firewall bouncer's set (Bouncer), each
// on its own testbed, checked on a sample, in c.Reps interleaved rounds.
func CrowdSecSuite(c Config, lists [][]maps.Entry) (*Report, error) {
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	if c.TempDir == "" {
		c.TempDir = os.TempDir()
	}
	if c.Reps < 1 || c.Retries < 0 {
		return nil, fmt.Errorf("repetitions %d, retries %d: want at least 1 and 0 or more", c.Reps, c.Retries)
	}
	start := time.Now()
	rep := &Report{Date: start.UTC().Format(time.RFC3339), Method: Method}
	for _, es := range lists {
		c.Logf("%d CrowdSec decisions: %d rounds", len(es), c.Reps)
		mks := []maker{
			func(tb *netns.Testbed) (*Receiver, error) { return BulwarkVerdicts(tb, es) },
			func(tb *netns.Testbed) (*Receiver, error) { return NFT(tb, c.TempDir, es, Bouncer, 0) },
		}
		if err := group(c, rep, start, len(es), MaskAll, mks, es); err != nil {
			return rep, err
		}
	}
	rep.Summary = Summarize(rep.Results)
	return rep, nil
}
