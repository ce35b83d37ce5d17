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

// runFrames cuts the frames into segments that end at a scorer cycle or a
// second of signature detection (and span at most span), shows each
// segment to detection, has the pool decide it, runs each cycle and
// detection tick when it falls due (on capture time), and hands frames,
// decisions and verdicts to the report in capture order.
func runFrames(frames <-chan frameBatch, p *pool, dp *datapath, interval, span time.Duration, rep *collector) error {
	var first, nextCycle, nextTick time.Time
	for batch := range frames {
		if batch.err != nil {
			return batch.err
		}
		items := batch.items
		for len(items) > 0 {
			if first.IsZero() {
				first, nextCycle, nextTick = items[0].ts, items[0].ts.Add(interval), items[0].ts.Add(time.Second)
			}
			if dp.engine != nil && !items[0].ts.Before(nextCycle) {
				// The cycle that was due; a quiet gap in the capture (hours,
				// or the years between two files) is one long interval, not
				// a cycle per second of it.
				if err := dp.engine.Cycle(nextCycle, replayBase+uint64(nextCycle.Sub(first)), dp.Maps.IterateSources); err != nil {
					return err
				}
				rep.verdicts(dp.engine.TakeVerdicts(), items[0].offset)
				nextCycle = skipTo(nextCycle, items[0].ts, interval)
				continue
			}
			if dp.sigs != nil && !items[0].ts.Before(nextTick) {
				// Detection's second, the same way.
				if err := dp.sigs.tick(nextTick, first, dp.Maps, dp.sigFirst); err != nil {
					return err
				}
				nextTick = skipTo(nextTick, items[0].ts, time.Second)
				continue
			}
			n := 1
			for n < len(items) && items[n].ts.Sub(items[0].ts) < span &&
				(dp.engine == nil || items[n].ts.Before(nextCycle)) && (dp.sigs == nil || items[n].ts.Before(nextTick)) {
				n++
			}
			seg := items[:n]
			items = items[n:]
			if dp.sigs != nil {
				for i := range seg {
					dp.sigs.det.Observe(seg[i].eth, 1)
				}
			}
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

// skipTo is the next due time after due, past ts when a quiet gap in the
// captures went beyond it: a gap is one long interval, not one per step.
func skipTo(due, ts time.Time, step time.Duration) time.Time {
	due = due.Add(step)
	if !ts.Before(due) {
		due = due.Add(ts.Sub(due).Truncate(step) + step)
	}
	return due
}
