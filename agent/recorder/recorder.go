package recorder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// Defaults for Options.
const (
	DefaultMaxFileBytes = 16 << 20
	DefaultMaxFiles     = 8
	DefaultQueueLen     = 4096
	// subscriberBuffer bounds each subscriber's channel.
	subscriberBuffer = 256
	// logEvery is the minimum interval between two logs of the same kind
	// of failure.
	logEvery = time.Minute
)

// Options configures a Recorder.
type Options struct {
	// Dir holds the pcapng files; created 0700 if missing. Required.
	Dir string
	// MaxFileBytes rotates a file once it reaches this size (default 16 MiB).
	// A file may exceed it by at most one packet block (< 512 bytes).
	MaxFileBytes int64
	// MaxFiles is the number of drops-*.pcapng files kept in Dir, the
	// current one included (default 8); the oldest are deleted.
	MaxFiles int
	// QueueLen bounds the events waiting for the disk writer (default 4096).
	QueueLen int
	// Logger receives warnings; nil means no logging.
	Logger hclog.Logger
	// BootTime is the wall-clock time at CLOCK_MONOTONIC 0, used to convert
	// the XDP program's timestamps; zero means BootTime() at New.
	BootTime time.Time
	// IfName maps an ifindex to an interface name; nil means a cached
	// net.InterfaceByIndex lookup.
	IfName func(ifindex int) string
	// RuleName maps a reason name and a rule or list id to the rule's or
	// list's name ("" if unknown); nil means names are not resolved. It is
	// called from Run's goroutine and must not block.
	RuleName func(reason string, id uint32) string
}

// Stats are the Recorder's counters.
type Stats struct {
	// Recorded counts samples written to disk.
	Recorded uint64 `json:"recorded"`
	// Lost counts samples that did not reach the disk:
	// LostQueue + LostDisk + Garbled.
	Lost uint64 `json:"lost"`
	// LostQueue counts samples dropped because the writer queue was full.
	LostQueue uint64 `json:"lost_queue"`
	// LostDisk counts samples lost to write errors (full disk, ...).
	LostDisk uint64 `json:"lost_disk"`
	// LostSubscriber counts events a slow live subscriber missed (these
	// were still written to disk); not part of Lost.
	LostSubscriber uint64 `json:"lost_subscriber"`
	// Garbled counts ring buffer records that failed to decode.
	Garbled uint64 `json:"garbled"`
	// Files is the number of drops-*.pcapng files in Dir.
	Files int `json:"files"`
	// Bytes is their total size.
	Bytes int64 `json:"bytes"`
}

// Recorder writes sampled drop events to rotating pcapng files and fans them
// out to live subscribers. Create it with New and start it with Run.
type Recorder struct {
	opts     Options
	log      hclog.Logger
	bootTime time.Time
	ifname   func(int) string
	queue    chan Event
	running  atomic.Bool

	recorded, lostQueue, lostDisk, lostSub, garbled atomic.Uint64
	nfiles, nbytes                                  atomic.Int64

	subMu   sync.Mutex
	subs    map[*subscriber]struct{}
	subDone bool

	// Writer goroutine state.
	cur      io.WriteCloser
	curName  string
	curSize  int64
	curPkts  int
	ifaces   map[string]uint32
	seq      int
	kept     []keptFile // oldest first; the current file last
	blk      ngBlock
	diskLog  limiter
	readLog  limiter
	decodLog limiter

	// Test hooks.
	now         func() time.Time
	create      func(path string) (io.WriteCloser, error)
	beforeWrite func()
}

type keptFile struct {
	name string
	size int64
}

// New returns a Recorder for opts, creating opts.Dir (0700) if missing and
// taking the drops-*.pcapng files already there into account for MaxFiles.
func New(opts Options) (*Recorder, error) {
	if opts.Dir == "" {
		return nil, errors.New("recorder: no directory configured")
	}
	if opts.MaxFileBytes <= 0 {
		opts.MaxFileBytes = DefaultMaxFileBytes
	}
	if opts.MaxFiles <= 0 {
		opts.MaxFiles = DefaultMaxFiles
	}
	if opts.QueueLen <= 0 {
		opts.QueueLen = DefaultQueueLen
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("recorder: create directory: %w", err)
	}
	r := &Recorder{
		opts:     opts,
		log:      opts.Logger,
		bootTime: opts.BootTime,
		ifname:   opts.IfName,
		queue:    make(chan Event, opts.QueueLen),
		subs:     make(map[*subscriber]struct{}),
		now:      time.Now,
	}
	if r.bootTime.IsZero() {
		bt, err := BootTime()
		if err != nil {
			return nil, fmt.Errorf("recorder: %w", err)
		}
		r.bootTime = bt
	}
	if r.ifname == nil {
		r.ifname = cachedIfName()
	}
	if err := r.scan(); err != nil {
		return nil, fmt.Errorf("recorder: %w", err)
	}
	return r, nil
}

// BootTime returns the wall-clock time at CLOCK_MONOTONIC 0, the clock of
// bpf_ktime_get_ns.
func BootTime() (time.Time, error) {
	var ts unix.Timespec
	now := time.Now()
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return time.Time{}, fmt.Errorf("read CLOCK_MONOTONIC: %w", err)
	}
	return now.Add(-time.Duration(ts.Nano())), nil
}

func cachedIfName() func(int) string {
	var mu sync.Mutex
	cache := make(map[int]string)
	return func(idx int) string {
		mu.Lock()
		defer mu.Unlock()
		if name, ok := cache[idx]; ok {
			return name
		}
		ifi, err := net.InterfaceByIndex(idx)
		if err != nil {
			return ""
		}
		if len(cache) >= 1024 {
			clear(cache)
		}
		cache[idx] = ifi.Name
		return ifi.Name
	}
}

const filePrefix, fileSuffix = "drops-", ".pcapng"

// fileSeq returns the sequence number of a recorder file name.
func fileSeq(name string) (int, bool) {
	if !strings.HasPrefix(name, filePrefix) || !strings.HasSuffix(name, fileSuffix) {
		return 0, false
	}
	base := strings.TrimSuffix(name, fileSuffix)
	i := strings.LastIndexByte(base, '-')
	if i < len(filePrefix) {
		return 0, false
	}
	n, err := strconv.Atoi(base[i+1:])
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// scan lists the recorder files already in Dir.
func (r *Recorder) scan() error {
	entries, err := os.ReadDir(r.opts.Dir)
	if err != nil {
		return fmt.Errorf("read directory: %w", err)
	}
	r.kept = r.kept[:0]
	for _, de := range entries {
		seq, ok := fileSeq(de.Name())
		if !ok || !de.Type().IsRegular() {
			continue
		}
		info, err := de.Info()
		if err != nil {
			continue
		}
		r.kept = append(r.kept, keptFile{name: de.Name(), size: info.Size()})
		r.seq = max(r.seq, seq)
	}
	sort.Slice(r.kept, func(i, j int) bool { return r.kept[i].name < r.kept[j].name })
	r.publishFiles()
	return nil
}

func (r *Recorder) publishFiles() {
	var total int64
	for _, f := range r.kept {
		total += f.size
	}
	r.nfiles.Store(int64(len(r.kept)))
	r.nbytes.Store(total)
}

// Stats returns the current counters. It is safe to call concurrently.
func (r *Recorder) Stats() Stats {
	s := Stats{
		Recorded:       r.recorded.Load(),
		LostQueue:      r.lostQueue.Load(),
		LostDisk:       r.lostDisk.Load(),
		LostSubscriber: r.lostSub.Load(),
		Garbled:        r.garbled.Load(),
		Files:          int(r.nfiles.Load()),
		Bytes:          r.nbytes.Load(),
	}
	s.Lost = s.LostQueue + s.LostDisk + s.Garbled
	return s
}

// RingbufReadFunc adapts a ring buffer reader for Run: each call waits at
// most timeout for a record (returning os.ErrDeadlineExceeded, which Run
// treats as "nothing yet", so Run notices its context ending). The returned
// slice is reused by the next call. Closing rd makes Run return.
func RingbufReadFunc(rd *ringbuf.Reader, timeout time.Duration) func() ([]byte, error) {
	var rec ringbuf.Record
	return func() ([]byte, error) {
		rd.SetDeadline(time.Now().Add(timeout))
		if err := rd.ReadInto(&rec); err != nil {
			return nil, err
		}
		return rec.RawSample, nil
	}
}

// Run reads raw drop_event records with read until ctx ends or read fails
// with os.ErrClosed (ringbuf.ErrClosed) or io.EOF, decodes them and hands
// them to the disk writer and the subscribers without ever blocking on
// either. read should return within a bounded time (a deadline:
// os.ErrDeadlineExceeded is ignored) so Run notices ctx; the slice it
// returns need only stay valid until the next call. Other read errors are
// logged (at most once a minute) and retried after a short pause.
//
// Run returns after the writer has written the queued events and closed the
// current file; live subscriptions are closed then. Run may be called once.
func (r *Recorder) Run(ctx context.Context, read func() ([]byte, error)) {
	if !r.running.CompareAndSwap(false, true) {
		r.log.Error("drop recorder: Run called twice")
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { r.writeLoop(r.queue) })
	defer func() {
		close(r.queue)
		wg.Wait()
		r.closeSubscribers()
	}()
	for ctx.Err() == nil {
		raw, err := read()
		if err != nil {
			switch {
			case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, ringbuf.ErrFlushed):
			case errors.Is(err, os.ErrClosed), errors.Is(err, io.EOF):
				return
			default:
				if ok, n := r.readLog.allow(r.now()); ok {
					r.log.Warn("drop recorder: reading drop events failed", "error", err, "suppressed", n)
				}
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
			}
			continue
		}
		e, err := Decode(raw, r.bootTime, r.ifname, r.opts.RuleName)
		if err != nil {
			r.garbled.Add(1)
			if ok, n := r.decodLog.allow(r.now()); ok {
				r.log.Warn("drop recorder: bad drop event", "error", err, "suppressed", n)
			}
			continue
		}
		r.offer(e)
	}
}

// offer hands e to the subscribers and the writer queue, never blocking.
func (r *Recorder) offer(e Event) {
	r.publish(e)
	select {
	case r.queue <- e:
	default:
		r.lostQueue.Add(1)
	}
}

// writeLoop writes queued events until q is closed.
func (r *Recorder) writeLoop(q <-chan Event) {
	defer r.closeFile()
	for e := range q {
		if r.beforeWrite != nil {
			r.beforeWrite()
		}
		if err := r.write(e); err != nil {
			r.lostDisk.Add(1)
			if ok, n := r.diskLog.allow(r.now()); ok {
				r.log.Warn("drop recorder: writing drop sample failed; samples are lost until a write succeeds",
					"error", err, "suppressed", n)
			}
			// Retry on a fresh file with the next event.
			r.closeFile()
			continue
		}
		r.recorded.Add(1)
	}
}

// write appends e to the current file, opening one if needed, and rotates
// once the file reaches MaxFileBytes.
func (r *Recorder) write(e Event) error {
	if r.cur == nil {
		if err := r.openFile(); err != nil {
			return err
		}
	}
	id, ok := r.ifaces[e.Iface]
	if !ok {
		id = uint32(len(r.ifaces))
		if err := r.writeBlock(r.blk.interfaceDescription(e.Iface)); err != nil {
			return err
		}
		r.ifaces[e.Iface] = id
	}
	if err := r.writeBlock(r.blk.enhancedPacket(id, e)); err != nil {
		return err
	}
	r.curPkts++
	if r.curSize >= r.opts.MaxFileBytes {
		r.closeFile()
	}
	return nil
}

// writeBlock writes one block to the current file; on a short write it
// tries to cut the partial block off so the file stays readable.
func (r *Recorder) writeBlock(b []byte) error {
	n, err := r.cur.Write(b)
	if err == nil && n != len(b) {
		err = io.ErrShortWrite
	}
	if err != nil {
		if t, ok := r.cur.(interface{ Truncate(int64) error }); ok && n > 0 {
			_ = t.Truncate(r.curSize)
		}
		return err
	}
	r.curSize += int64(n)
	r.kept[len(r.kept)-1].size = r.curSize
	r.nbytes.Add(int64(n))
	return nil
}

func (r *Recorder) createFile(path string) (io.WriteCloser, error) {
	if r.create != nil {
		return r.create(path)
	}
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
}

// openFile starts a new file with its section header and deletes the
// oldest files beyond MaxFiles.
func (r *Recorder) openFile() error {
	stamp := r.now().UTC().Format("20060102T150405Z")
	var (
		f    io.WriteCloser
		name string
		err  error
	)
	for try := 0; try < 8; try++ {
		r.seq++
		name = fmt.Sprintf("%s%s-%06d%s", filePrefix, stamp, r.seq, fileSuffix)
		path := filepath.Join(r.opts.Dir, name)
		f, err = r.createFile(path)
		if errors.Is(err, os.ErrNotExist) {
			// The directory vanished: recreate it once.
			if mkErr := os.MkdirAll(r.opts.Dir, 0o700); mkErr == nil {
				f, err = r.createFile(path)
			}
		}
		if !errors.Is(err, os.ErrExist) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	shb := r.blk.sectionHeader()
	if n, err := f.Write(shb); err != nil || n != len(shb) {
		if err == nil {
			err = io.ErrShortWrite
		}
		// Leave no empty, unreadable file behind, and do not let failed
		// attempts push real captures out of the MaxFiles window.
		_ = f.Close()
		_ = os.Remove(filepath.Join(r.opts.Dir, name))
		return fmt.Errorf("write %s: %w", name, err)
	}
	r.cur, r.curName, r.curSize, r.curPkts = f, name, int64(len(shb)), 0
	r.ifaces = make(map[string]uint32)
	r.kept = append(r.kept, keptFile{name: name, size: r.curSize})
	r.prune()
	return nil
}

// prune deletes the oldest files while there are more than MaxFiles.
func (r *Recorder) prune() {
	for len(r.kept) > r.opts.MaxFiles {
		old := r.kept[0]
		err := os.Remove(filepath.Join(r.opts.Dir, old.name))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			if ok, n := r.diskLog.allow(r.now()); ok {
				r.log.Warn("drop recorder: deleting old capture file failed", "file", old.name, "error", err, "suppressed", n)
			}
			break
		}
		r.kept = r.kept[1:]
	}
	r.publishFiles()
}

// closeFile closes the current file, deleting it if it holds no packet.
func (r *Recorder) closeFile() {
	if r.cur == nil {
		return
	}
	if err := r.cur.Close(); err != nil {
		if ok, n := r.diskLog.allow(r.now()); ok {
			r.log.Warn("drop recorder: closing capture file failed", "error", err, "suppressed", n)
		}
	}
	if r.curPkts == 0 {
		// A file that failed before its first packet holds nothing worth
		// keeping (and pcap readers reject a file without an interface).
		if err := os.Remove(filepath.Join(r.opts.Dir, r.curName)); err == nil || errors.Is(err, os.ErrNotExist) {
			r.kept = r.kept[:len(r.kept)-1]
			r.publishFiles()
		}
	}
	r.cur, r.curName, r.curSize, r.curPkts, r.ifaces = nil, "", 0, 0, nil
}

// limiter lets a kind of log line through at most once per logEvery.
type limiter struct {
	last       time.Time
	suppressed uint64
}

// allow reports whether to log now and how many logs were suppressed
// since the last one.
func (l *limiter) allow(now time.Time) (bool, uint64) {
	if !l.last.IsZero() && now.Sub(l.last) < logEvery {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	return true, n
}
