package recorder

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/agent/api"
	"github.com/bulwark-filter/bulwark/bpf"
	"github.com/bulwark-filter/bulwark/maps"
	"github.com/google/gopacket/pcapgo"
)

var boot = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func ifname(i int) string {
	if i == 2 {
		return "eth0"
	}
	return ""
}

func ruleName(reason string, id uint32) string {
	if reason == "ratelimit" && id == 7 {
		return "dns"
	}
	return ""
}

// record encodes a drop_event the way the kernel does.
func record(t testing.TB, ts uint64, pktLen uint32, reason maps.Reason, action maps.Action, rule uint32, capLen int) []byte {
	t.Helper()
	ev := bpf.BulwarkDropEvent{TsNs: ts, Ifindex: 2, PktLen: pktLen, Rule: rule,
		CapLen: uint16(capLen), Action: uint8(action), Reason: uint8(reason)}
	for i := range ev.Data {
		ev.Data[i] = byte(i + int(ts))
	}
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.LittleEndian, &ev); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != RecordSize {
		t.Fatalf("record size %d, want %d", buf.Len(), RecordSize)
	}
	return buf.Bytes()
}

func TestDecode(t *testing.T) {
	raw := record(t, 5e9, 1514, maps.ReasonRatelimit, maps.ActionDrop, 7, 128)
	e, err := Decode(raw, boot, ifname, ruleName)
	if err != nil {
		t.Fatal(err)
	}
	if !e.Time.Equal(boot.Add(5*time.Second)) || e.Iface != "eth0" || e.Reason != "ratelimit" ||
		e.Action != "drop" || e.Rule != 7 || e.RuleName != "dns" || e.PktLen != 1514 || len(e.Data) != 128 {
		t.Fatalf("decoded %+v", e)
	}
	if !bytes.Equal(e.Data, raw[24:]) {
		t.Fatal("data mismatch")
	}
	raw[24] ^= 0xff
	if e.Data[0] == raw[24] {
		t.Fatal("Data aliases the raw record")
	}
	if got, want := e.Comment(), "reason=ratelimit rule=dns rule_id=7 action=drop iface=eth0 len=1514"; got != want {
		t.Fatalf("comment %q, want %q", got, want)
	}

	// Short capture, unknown interface, no rule names.
	e, err = Decode(record(t, 1, 42, maps.ReasonMalformed, maps.ActionWouldDrop, 0, 20)[:44], boot, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if e.Iface != "if2" || len(e.Data) != 20 || e.Action != "would_drop" || e.Comment() != "reason=malformed action=would_drop iface=if2 len=42" {
		t.Fatalf("decoded %+v comment %q", e, e.Comment())
	}
	e, _ = Decode(record(t, 1, 42, maps.ReasonBlocklist, maps.ActionDrop, 3, 20), boot, ifname, ruleName)
	if e.Comment() != "reason=blocklist rule=3 rule_id=3 action=drop iface=eth0 len=42" {
		t.Fatalf("comment %q", e.Comment())
	}
}

func TestDecodeErrors(t *testing.T) {
	good := func() []byte { return record(t, 1, 1000, maps.ReasonBlocklist, maps.ActionDrop, 1, 128) }
	cases := []struct {
		name string
		raw  []byte
		want error
		msg  string
	}{
		{"empty", nil, ErrShortRecord, "0 bytes"},
		{"short header", good()[:23], ErrShortRecord, "23 bytes"},
		{"truncated data", good()[:100], ErrShortRecord, "capture length 128 needs 152"},
		{"bad reason", func() []byte { b := good(); b[23] = 9; return b }(), ErrBadRecord, "unknown reason 9"},
		{"bad action", func() []byte { b := good(); b[22] = 3; return b }(), ErrBadRecord, "unknown action 3"},
		{"caplen above snap", func() []byte { b := good(); binary.LittleEndian.PutUint16(b[20:], 129); return b }(), ErrBadRecord, "above snap length"},
		{"caplen above pktlen", func() []byte { b := good(); binary.LittleEndian.PutUint32(b[12:], 60); return b }(), ErrBadRecord, "above packet length 60"},
		{"timestamp", func() []byte { b := good(); binary.LittleEndian.PutUint64(b[0:], 1<<63); return b }(), ErrBadRecord, "timestamp"},
	}
	for _, c := range cases {
		_, err := Decode(c.raw, boot, ifname, ruleName)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: error %v, want %v containing %q", c.name, err, c.want, c.msg)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(record(f, 5e9, 1514, maps.ReasonRatelimit, maps.ActionDrop, 7, 128))
	f.Add(record(f, 1, 42, maps.ReasonMalformed, maps.ActionPass, 0, 20)[:44])
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, raw []byte) {
		e, err := Decode(raw, boot, ifname, ruleName)
		if err != nil {
			if !errors.Is(err, ErrShortRecord) && !errors.Is(err, ErrBadRecord) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if len(e.Data) > SnapLen || len(e.Data) > e.PktLen || e.Iface == "" {
			t.Fatalf("bad event %+v", e)
		}
		var buf bytes.Buffer
		if err := api.WritePcap(&buf, []Event{e}); err != nil {
			t.Fatal(err)
		}
		var blk ngBlock
		blk.enhancedPacket(0, e)
	})
}

// sliceReader feeds records to Run and then reports io.EOF (Run returns).
func sliceReader(recs [][]byte, atEnd func()) func() ([]byte, error) {
	i := 0
	return func() ([]byte, error) {
		if i == len(recs) {
			if atEnd != nil {
				atEnd()
				atEnd = nil
			}
			return nil, io.EOF
		}
		i++
		return recs[i-1], nil
	}
}

func newRecorder(t *testing.T, opts Options) *Recorder {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = filepath.Join(t.TempDir(), "captures")
	}
	opts.BootTime = boot
	opts.IfName = ifname
	opts.RuleName = ruleName
	r, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

type readPacket struct {
	ts      time.Time
	length  int
	capLen  int
	comment string
}

// readCapture parses a recorder file with pcapgo and extracts the packet
// comments by walking the blocks itself (pcapgo does not expose them).
func readCapture(t *testing.T, path string) []readPacket {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ng, err := pcapgo.NewNgReader(bytes.NewReader(raw), pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if ng.LinkType() != 1 {
		t.Fatalf("link type %v", ng.LinkType())
	}
	var pkts []readPacket
	for {
		data, ci, err := ng.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		pkts = append(pkts, readPacket{ts: ci.Timestamp, length: ci.Length, capLen: len(data)})
	}
	var comments []string
	le := binary.LittleEndian
	for off := 0; off < len(raw); {
		typ, blen := le.Uint32(raw[off:]), int(le.Uint32(raw[off+4:]))
		if blen < 12 || off+blen > len(raw) || le.Uint32(raw[off+blen-4:]) != uint32(blen) {
			t.Fatalf("%s: bad block at %d", path, off)
		}
		if typ == blockEPB {
			capLen := int(le.Uint32(raw[off+20:]))
			opts := raw[off+28+pad4(capLen) : off+blen-4]
			for len(opts) >= 4 {
				code, n := le.Uint16(opts), int(le.Uint16(opts[2:]))
				if code == optEnd {
					break
				}
				if code == optComment {
					comments = append(comments, string(opts[4:4+n]))
				}
				opts = opts[4+pad4(n):]
			}
		}
		off += blen
	}
	if len(comments) != len(pkts) {
		t.Fatalf("%s: %d comments for %d packets", path, len(comments), len(pkts))
	}
	for i := range pkts {
		pkts[i].comment = comments[i]
	}
	return pkts
}

func captureFiles(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "drops-*.pcapng"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	return names
}

func TestRotation(t *testing.T) {
	const n = 300
	r := newRecorder(t, Options{MaxFileBytes: 2048, MaxFiles: 3})
	var recs [][]byte
	for i := range n {
		reason := maps.ReasonRatelimit
		if i%2 == 1 {
			reason = maps.ReasonBlocklist
		}
		recs = append(recs, record(t, uint64(i+1)*1000, uint32(60+i), reason, maps.ActionDrop, 7, min(60+i, SnapLen)))
	}
	r.Run(context.Background(), sliceReader(recs, nil))

	st := r.Stats()
	if st.Recorded != n || st.Lost != 0 {
		t.Fatalf("stats %+v", st)
	}
	info, err := os.Stat(r.opts.Dir)
	if err != nil || info.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode %v %v", info.Mode(), err)
	}
	files := captureFiles(t, r.opts.Dir)
	if len(files) != 3 || st.Files != 3 {
		t.Fatalf("%d files (stats %d), want 3", len(files), st.Files)
	}
	var total int64
	var pkts []readPacket
	for _, f := range files {
		info, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", f, info.Mode())
		}
		if info.Size() > 2048+512 {
			t.Errorf("%s is %d bytes", f, info.Size())
		}
		total += info.Size()
		pkts = append(pkts, readCapture(t, f)...)
	}
	if total != st.Bytes {
		t.Errorf("stats bytes %d, files hold %d", st.Bytes, total)
	}
	// The files hold the newest packets, in order, ending with the last.
	if len(pkts) == 0 || len(pkts) >= n {
		t.Fatalf("%d packets kept", len(pkts))
	}
	first := n - len(pkts)
	for j, p := range pkts {
		i := first + j
		wantTS := boot.Add(time.Duration(i+1) * time.Microsecond)
		reason := "ratelimit rule=dns rule_id=7"
		if i%2 == 1 {
			reason = "blocklist rule=7 rule_id=7"
		}
		wantComment := fmt.Sprintf("reason=%s action=drop iface=eth0 len=%d", reason, 60+i)
		if !p.ts.Equal(wantTS) || p.length != 60+i || p.capLen != min(60+i, SnapLen) || p.comment != wantComment {
			t.Fatalf("packet %d: %+v, want ts %v len %d comment %q", i, p, wantTS, 60+i, wantComment)
		}
	}

	// A new recorder counts the files already there and keeps the cap.
	r2 := newRecorder(t, Options{Dir: r.opts.Dir, MaxFileBytes: 2048, MaxFiles: 3})
	if st := r2.Stats(); st.Files != 3 || st.Bytes != total {
		t.Fatalf("restart stats %+v", st)
	}
	r2.Run(context.Background(), sliceReader(recs[:1], nil))
	files2 := captureFiles(t, r.opts.Dir)
	if len(files2) != 3 || files2[0] != files[1] || files2[2] <= files[2] {
		t.Fatalf("after restart %v (before %v)", files2, files)
	}
}

// chanReader feeds records to Run from a channel, with a deadline like the
// ring buffer reader.
func chanReader(ch <-chan []byte) func() ([]byte, error) {
	return func() ([]byte, error) {
		select {
		case b := <-ch:
			return b, nil
		case <-time.After(5 * time.Millisecond):
			return nil, os.ErrDeadlineExceeded
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestDiskFailureDirReplaced(t *testing.T) {
	r := newRecorder(t, Options{MaxFileBytes: 1, MaxFiles: 100}) // a file per event
	ch := make(chan []byte)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx, chanReader(ch)); close(done) }()
	rec := record(t, 1, 100, maps.ReasonVerdict, maps.ActionDrop, 0, 100)

	for range 3 {
		ch <- rec
	}
	waitFor(t, "3 recorded", func() bool { return r.Stats().Recorded == 3 })

	// The directory becomes a file: every new capture file fails.
	if err := os.Rename(r.opts.Dir, r.opts.Dir+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.opts.Dir, []byte("not a dir"), 0o600); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		ch <- rec // never blocks for long: Run keeps reading
	}
	waitFor(t, "5 lost", func() bool { return r.Stats().LostDisk == 5 })

	// The disk comes back: recording resumes on a new file.
	if err := os.Remove(r.opts.Dir); err != nil {
		t.Fatal(err)
	}
	ch <- rec
	waitFor(t, "recovery", func() bool { return r.Stats().Recorded == 4 })
	cancel()
	<-done
	st := r.Stats()
	if st.Lost != 5 || st.LostDisk != 5 || st.LostQueue != 0 {
		t.Fatalf("stats %+v", st)
	}
	if files := captureFiles(t, r.opts.Dir); len(files) != 1 {
		t.Fatalf("files after recovery %v", files)
	}
}

// failingFile fails with ENOSPC once the disk holds more than limit bytes.
type failingFile struct {
	f    *os.File
	disk *diskQuota
}

type diskQuota struct {
	mu    sync.Mutex
	used  int
	limit int
}

func (w *failingFile) Write(p []byte) (int, error) {
	w.disk.mu.Lock()
	defer w.disk.mu.Unlock()
	if w.disk.used+len(p) > w.disk.limit {
		// A partial write, as a full disk does.
		n, _ := w.f.Write(p[:len(p)/2])
		return n, syscall.ENOSPC
	}
	w.disk.used += len(p)
	return w.f.Write(p)
}

func (w *failingFile) Truncate(n int64) error { return w.f.Truncate(n) }
func (w *failingFile) Close() error           { return w.f.Close() }

func TestDiskFull(t *testing.T) {
	const n = 50
	r := newRecorder(t, Options{MaxFileBytes: 1 << 20})
	quota := &diskQuota{limit: 3000}
	r.create = func(path string) (io.WriteCloser, error) {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, err
		}
		return &failingFile{f: f, disk: quota}, nil
	}
	var recs [][]byte
	for i := range n {
		recs = append(recs, record(t, uint64(i+1), 200, maps.ReasonBlocklist, maps.ActionDrop, 1, 128))
	}
	r.Run(context.Background(), sliceReader(recs, nil))
	st := r.Stats()
	if st.Recorded == 0 || st.LostDisk == 0 || st.Recorded+st.LostDisk != n || st.Lost != st.LostDisk {
		t.Fatalf("stats %+v", st)
	}
	// Every file, including the one cut by the full disk, still parses.
	got := 0
	for _, f := range captureFiles(t, r.opts.Dir) {
		got += len(readCapture(t, f))
	}
	if got != int(st.Recorded) {
		t.Fatalf("files hold %d packets, recorded %d", got, st.Recorded)
	}
}

func TestFullQueue(t *testing.T) {
	const n, queue = 50, 4
	r := newRecorder(t, Options{QueueLen: queue})
	gate := make(chan struct{})
	r.beforeWrite = func() { <-gate }
	var recs [][]byte
	for i := range n {
		recs = append(recs, record(t, uint64(i+1), 200, maps.ReasonRatelimit, maps.ActionDrop, 7, 128))
	}
	// The writer is stalled until the reader has read everything: Run must
	// not block on the queue.
	r.Run(context.Background(), sliceReader(recs, func() { close(gate) }))
	st := r.Stats()
	if st.LostQueue < n-queue-1 || st.Recorded+st.LostQueue != n || st.Lost != st.LostQueue {
		t.Fatalf("stats %+v", st)
	}
}

func TestSubscribe(t *testing.T) {
	r := newRecorder(t, Options{})
	rl, cancelRL := r.Subscribe(Filter{Reason: "ratelimit"}, 3)
	defer cancelRL()
	wd, cancelWD := r.Subscribe(Filter{Action: "would_drop"}, 0)
	all, cancelAll := r.Subscribe(Filter{}, 0)
	none, cancelNone := r.Subscribe(Filter{Reason: "malformed"}, 5)
	defer cancelNone()
	var recs [][]byte
	for i := range 20 {
		reason, action := maps.ReasonBlocklist, maps.ActionDrop
		if i%2 == 0 {
			reason = maps.ReasonRatelimit
		}
		if i%5 == 0 {
			action = maps.ActionWouldDrop
		}
		recs = append(recs, record(t, uint64(i+1), 100, reason, action, 7, 60))
	}
	cancelAll()
	cancelAll() // idempotent
	if _, ok := <-all; ok {
		t.Fatal("cancelled subscription delivered")
	}
	r.Run(context.Background(), sliceReader(recs, nil))

	var got []Event
	for e := range rl {
		got = append(got, e)
	}
	if len(got) != 3 {
		t.Fatalf("ratelimit subscriber got %d events", len(got))
	}
	for i, e := range got {
		if e.Reason != "ratelimit" || !e.Time.Equal(boot.Add(time.Duration(2*i+1))) {
			t.Fatalf("event %d: %+v", i, e)
		}
	}
	n := 0
	for e := range wd { // closed when Run returned
		if e.Action != "would_drop" {
			t.Fatalf("action filter let %+v through", e)
		}
		n++
	}
	if n != 4 {
		t.Fatalf("would_drop subscriber got %d, want 4", n)
	}
	cancelWD()
	if _, ok := <-none; ok {
		t.Fatal("malformed subscriber got an event")
	}
	if r.Subscribers() != 0 || r.Stats().LostSubscriber != 0 {
		t.Fatalf("subscribers %d, stats %+v", r.Subscribers(), r.Stats())
	}
	// After Run, subscriptions are closed at once.
	late, cancelLate := r.Subscribe(Filter{}, 1)
	defer cancelLate()
	if _, ok := <-late; ok {
		t.Fatal("late subscription delivered")
	}
}

func TestSlowSubscriber(t *testing.T) {
	const n = 1000
	r := newRecorder(t, Options{})
	slow, cancel := r.Subscribe(Filter{}, 0) // never read while running
	defer cancel()
	var recs [][]byte
	for i := range n {
		recs = append(recs, record(t, uint64(i+1), 100, maps.ReasonVerdict, maps.ActionDrop, 0, 60))
	}
	finished := make(chan struct{})
	go func() { r.Run(context.Background(), sliceReader(recs, nil)); close(finished) }()
	select {
	case <-finished:
	case <-time.After(10 * time.Second):
		t.Fatal("a slow subscriber stalled Run")
	}
	st := r.Stats()
	if st.Recorded != n || st.LostSubscriber != n-subscriberBuffer || st.Lost != 0 {
		t.Fatalf("stats %+v", st)
	}
	got := 0
	for range slow {
		got++
	}
	if got != subscriberBuffer {
		t.Fatalf("slow subscriber got %d", got)
	}
}

func TestRunStopsOnContextAndReadErrors(t *testing.T) {
	r := newRecorder(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	done := make(chan struct{})
	go func() {
		r.Run(ctx, func() ([]byte, error) {
			calls++
			switch calls {
			case 1:
				return []byte{1, 2}, nil // garbled
			case 2:
				return nil, errors.New("transient")
			}
			return nil, os.ErrDeadlineExceeded
		})
		close(done)
	}()
	waitFor(t, "garbled counted", func() bool { return r.Stats().Garbled == 1 })
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop")
	}
	if st := r.Stats(); st.Lost != 1 || st.Files != 0 {
		t.Fatalf("stats %+v", st)
	}
	r.Run(context.Background(), nil) // second call returns at once
}

// TestWireNames checks the control API's names and snap length against
// the datapath's, which the api package cannot import.
func TestWireNames(t *testing.T) {
	if len(api.Actions) != len(maps.Actions) || len(api.Reasons) != len(maps.Reasons) {
		t.Fatalf("api has %d actions and %d reasons, the datapath %d and %d",
			len(api.Actions), len(api.Reasons), len(maps.Actions), len(maps.Reasons))
	}
	for i, a := range maps.Actions {
		if api.Actions[i] != a.String() {
			t.Errorf("action %d: api %q, datapath %q", i, api.Actions[i], a)
		}
	}
	for i, r := range maps.Reasons {
		if api.Reasons[i] != r.String() {
			t.Errorf("reason %d: api %q, datapath %q", i, api.Reasons[i], r)
		}
	}
	if api.SnapLen != SnapLen {
		t.Errorf("api.SnapLen %d, datapath %d", api.SnapLen, SnapLen)
	}
}

func TestLimiter(t *testing.T) {
	var l limiter
	now := boot
	if ok, _ := l.allow(now); !ok {
		t.Fatal("first log suppressed")
	}
	for range 3 {
		if ok, _ := l.allow(now.Add(time.Second)); ok {
			t.Fatal("log not suppressed")
		}
	}
	if ok, n := l.allow(now.Add(time.Minute)); !ok || n != 3 {
		t.Fatalf("after a minute: %v %d", ok, n)
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Fatal("no dir accepted")
	}
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{Dir: file}); err == nil {
		t.Fatal("file as dir accepted")
	}
	r, err := New(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if r.bootTime.After(time.Now()) || r.opts.MaxFiles != DefaultMaxFiles || cap(r.queue) != DefaultQueueLen {
		t.Fatalf("defaults %+v", r.opts)
	}
	if name := r.ifname(1); name != "lo" && name != "" {
		t.Logf("ifindex 1 is %q", name)
	}
}
