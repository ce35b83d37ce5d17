package replay

import (
	"time"

	"github.com/bulwark-filter/bulwark/loader"
	"github.com/bulwark-filter/bulwark/maps"
)

// The run stage: every frame through the datapath in capture order, on
// capture time, with the scorer's cycles between them.

// replayBase is where capture time starts on the replayed datapath's
// clock: far from 0, so buckets and expiries behave as on a running host.
const replayBase = uint64(1) << 40

// decision is what the datapath did with a frame.
type decision struct {
	maps.Decision
	runt bool // shorter than an Ethernet header: decided without the datapath
}

// runFrame runs one frame at time mono. A frame shorter than an Ethernet
// header cannot be test-run (no NIC hands XDP one); it is decided as
// malformed, as the datapath's model decides it.
//
// buf is the frame behind loader.ReplayHeadroom bytes of room for the
// replay I/O.
func runFrame(run *loader.Runner, buf []byte, mono uint64, p *maps.Policy) (decision, error) {
	if len(buf)-loader.ReplayHeadroom < 14 {
		act := maps.ActionDrop
		if p.MalformedPass {
			act = maps.ActionPass
		}
		if act == maps.ActionDrop && p.Mode == maps.ModeMonitor {
			act = maps.ActionWouldDrop
		}
		return decision{maps.Decision{Action: act, Reason: maps.ReasonMalformed}, true}, nil
	}
	dec, _, err := run.RunIn(buf, mono)
	return decision{Decision: dec}, err
}

// runFrames cuts the frames into segments that end at a scorer cycle (and
// span at most span), has the pool decide each, runs each cycle when it
// falls due (every interval of capture time), and hands frames, decisions
// and verdicts to the report in capture order.
func runFrames(frames <-chan frameBatch, p *pool, dp *datapath, interval, span time.Duration, rep *collector) error {
	var first, nextCycle time.Time
	for batch := range frames {
		if batch.err != nil {
			return batch.err
		}
		items := batch.items
		for len(items) > 0 {
			if first.IsZero() {
				first, nextCycle = items[0].ts, items[0].ts.Add(interval)
			}
			if dp.engine != nil && !items[0].ts.Before(nextCycle) {
				// The cycle that was due; a quiet gap in the capture (hours,
				// or the years between two files) is one long interval, not
				// a cycle per second of it.
				if err := dp.engine.Cycle(nextCycle, replayBase+uint64(nextCycle.Sub(first)), dp.Maps.IterateSources); err != nil {
					return err
				}
				rep.verdicts(dp.engine.TakeVerdicts(), items[0].offset)
				nextCycle = nextCycle.Add(interval)
				if ts := items[0].ts; !ts.Before(nextCycle) {
					nextCycle = nextCycle.Add(ts.Sub(nextCycle).Truncate(interval) + interval)
				}
				continue
			}
			n := 1
			for n < len(items) && items[n].ts.Sub(items[0].ts) < span &&
				(dp.engine == nil || items[n].ts.Before(nextCycle)) {
				n++
			}
			seg := items[:n]
			items = items[n:]
			decs, err := p.decide(seg, first)
			if err != nil {
				return err
			}
			for i := range seg {
				if err := rep.frame(&seg[i], decs[i]); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
