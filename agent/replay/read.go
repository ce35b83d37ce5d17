package replay

import (
	"errors"
	"io"
	"net/netip"
	"sync"
	"time"

	"github.com/google/gopacket"

	"github.com/bulwark-filter/bulwark/agent/desired"
	"github.com/bulwark-filter/bulwark/bpf/model"
	"github.com/bulwark-filter/bulwark/loader"
	"github.com/bulwark-filter/bulwark/maps"
)

// The read stage: the captures, in order, as frames on one timeline, each
// with its source parsed ahead of the datapath.

// frame is a frame read and parsed ahead of the datapath.
type frame struct {
	buf    []byte // room for the replay I/O, then the frame
	eth    []byte // the Ethernet frame
	ci     gopacket.CaptureInfo
	ts     time.Time     // on the replay's timeline
	offset time.Duration // the timeline's shift of this capture
	path   string
	record int
	family int
	src    netip.Addr
	key    [16]byte // the source's tracking key
	part   uint32   // the hash of its partition (pool.go)
}

// name is how the report shows the frame's source.
func (f *frame) name(prefix int) string {
	if f.family == 6 {
		pp, _ := f.src.Prefix(prefix)
		return pp.String()
	}
	return f.src.Unmap().String()
}

// frameBatch is frames that travel together from the reader, or the error
// that ended the reading.
type frameBatch struct {
	items []frame
	err   error
}

// frameBatchSize is how many frames travel together from the reader.
const frameBatchSize = 512

// timeline reads the captures in order, lays them on one timeline and
// parses each frame's source. Captures replay on one timeline: one that
// starts before the previous ended (another day, another host) is laid
// after it, a second later, on its own time base; within a capture time
// never goes backwards.
type timeline struct {
	readers   []*captureReader
	prefix    int
	part      partitioner
	fi        int // the file being read
	n         int // records read from it
	fileStart bool
	last      time.Time
	offset    time.Duration
	arena     []byte // frames are copied here, each after loader.ReplayHeadroom bytes
	// --merge: the captures interleaved by time.
	merge   bool
	offsets []time.Duration // each capture's start after the first's
	shift   []time.Duration // what moves each capture's times onto the timeline
	start   time.Time       // the first capture's first record
	heads   []head
}

// copyFrame copies eth into the arena behind room for the replay I/O and
// returns the headroom and frame together.
func (t *timeline) copyFrame(eth []byte) []byte {
	n := loader.ReplayHeadroom + len(eth)
	if len(t.arena)+n > cap(t.arena) {
		t.arena = make([]byte, 0, max(1<<20, n))
	}
	b := t.arena[len(t.arena) : len(t.arena)+n : len(t.arena)+n]
	t.arena = t.arena[:len(t.arena)+n]
	copy(b[loader.ReplayHeadroom:], eth)
	return b
}

// layout is how the captures share the timeline: one after another, or
// (merge) over one another, each starting at the first's start plus its
// offset (offsets has one per capture, or is nil: all at the start).
type layout struct {
	merge   bool
	offsets []time.Duration
}

// newTimeline puts the captures on one timeline as lay says.
func newTimeline(readers []*captureReader, prefix int, part partitioner, lay layout) *timeline {
	t := &timeline{readers: readers, prefix: prefix, part: part, fileStart: true, merge: lay.merge,
		offsets: lay.offsets, shift: make([]time.Duration, len(readers))}
	if t.offsets == nil {
		t.offsets = make([]time.Duration, len(readers))
	}
	return t
}

// next returns the next frame, its source parsed, or io.EOF after the
// last.
func (t *timeline) next() (frame, error) {
	f, err := t.nextRaw()
	if err == nil {
		t.parse(&f)
	}
	return f, err
}

// nextRaw returns the next frame, its source not yet parsed (parse), or
// io.EOF after the last.
func (t *timeline) nextRaw() (frame, error) {
	if t.merge {
		return t.nextMerged()
	}
	for t.fi < len(t.readers) {
		r := t.readers[t.fi]
		eth, ci, err := r.Next(t.n)
		if errors.Is(err, io.EOF) {
			t.fi++
			t.n, t.fileStart = 0, true
			continue
		}
		if err != nil {
			return frame{}, err
		}
		t.n++
		if t.fileStart && t.fi > 0 && ci.Timestamp.Add(t.offset).Before(t.last) {
			t.offset = t.last.Add(time.Second).Sub(ci.Timestamp)
		}
		t.fileStart = false
		return t.makeFrame(eth, ci, t.offset, r.path, t.n), nil
	}
	return frame{}, io.EOF
}

// makeFrame copies eth (the reader reuses its buffers) and puts it at its
// capture time shifted by offset on the timeline (never before the frame
// before it: capture order wins over a clock that stepped back).
func (t *timeline) makeFrame(eth []byte, ci gopacket.CaptureInfo, offset time.Duration, path string, record int) frame {
	ts := ci.Timestamp.Add(offset)
	if ts.Before(t.last) {
		ts = t.last
	}
	t.last = ts
	buf := t.copyFrame(eth)
	return frame{buf: buf, eth: buf[loader.ReplayHeadroom:], ci: ci, ts: ts, offset: offset, path: path, record: record}
}

// parse parses f's source: its family, address, tracking key and
// partition. It reads only what newTimeline set, so it may run beside the
// reading.
func (t *timeline) parse(f *frame) {
	if p, _ := model.Parse(f.eth); p.Family != 0 {
		f.family, f.src, f.part = p.Family, p.Src, t.part.of(p.Src)
		if p.Family == 4 {
			f.key = maps.SourceKey(p.Src, t.prefix)
		} else {
			pp, _ := p.Src.Prefix(t.prefix)
			f.key = pp.Addr().As16()
		}
	}
}

// head is a merged capture's next record, read ahead.
type head struct {
	eth  []byte
	ci   gopacket.CaptureInfo
	n    int  // records read from the capture
	done bool // the capture is exhausted
	read bool // eth and ci hold the next record
}

// nextMerged returns the frame of the merged captures that comes next on
// the timeline: each capture starts at the first one's start plus its
// offset (--merge).
func (t *timeline) nextMerged() (frame, error) {
	if t.heads == nil {
		t.heads = make([]head, len(t.readers))
	}
	best := -1
	for i := range t.heads {
		h := &t.heads[i]
		if !h.done && !h.read {
			eth, ci, err := t.readers[i].Next(h.n)
			switch {
			case errors.Is(err, io.EOF):
				h.done = true
				continue
			case err != nil:
				return frame{}, err
			}
			h.n++
			h.eth, h.ci, h.read = append(h.eth[:0], eth...), ci, true
			if h.n == 1 {
				if t.start.IsZero() {
					t.start = ci.Timestamp
				}
				t.shift[i] = t.start.Sub(ci.Timestamp) + t.offsets[i]
			}
		}
		if h.read && (best < 0 || h.ci.Timestamp.Add(t.shift[i]).Before(t.heads[best].ci.Timestamp.Add(t.shift[best]))) {
			best = i
		}
	}
	if best < 0 {
		return frame{}, io.EOF
	}
	h := &t.heads[best]
	h.read = false
	return t.makeFrame(h.eth, h.ci, t.shift[best], t.readers[best].path, h.n), nil
}

// openCaptures opens every capture, or none (an error names the file).
func openCaptures(paths []string) ([]*captureReader, error) {
	readers := make([]*captureReader, 0, len(paths))
	for _, p := range paths {
		r, err := openCapture(p)
		if err != nil {
			closeCaptures(readers)
			return nil, err
		}
		readers = append(readers, r)
	}
	return readers, nil
}

func closeCaptures(readers []*captureReader) {
	for _, r := range readers {
		r.Close()
	}
}

// readFrames sends the timeline's frames in batches of size, their
// sources parsed or not (then the receiver parses them), until done
// (closing out) or stop is closed.
func readFrames(t *timeline, out chan<- frameBatch, stop <-chan struct{}, size int, parsed bool) {
	defer close(out)
	send := func(b frameBatch) bool {
		select {
		case out <- b:
			return true
		case <-stop:
			return false
		}
	}
	batch := make([]frame, 0, size)
	for {
		f, err := t.nextRaw()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			send(frameBatch{err: err})
			return
		}
		if parsed {
			t.parse(&f)
		}
		batch = append(batch, f)
		if len(batch) == size {
			if !send(frameBatch{items: batch}) {
				return
			}
			batch = make([]frame, 0, size)
		}
	}
	if len(batch) > 0 {
		send(frameBatch{items: batch})
	}
}

// scan is what the read stage learns before the datapath is loaded.
type scan struct {
	frames  []frameBatch // every frame, or nil when they do not fit in memory
	sizes   loader.Sizes // the per-source tables' sizes for these captures
	sources int          // distinct source keys
}

// replayInMemory caps the memory a replay may take to hold the captures
// parsed, counted as each frame's bytes plus replayFrameOverhead. They are
// held in chunks of frameChunk frames.
const (
	replayInMemory      = 256 << 20
	replayFrameOverhead = 256
	frameChunk          = 4096
)

// scanCaptures reads the captures once, before the datapath is loaded. It
// returns every frame, parsed and on the replay's timeline, when they fit
// in replayInMemory (nil when not: the replay then reads them again as it
// goes), and sizes the preallocated per-source tables: a table at least
// twice the distinct sources it will hold never evicts, so it decides
// exactly as one of the config's size would, and it loads in a fraction of
// the time (1M preallocated entries take half a second to create). A
// capture with more sources than the config's table gets the config's
// size, so evictions happen as they would live.
func scanCaptures(captures []string, want *desired.State, lay layout) (scan, error) {
	s := want.Sizes
	readers, err := openCaptures(captures)
	if err != nil {
		return scan{}, err
	}
	defer closeCaptures(readers)
	t := newTimeline(readers, want.Policy.SourcePrefix(), newPartitioner(&want.Policy), lay)
	// The reading (records, timeline, copies) runs on its own goroutine
	// and the parsing here, a chunk behind: two CPUs share the scan.
	chunks := make(chan frameBatch, 4)
	stop := make(chan struct{})
	var reading sync.WaitGroup
	reading.Add(1)
	go func() {
		defer reading.Done()
		readFrames(t, chunks, stop, frameChunk, false)
	}()
	defer func() {
		close(stop)
		reading.Wait() // before the captures close
	}()
	seen := map[[16]byte]struct{}{}
	var frames []frameBatch
	kept, keep := 0, true
	for c := range chunks {
		if c.err != nil {
			return scan{}, c.err
		}
		for i := range c.items {
			f := &c.items[i]
			t.parse(f)
			if f.family != 0 {
				seen[f.key] = struct{}{}
			}
			kept += len(f.eth) + replayFrameOverhead
		}
		if keep = keep && kept <= replayInMemory; keep {
			frames = append(frames, c)
		} else {
			frames = nil
		}
	}
	// Each source may hold buckets of two rules; aggregates are fewer.
	s.Sources = room(len(seen), s.Sources)
	s.RuleBuckets = room(2*len(seen), s.RuleBuckets)
	s.Aggregates = room(len(seen), s.Aggregates)
	if keep && frames == nil {
		frames = []frameBatch{}
	}
	return scan{frames: frames, sizes: s, sources: len(seen)}, nil
}

// room is the size of a table for n entries: the smallest power of two
// from 4096 up that is at least twice n, or cfg (the config's size) if
// that is smaller.
func room(n int, cfg uint32) uint32 {
	r := uint32(4096)
	for r < uint32(2*n) && r < cfg {
		r *= 2
	}
	return min(r, cfg)
}

// stream hands the frames to the run stage: those the scan kept, or (a
// capture too large for memory) the captures read and parsed again, ahead,
// on another goroutine. stop ends the reading and closes the captures.
func (sc scan) stream(captures []string, want *desired.State, lay layout) (frames <-chan frameBatch, stop func(), err error) {
	if sc.frames != nil {
		ch := make(chan frameBatch, len(sc.frames))
		for _, b := range sc.frames {
			ch <- b
		}
		close(ch)
		return ch, func() {}, nil
	}
	readers, err := openCaptures(captures)
	if err != nil {
		return nil, nil, err
	}
	ch := make(chan frameBatch, 4)
	done := make(chan struct{})
	go readFrames(newTimeline(readers, want.Policy.SourcePrefix(), newPartitioner(&want.Policy), lay), ch, done, frameBatchSize, true)
	return ch, func() {
		close(done)
		closeCaptures(readers)
	}, nil
}
