package feeds

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/guard"
)

// feedServer serves one feed body whose response the test can change.
type feedServer struct {
	mu       sync.Mutex
	status   int
	body     string
	etag     string
	chunked  bool          // no Content-Length
	delay    time.Duration // before the headers
	stall    bool          // send part of the body, then hang until the client gives up
	requests []*http.Request
}

func (s *feedServer) set(fn func(s *feedServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(s)
}

func (s *feedServer) last() *http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[len(s.requests)-1]
}

func (s *feedServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests = append(s.requests, r)
	status, body, etag, chunked, delay, stall := s.status, s.body, s.etag, s.chunked, s.delay, s.stall
	s.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if etag != "" {
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	if status == 0 {
		status = http.StatusOK
	}
	if !chunked && !stall {
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	}
	w.WriteHeader(status)
	if chunked || stall {
		half := len(body) / 2
		_, _ = w.Write([]byte(body[:half]))
		w.(http.Flusher).Flush()
		if stall {
			<-r.Context().Done()
			return
		}
		_, _ = w.Write([]byte(body[half:]))
		return
	}
	_, _ = w.Write([]byte(body))
}

func newFeedServer(t *testing.T) (*feedServer, *httptest.Server) {
	fs := &feedServer{}
	srv := httptest.NewServer(fs)
	t.Cleanup(srv.Close)
	return fs, srv
}

func netset(addrs ...string) string {
	return "# test feed\n#\n" + strings.Join(addrs, "\n") + "\n"
}

var fiveAddrs = []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "198.51.100.0/24", "203.0.113.0/24"}

func wantKind(t *testing.T, err error, kind string) {
	t.Helper()
	var fe *Error
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not an *Error", err, err)
	}
	if fe.Kind != kind {
		t.Fatalf("error kind %q, want %q: %v", fe.Kind, kind, err)
	}
	if ErrorKind(err) != kind {
		t.Fatalf("ErrorKind = %q, want %q", ErrorKind(err), kind)
	}
}

func TestFetchETag(t *testing.T) {
	fs, srv := newFeedServer(t)
	fs.set(func(s *feedServer) { s.body, s.etag = netset(fiveAddrs...), `"v1"` })
	f := NewFetcher(Source{Name: "t", URL: srv.URL + "/level1.netset", Format: FormatNetset}, srv.Client())
	f.Version = "1.2.3"
	ctx := context.Background()

	l, nm, err := f.Fetch(ctx)
	if err != nil || nm || l.Len() != 5 {
		t.Fatalf("first fetch: list %v, notModified %v, err %v", l, nm, err)
	}
	r := fs.last()
	if got := r.Header.Get("User-Agent"); got != "bulwark/1.2.3" {
		t.Errorf("User-Agent %q", got)
	}
	if r.Header.Get("If-None-Match") != "" || r.Header.Get("If-Modified-Since") != "" {
		t.Errorf("first request is conditional: %v", r.Header)
	}

	l, nm, err = f.Fetch(ctx)
	if err != nil || !nm || l != nil {
		t.Fatalf("second fetch: list %v, notModified %v, err %v", l, nm, err)
	}
	if got := fs.last().Header.Get("If-None-Match"); got != `"v1"` {
		t.Errorf("If-None-Match %q", got)
	}

	fs.set(func(s *feedServer) { s.body, s.etag = netset("192.0.2.9", "192.0.2.10"), `"v2"` })
	l, nm, err = f.Fetch(ctx)
	if err != nil || nm || prefixStrings(l.Prefixes) != "192.0.2.9/32 192.0.2.10/32" {
		t.Fatalf("third fetch: list %v, notModified %v, err %v", l, nm, err)
	}

	// Forget makes the next request unconditional.
	f.Forget()
	if _, nm, err = f.Fetch(ctx); err != nil || nm {
		t.Fatalf("after Forget: notModified %v, err %v", nm, err)
	}
	if got := fs.last().Header.Get("If-None-Match"); got != "" {
		t.Errorf("If-None-Match after Forget: %q", got)
	}
}

func TestFetchLastModified(t *testing.T) {
	modTime := time.Date(2023, 11, 14, 22, 13, 20, 0, time.UTC)
	body := netset(fiveAddrs...)
	var mu sync.Mutex
	var ims []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ims = append(ims, r.Header.Get("If-Modified-Since"))
		mu.Unlock()
		http.ServeContent(w, r, "feed.netset", modTime, strings.NewReader(body))
	}))
	defer srv.Close()
	f := NewFetcher(Source{Name: "t", URL: srv.URL, Format: FormatNetset}, srv.Client())
	if l, nm, err := f.Fetch(context.Background()); err != nil || nm || l.Len() != 5 {
		t.Fatalf("first fetch: list %v, notModified %v, err %v", l, nm, err)
	}
	if l, nm, err := f.Fetch(context.Background()); err != nil || !nm || l != nil {
		t.Fatalf("second fetch: list %v, notModified %v, err %v", l, nm, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"", "Tue, 14 Nov 2023 22:13:20 GMT"}; strings.Join(ims, "|") != strings.Join(want, "|") {
		t.Errorf("If-Modified-Since headers %q, want %q", ims, want)
	}
}

func TestFetchUnexpected304(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotModified)
	}))
	defer srv.Close()
	_, _, err := NewFetcher(Source{URL: srv.URL, Format: FormatPlain}, srv.Client()).Fetch(context.Background())
	wantKind(t, err, KindHTTP)
}

func TestFetchErrors(t *testing.T) {
	tests := []struct {
		name  string
		src   Source
		setup func(s *feedServer)
		kind  string
		msg   string // a substring of the message
		is    error
	}{
		{"status 500", Source{}, func(s *feedServer) { s.status, s.body = 500, "oops" }, KindHTTP, "status 500 Internal Server Error", nil},
		{"status 404", Source{}, func(s *feedServer) { s.status = 404 }, KindHTTP, "status 404 Not Found", nil},
		{"content-length over cap", Source{MaxBytes: 40}, func(s *feedServer) { s.body = netset(fiveAddrs...) }, KindSize, "Content-Length 75, more than 40", ErrTooLarge},
		{"chunked body over cap", Source{MaxBytes: 40}, func(s *feedServer) { s.body, s.chunked = netset(fiveAddrs...), true }, KindSize, "feed too large: more than 40 bytes", ErrTooLarge},
		{"too many entries", Source{MaxEntries: 4}, func(s *feedServer) { s.body = netset(fiveAddrs...) }, KindSize, "line 7: too many entries: more than 4", ErrTooManyEntries},
		{"broken body", Source{}, func(s *feedServer) { s.body = netset("192.0.2.1", "192.0.2.2/", "192.0.2.3") }, KindParse, `line 4: bad CIDR "192.0.2.2/"`, nil},
		{"empty body", Source{}, func(s *feedServer) { s.body = "" }, KindParse, "empty feed", ErrEmpty},
		{"timeout before headers", Source{Timeout: 100 * time.Millisecond}, func(s *feedServer) { s.body, s.delay = netset(fiveAddrs...), 5*time.Second }, KindFetch, "deadline exceeded", context.DeadlineExceeded},
		{"timeout in body", Source{Timeout: 100 * time.Millisecond}, func(s *feedServer) { s.body, s.stall = netset(fiveAddrs...), true }, KindFetch, "deadline exceeded", context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, srv := newFeedServer(t)
			fs.set(tt.setup)
			src := tt.src
			src.Name, src.URL, src.Format = "t", srv.URL+"/feed?key=secret", FormatNetset
			start := time.Now()
			l, nm, err := NewFetcher(src, srv.Client()).Fetch(context.Background())
			if l != nil || nm {
				t.Errorf("list %v, notModified %v with an error", l, nm)
			}
			wantKind(t, err, tt.kind)
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not contain %q", err, tt.msg)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q shows the query", err)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("fetch took %v", d)
			}
		})
	}
}

func TestFetchBadSource(t *testing.T) {
	tests := []struct {
		name string
		src  Source
		msg  string
	}{
		{"file scheme", Source{URL: "file:///etc/passwd"}, `unsupported URL scheme "file"`},
		{"ftp scheme", Source{URL: "ftp://192.0.2.1/feed"}, `unsupported URL scheme "ftp"`},
		{"no scheme", Source{URL: "192.0.2.1/feed"}, `unsupported URL scheme ""`},
		{"bad URL", Source{URL: "http://[::1"}, "missing ']'"},
		{"neither", Source{}, "neither url nor path set"},
		{"both", Source{URL: "http://127.0.0.1/", Path: "/x"}, "both url and path set"},
		{"missing file", Source{Path: "/nonexistent/bulwark/feed"}, "no such file"},
		{"directory", Source{Path: "testdata"}, "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.src.Format = FormatPlain
			_, _, err := NewFetcher(tt.src, nil).Fetch(context.Background())
			wantKind(t, err, KindFetch)
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not contain %q", err, tt.msg)
			}
		})
	}
}

func TestFetchFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "drop.txt")
	write := func(body string, mtime time.Time) {
		t.Helper()
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Date(2023, 11, 14, 22, 0, 0, 0, time.UTC)
	write("192.0.2.0/24 ; SBL1\n198.51.100.0/24 ; SBL2\n", t0)
	f := NewFetcher(Source{Name: "drop", Path: path, Format: FormatSpamhaus, MaxBytes: 100}, nil)
	ctx := context.Background()

	steps := []struct {
		name   string
		change func()
		want   string // prefixes, or "" for not modified
		kind   string // error kind, if any
	}{
		{"first read", func() {}, "192.0.2.0/24 198.51.100.0/24", ""},
		{"unchanged", func() {}, "", ""},
		{"touched", func() { write("192.0.2.0/24 ; SBL1\n198.51.100.0/24 ; SBL2\n", t0.Add(time.Minute)) }, "192.0.2.0/24 198.51.100.0/24", ""},
		{"unchanged again", func() {}, "", ""},
		{"same size and mtime, replaced by rename", func() {
			tmp := filepath.Join(dir, "drop.txt.new")
			if err := os.WriteFile(tmp, []byte("192.0.2.0/24 ; SBL1\n198.51.100.0/25 ; SBL3\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(tmp, t0.Add(time.Minute), t0.Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, path); err != nil {
				t.Fatal(err)
			}
		}, "192.0.2.0/24 198.51.100.0/25", ""},
		{"content changed", func() { write("203.0.113.0/24 ; SBL9\n", t0.Add(2*time.Minute)) }, "203.0.113.0/24", ""},
		{"broken", func() { write("203.0.113.0/24 ; SBL9\n203.0.113.0/99 ; SBL10\n", t0.Add(3*time.Minute)) }, "", KindParse},
		{"broken, unchanged, still reported", func() {}, "", KindParse},
		{"over the cap", func() { write(strings.Repeat("; padding\n", 11), t0.Add(4*time.Minute)) }, "", KindSize},
		{"removed", func() { _ = os.Remove(path) }, "", KindFetch},
	}
	for _, st := range steps {
		st.change()
		l, nm, err := f.Fetch(ctx)
		if st.kind != "" {
			wantKind(t, err, st.kind)
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if st.want == "" {
			if !nm || l != nil {
				t.Errorf("%s: list %v, notModified %v; want not modified", st.name, l, nm)
			}
			continue
		}
		if nm || prefixStrings(l.Prefixes) != st.want {
			t.Errorf("%s: list %v, notModified %v; want %s", st.name, l, nm, st.want)
		}
	}
}

func TestFeedRefresh(t *testing.T) {
	fs, srv := newFeedServer(t)
	f := NewFeed(NewFetcher(Source{Name: "t", URL: srv.URL, Format: FormatNetset, MaxBytes: 200, Timeout: 200 * time.Millisecond}, srv.Client()), false)
	clock := time.Unix(1700000000, 0)
	f.now = func() time.Time { return clock }
	five := "192.0.2.1/32 192.0.2.2/32 192.0.2.3/32 198.51.100.0/24 203.0.113.0/24"

	steps := []struct {
		name        string
		setup       func(s *feedServer)
		allowShrink bool
		changed     bool
		kind        string
		want        string // the list in force afterwards
		success     bool   // LastSuccess moves to the current clock
	}{
		{"first", func(s *feedServer) { s.body, s.etag = netset(fiveAddrs...), `"a"` }, false, true, "", five, true},
		{"not modified", func(s *feedServer) {}, false, false, "", five, true},
		{"500 keeps last good", func(s *feedServer) { s.status, s.etag = 500, "" }, false, false, KindHTTP, five, false},
		{"over the cap keeps last good", func(s *feedServer) { s.status, s.body = 200, netset(fiveAddrs...)+strings.Repeat("#\n", 100) }, false, false, KindSize, five, false},
		{"chunked over the cap keeps last good", func(s *feedServer) { s.chunked = true }, false, false, KindSize, five, false},
		{"broken body keeps last good", func(s *feedServer) { s.chunked, s.body = false, netset("192.0.2.1", "not-an-address") }, false, false, KindParse, five, false},
		{"empty body keeps last good", func(s *feedServer) { s.body = "" }, false, false, KindParse, five, false},
		{"timeout keeps last good", func(s *feedServer) { s.body, s.delay = netset(fiveAddrs...), 5*time.Second }, false, false, KindFetch, five, false},
		{"same content", func(s *feedServer) { s.delay = 0 }, false, false, "", five, true},
		{"growth", func(s *feedServer) { s.body = netset(append([]string{"198.18.0.0/15"}, fiveAddrs...)...) }, false, true, "", "192.0.2.1/32 192.0.2.2/32 192.0.2.3/32 198.18.0.0/15 198.51.100.0/24 203.0.113.0/24", true},
		{"shrink to half is fine", func(s *feedServer) { s.body = netset("192.0.2.1", "192.0.2.2", "192.0.2.3") }, false, true, "", "192.0.2.1/32 192.0.2.2/32 192.0.2.3/32", true},
		{"shrink by more than half held back", func(s *feedServer) { s.body, s.etag = netset("192.0.2.1"), `"b"` }, false, false, KindShrink, "192.0.2.1/32 192.0.2.2/32 192.0.2.3/32", false},
		{"still held back, not 'not modified'", func(s *feedServer) {}, false, false, KindShrink, "192.0.2.1/32 192.0.2.2/32 192.0.2.3/32", false},
		{"accepted with AllowShrink", func(s *feedServer) {}, true, true, "", "192.0.2.1/32", true},
	}
	for i, st := range steps {
		fs.set(st.setup)
		f.AllowShrink = st.allowShrink
		clock = clock.Add(time.Hour)
		before := f.LastSuccess()
		changed, err := f.Refresh(context.Background())
		if st.kind != "" {
			if err == nil {
				t.Fatalf("step %d %s: no error", i, st.name)
			}
			wantKind(t, err, st.kind)
		} else if err != nil {
			t.Fatalf("step %d %s: %v", i, st.name, err)
		}
		if changed != st.changed {
			t.Errorf("step %d %s: changed %v, want %v", i, st.name, changed, st.changed)
		}
		if got := prefixStrings(f.Current().Prefixes); got != st.want {
			t.Errorf("step %d %s: in force %s, want %s", i, st.name, got, st.want)
		}
		if f.Entries() != f.Current().Len() {
			t.Errorf("step %d %s: Entries %d", i, st.name, f.Entries())
		}
		wantSuccess := before
		if st.success {
			wantSuccess = clock
		}
		if !f.LastSuccess().Equal(wantSuccess) {
			t.Errorf("step %d %s: LastSuccess %v, want %v", i, st.name, f.LastSuccess(), wantSuccess)
		}
	}
}

func TestFeedFirstFetchFails(t *testing.T) {
	fs, srv := newFeedServer(t)
	fs.set(func(s *feedServer) { s.status = 503 })
	f := NewFeed(NewFetcher(Source{Name: "t", URL: srv.URL, Format: FormatPlain}, srv.Client()), false)
	changed, err := f.Refresh(context.Background())
	wantKind(t, err, KindHTTP)
	if changed || f.Current() != nil || f.Entries() != 0 || !f.LastSuccess().IsZero() {
		t.Errorf("changed %v, current %v, entries %d, last success %v", changed, f.Current(), f.Entries(), f.LastSuccess())
	}
}

func TestFeedNotModifiedWithoutList(t *testing.T) {
	fs, srv := newFeedServer(t)
	fs.set(func(s *feedServer) { s.body, s.etag = netset(fiveAddrs...), `"a"` })
	fetcher := NewFetcher(Source{Name: "t", URL: srv.URL, Format: FormatNetset}, srv.Client())
	if _, _, err := fetcher.Fetch(context.Background()); err != nil { // used on its own first
		t.Fatal(err)
	}
	f := NewFeed(fetcher, false)
	_, err := f.Refresh(context.Background())
	wantKind(t, err, KindFetch)
	if changed, err := f.Refresh(context.Background()); err != nil || !changed || f.Entries() != 5 {
		t.Fatalf("second refresh: changed %v, err %v, entries %d", changed, err, f.Entries())
	}
}

func TestFeedFromFile(t *testing.T) {
	f := NewFeed(NewFetcher(Source{Name: "a", Path: filepath.Join("testdata", "abuseipdb.json"), Format: FormatAbuseIPDBJSON, MinConfidence: 90}, nil), false)
	changed, err := f.Refresh(context.Background())
	if err != nil || !changed || f.Entries() != 2 || f.Current().Skipped != 3 {
		t.Fatalf("changed %v, err %v, entries %d", changed, err, f.Entries())
	}
	changed, err = f.Refresh(context.Background())
	if err != nil || changed || f.Entries() != 2 {
		t.Fatalf("unchanged file: changed %v, err %v, entries %d", changed, err, f.Entries())
	}
}

func TestErrorKind(t *testing.T) {
	inner := errors.New("x")
	e := &Error{Kind: KindParse, Err: inner}
	if e.Error() != "parse: x" || !errors.Is(e, inner) {
		t.Errorf("Error() = %q", e.Error())
	}
	if ErrorKind(nil) != "" || ErrorKind(inner) != KindFetch || ErrorKind(fmt.Errorf("w: %w", e)) != KindParse {
		t.Error("ErrorKind")
	}
}

func TestSourceFromConfig(t *testing.T) {
	src := SourceFromConfig(config.Feed{Name: "drop", URL: "https://example.invalid/drop_v4.json", Format: "spamhaus-json", MaxEntries: 1000, MinConfidence: 75, AllowShrink: true})
	want := Source{Name: "drop", URL: "https://example.invalid/drop_v4.json", Format: "spamhaus-json", MaxEntries: 1000, MinConfidence: 75}
	if src != want {
		t.Errorf("got %+v, want %+v", src, want)
	}
	f := NewFetcher(src, nil)
	if got := f.Source(); got.MaxBytes != DefaultMaxBytes || got.Timeout != DefaultTimeout {
		t.Errorf("defaults not filled in: %+v", got)
	}
}

// TestFeedGrowth: an update that grows the space a feed covers past what
// Growth allows is held back with kind growth, the last good version stays,
// and the next refresh judges the feed again (not "not modified").
func TestFeedGrowth(t *testing.T) {
	fs, srv := newFeedServer(t)
	f := NewFeed(NewFetcher(Source{Name: "t", URL: srv.URL, Format: FormatNetset, MaxBytes: 1000, Timeout: time.Second}, srv.Client()), false)
	limits := guard.Limits{MinBits4: 8, MinBits6: 32, MaxGrowth4: 5, MaxGrowth6: 24}
	var prevSeen []string
	f.Growth = func(prev, next []netip.Prefix) error {
		prevSeen = append(prevSeen, prefixStrings(prev))
		return limits.CheckGrowth(prev, next)
	}
	// Nine /8s are 9 * 2^24 addresses, more than a /5 (2^27).
	nine := []string{"1.0.0.0/8", "2.0.0.0/8", "3.0.0.0/8", "4.0.0.0/8", "5.0.0.0/8", "6.0.0.0/8", "7.0.0.0/8", "8.0.0.0/8", "9.0.0.0/8"}
	good := "192.0.2.1/32 192.0.2.2/32 192.0.2.3/32 198.51.100.0/24 203.0.113.0/24"
	steps := []struct {
		name, kind, want, prev string
	}{
		{"first", "", good, ""},
		{"nine /8s at once held back", KindGrowth, good, good},
		{"still held back, not 'not modified'", KindGrowth, good, good},
		{"eight of them accepted", "", "1.0.0.0/8 2.0.0.0/8 3.0.0.0/8 4.0.0.0/8 5.0.0.0/8 6.0.0.0/8 7.0.0.0/8 8.0.0.0/8 " + good, good},
	}
	bodies := []string{netset(fiveAddrs...), netset(append(nine, fiveAddrs...)...), "", netset(append(nine[:8], fiveAddrs...)...)}
	for i, st := range steps {
		fs.set(func(s *feedServer) {
			if bodies[i] != "" {
				s.body, s.etag = bodies[i], fmt.Sprintf(`"%d"`, i)
			}
		})
		_, err := f.Refresh(context.Background())
		if st.kind != "" {
			wantKind(t, err, st.kind)
		} else if err != nil {
			t.Fatalf("step %d %s: %v", i, st.name, err)
		}
		if got := prefixStrings(f.Current().Prefixes); got != st.want {
			t.Errorf("step %d %s: in force %s, want %s", i, st.name, got, st.want)
		}
		if len(prevSeen) != i+1 || prevSeen[i] != st.prev {
			t.Errorf("step %d %s: Growth saw prev %q, want %q", i, st.name, prevSeen, st.prev)
		}
	}
}
