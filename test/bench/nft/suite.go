package nft

import (
	"fmt"
	"os"
	"sort"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bulwark-filter/bulwark/maps"
	"github.com/bulwark-filter/bulwark/test/netns"
)

// Config is what Suite measures.
type Config struct {
	Sizes  []int  // block list sizes
	Limit  uint64 // per-source pps for the limit test; 0 skips it
	Floors bool   // measure xdp-drop and nft-drop in every size's rounds
	// Reps is the number of repetitions of every receiver (at least 1),
	// interleaved: round r measures each receiver of a size once.
	Reps int
	// Retries bounds the re-runs of a repetition whose generator did not
	// hold its speed (Result.GenHeld false); the last attempt is kept,
	// flagged, when every one failed.
	Retries int
	// RerunUntil bounds the re-runs in time: past it (from the start of
	// the suite) an unstable repetition is kept, flagged; 0: no bound.
	RerunUntil time.Duration
	Bounds     Bounds
	TempDir    string // for the nft files; "" = os.TempDir()
	Logf       func(string, ...any)
}

// SampleSize is how many listed hosts, addresses in listed prefixes and
// unlisted addresses every block receiver is checked on before measuring.
const SampleSize = 16

// NFTSampleMax is the largest list whose nft sets are checked on the
// sample: `nft get element` reads the whole set into nft's cache first,
// which took minutes for 1M elements on a busy 2-core machine. Larger
// lists are checked by the traffic: every frame (all from listed hosts)
// must be dropped.
const NFTSampleMax = 100_000

// maker sets up one receiver on a testbed.
type maker func(*netns.Testbed) (*Receiver, error)

// slot is one receiver on its own testbed, kept for all the repetitions.
type slot struct {
	tb   *netns.Testbed
	done func()
	g    *Generator
	r    *Receiver
}

func (s *slot) close(c Config) {
	t0 := time.Now()
	if s.r != nil {
		s.r.Close()
	}
	if d := time.Since(t0); d > 100*time.Millisecond {
		c.Logf("  teardown of %s %d: %.2fs", s.r.Name, s.r.Entries, d.Seconds())
	}
	if s.g != nil {
		s.g.Close()
	}
	s.done()
}

func openSlot(mask int32, mk maker) (*slot, error) {
	tb, done, err := Testbed()
	if err != nil {
		return nil, err
	}
	s := &slot{tb: tb, done: done}
	if s.g, err = NewGenerator(tb, mask); err != nil {
		done()
		return nil, err
	}
	if s.r, err = mk(tb); err != nil {
		s.g.Close()
		done()
		return nil, err
	}
	return s, nil
}

// Suite measures, for each size, the floors (Config.Floors), Bulwark and
// nft in both layouts, each on its own testbed set up once, in Reps
// interleaved rounds; then the per-source limit the same way. Every block
// receiver is first checked on a sample (CheckSample; nft up to
// NFTSampleMax entries), and must drop every frame it is sent: a wrong
// verdict stops the suite.
func Suite(c Config) (*Report, error) {
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	if c.TempDir == "" {
		c.TempDir = os.TempDir()
	}
	if c.Reps < 1 {
		return nil, fmt.Errorf("repetitions: %d, want at least 1", c.Reps)
	}
	if c.Retries < 0 {
		return nil, fmt.Errorf("retries: %d, want 0 or more", c.Retries)
	}
	start := time.Now()
	rep := &Report{Date: start.UTC().Format(time.RFC3339), Method: Method}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		rep.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	floors := func() []maker {
		if !c.Floors {
			return nil
		}
		return []maker{XDPDrop, func(tb *netns.Testbed) (*Receiver, error) { return NFT(tb, c.TempDir, nil, OneSet, 0) }}
	}
	for _, n := range c.Sizes {
		c.Logf("block list of %d entries: %d rounds", n, c.Reps)
		es := Entries(n, int64(n))
		mks := append(floors(),
			func(tb *netns.Testbed) (*Receiver, error) { return Bulwark(tb, es, 0) },
			func(tb *netns.Testbed) (*Receiver, error) { return NFT(tb, c.TempDir, es, OneSet, 0) },
			func(tb *netns.Testbed) (*Receiver, error) { return NFT(tb, c.TempDir, es, Split, 0) })
		if err := group(c, rep, start, n, MaskAll, mks, es); err != nil {
			return rep, err
		}
	}
	if c.Limit > 0 {
		c.Logf("per-source limit %d pps, 256 sources: %d rounds", c.Limit, c.Reps)
		mks := []maker{
			func(tb *netns.Testbed) (*Receiver, error) { return Bulwark(tb, nil, c.Limit) },
			func(tb *netns.Testbed) (*Receiver, error) { return NFT(tb, c.TempDir, nil, OneSet, c.Limit) },
		}
		if err := group(c, rep, start, 0, MaskFew, mks, nil); err != nil {
			return rep, err
		}
	}
	rep.Summary = Summarize(rep.Results)
	rep.Headlines = Headlines(rep.Summary)
	return rep, nil
}

// group sets up every receiver of a group, checks the block receivers on
// a sample of the list, and measures them in interleaved rounds
// (A B C, A B C, ...), re-running an unstable repetition at most
// c.Retries times and not past c.RerunUntil from start.
func group(c Config, rep *Report, start time.Time, id int, mask int32, mks []maker, block []maps.Entry) error {
	var slots []*slot
	defer func() {
		for _, s := range slots {
			s.close(c)
		}
	}()
	addrs, want := Sample(block, SampleSize, int64(len(block))+1)
	for _, mk := range mks {
		s, err := openSlot(mask, mk)
		if err != nil {
			return err
		}
		slots = append(slots, s)
		r := s.r
		checked := len(addrs)
		if r.Name == "bulwark" || r.Entries <= NFTSampleMax {
			if err := CheckSample(r, addrs, want); err != nil {
				return err
			}
		} else {
			checked = 0
		}
		if r.Entries > 0 {
			note := "nft -f, one transaction"
			if r.Name == "bulwark" {
				note = fmt.Sprintf("maps.List.Add; creating the maps (loader.Load) took %.3f s more", r.Setup.Seconds())
			}
			rep.Loads = append(rep.Loads, Load{Receiver: r.Name, Entries: r.Entries, LoadS: r.Load.Seconds(), Note: note})
			c.Logf("  %-9s loaded %d entries in %.2fs; %d sampled verdicts right", r.Name, r.Entries, r.Load.Seconds(), checked)
		}
	}
	for round := 1; round <= c.Reps; round++ {
		for _, s := range slots {
			for attempt := 1; ; attempt++ {
				t0 := time.Now()
				res, err := Measure(s.g, s.r, c.Bounds)
				if err != nil {
					return fmt.Errorf("%s %s %d: %w", s.r.Name, s.r.Test, s.r.Entries, err)
				}
				res.Group, res.Rep, res.Attempt = id, round, attempt
				// Every source sent is a listed host: a block receiver
				// that lets some through has a wrong list (a few frames
				// of the stack's own, e.g. IPv6 ND, may pass).
				if res.Test == "block" && res.Dropped < res.Sent*999/1000 {
					return fmt.Errorf("%s %d: dropped %d of %d frames, all from listed hosts", res.Receiver, res.Entries, res.Dropped, res.Sent)
				}
				late := c.RerunUntil > 0 && time.Since(start) > c.RerunUntil
				res.Accepted = res.GenHeld || attempt > c.Retries || late
				c.Logf("  round %d %-9s %-5s %8d: %.1f ns/pkt, dropped %.2f Mpps, generator %.1f/%.1f ns%s (%.1fs)",
					round, res.Receiver, res.Test, res.Entries, res.RecvNsPerPkt, res.DroppedMpps,
					res.GenNsBefore, res.GenNsAfter, map[bool]string{true: "", false: " (unstable)"}[res.GenHeld],
					time.Since(t0).Seconds())
				rep.Results = append(rep.Results, res)
				if res.Accepted {
					break
				}
			}
		}
	}
	return nil
}

// Summary is one receiver's accepted repetitions in one group.
type Summary struct {
	Group    int    `json:"group"` // block list size of the rounds; 0: limit
	Receiver string `json:"receiver"`
	Test     string `json:"test"`
	Entries  int    `json:"entries"`
	Reps     int    `json:"reps"`     // accepted repetitions
	Reruns   int    `json:"reruns"`   // unstable attempts measured again
	Unstable int    `json:"unstable"` // accepted though unstable: retries spent
	// Receiver ns/packet: median, lowest, highest, and the spread
	// (highest - lowest) / median in percent.
	MedianNs  float64 `json:"median_ns"`
	MinNs     float64 `json:"min_ns"`
	MaxNs     float64 `json:"max_ns"`
	SpreadPct float64 `json:"spread_pct"`
	// MedianMpps: dropped Mpps (wall time), median.
	MedianMpps float64 `json:"median_dropped_mpps"`
	// MppsPerCPU: 1e3 / MedianNs.
	MppsPerCPU float64 `json:"mpps_per_cpu"`
	// Bulwark and XDP rows, ratios of medians within the group: VsNFT is
	// nft (one interval set, or the limit) over this; VsBest nft-split
	// over this, with the lowest and highest ratio of one round; XFloor
	// this over xdp-drop; FloorRatio nft-drop over xdp-drop (the most any
	// XDP program could gain over nft here); Ceiling nft-split over
	// xdp-drop (VsBest were Bulwark as cheap as a bare XDP_DROP).
	VsNFT      float64 `json:"vs_nft,omitempty"`
	VsBest     float64 `json:"vs_nft_best,omitempty"`
	VsBestMin  float64 `json:"vs_nft_best_min,omitempty"`
	VsBestMax  float64 `json:"vs_nft_best_max,omitempty"`
	XFloor     float64 `json:"x_floor,omitempty"`
	FloorRatio float64 `json:"floor_ratio,omitempty"`
	Ceiling    float64 `json:"ceiling,omitempty"`
}

// Median of xs (not empty): the middle value, or the mean of the two
// middle values.
func Median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Summarize folds the accepted repetitions of each receiver of each group,
// in the order of first appearance, and sets the ratios.
func Summarize(rs []Result) []Summary {
	type key struct {
		group          int
		receiver, test string
	}
	var order []key
	ns := map[key][]float64{}
	mpps := map[key][]float64{}
	byRound := map[key]map[int]float64{}
	sums := map[key]*Summary{}
	for _, r := range rs {
		k := key{r.Group, r.Receiver, r.Test}
		s := sums[k]
		if s == nil {
			s = &Summary{Group: r.Group, Receiver: r.Receiver, Test: r.Test, Entries: r.Entries}
			sums[k] = s
			order = append(order, k)
			byRound[k] = map[int]float64{}
		}
		if !r.Accepted {
			s.Reruns++
			continue
		}
		s.Reps++
		if !r.GenHeld {
			s.Unstable++
		}
		ns[k] = append(ns[k], r.RecvNsPerPkt)
		mpps[k] = append(mpps[k], r.DroppedMpps)
		byRound[k][r.Rep] = r.RecvNsPerPkt
	}
	for _, k := range order {
		s := sums[k]
		if len(ns[k]) == 0 {
			continue
		}
		s.MedianNs, s.MedianMpps = Median(ns[k]), Median(mpps[k])
		s.MinNs, s.MaxNs = ns[k][0], ns[k][0]
		for _, v := range ns[k] {
			s.MinNs, s.MaxNs = min(s.MinNs, v), max(s.MaxNs, v)
		}
		if s.MedianNs > 0 {
			s.SpreadPct = 100 * (s.MaxNs - s.MinNs) / s.MedianNs
			s.MppsPerCPU = 1e3 / s.MedianNs
		}
	}
	over := func(a, b float64) float64 {
		if a <= 0 || b <= 0 {
			return 0
		}
		return a / b
	}
	out := make([]Summary, 0, len(order))
	for _, k := range order {
		s := *sums[k]
		med := func(receiver, test string) float64 {
			if o := sums[key{k.group, receiver, test}]; o != nil {
				return o.MedianNs
			}
			return 0
		}
		floor, nftFloor := med("xdp-drop", "floor"), med("nft-drop", "floor")
		switch {
		case s.Receiver == "xdp-drop":
			s.FloorRatio = over(nftFloor, floor)
		case s.Receiver == "bulwark":
			s.VsNFT = over(med("nft", s.Test), s.MedianNs)
			s.VsBest = over(med(Split.String(), s.Test), s.MedianNs)
			s.XFloor = over(s.MedianNs, floor)
			s.FloorRatio = over(nftFloor, floor)
			s.Ceiling = over(med(Split.String(), s.Test), floor)
			for round, v := range byRound[k] {
				b, ok := byRound[key{k.group, Split.String(), s.Test}][round]
				if r := over(b, v); ok && r > 0 {
					if s.VsBestMin == 0 || r < s.VsBestMin {
						s.VsBestMin = r
					}
					s.VsBestMax = max(s.VsBestMax, r)
				}
			}
		}
		out = append(out, s)
	}
	return out
}

// Headlines states each Bulwark block result as "x nft (best config)" and
// "x of the XDP floor", with the floor ratio of the same rounds beside it.
func Headlines(ss []Summary) []string {
	var out []string
	for _, s := range ss {
		if s.Receiver != "bulwark" || s.Test != "block" || s.VsBest == 0 {
			continue
		}
		h := fmt.Sprintf("%d entries: %.2fx nft (best config: hash set + interval set; %.2f-%.2fx by round), %.2fx nft (one interval set)",
			s.Entries, s.VsBest, s.VsBestMin, s.VsBestMax, s.VsNFT)
		if s.XFloor > 0 {
			h += fmt.Sprintf("; %.2fx of the XDP floor; floor ratio nft drop-all / XDP drop %.2fx, so at most %.2fx nft (best config) for any XDP program",
				s.XFloor, s.FloorRatio, s.Ceiling)
		}
		out = append(out, h+fmt.Sprintf(" (median of %d)", s.Reps))
	}
	return out
}
