package feeds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/bulwark-filter/bulwark/agent/config"
)

// Error kinds, the values of Error.Kind and of the kind label of bulwark_feed_errors_total.
const (
	// KindFetch is a failure to get the data: bad URL, connection error, timeout, unreadable file.
	KindFetch = "fetch"
	// KindHTTP is an HTTP response with a status other than 2xx (or an unexpected 304).
	KindHTTP = "http"
	// KindParse is a feed that does not parse or validate.
	KindParse = "parse"
	// KindSize is a feed over its byte cap or its entry cap.
	KindSize = "size"
	// KindShrink is an update held back because it has fewer than half the entries of the last good version.
	KindShrink = "shrink"
	// KindGrowth is an update held back because the space it covers grows more at once than Feed.Growth allows.
	KindGrowth = "growth"
)

// DefaultTimeout is the time limit of one fetch when Source.Timeout is 0.
const DefaultTimeout = 30 * time.Second

// Error is a failed fetch or refresh, with a kind for metrics.
type Error struct {
	// Kind is KindFetch, KindHTTP, KindParse, KindSize, KindShrink or KindGrowth.
	Kind string
	// Err is the underlying error.
	Err error
}

// Error implements error.
func (e *Error) Error() string { return e.Kind + ": " + e.Err.Error() }

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// ErrorKind returns the Kind of the *Error in err's chain, or KindFetch for any other non-nil error, or "" for nil.
func ErrorKind(err error) string {
	if err == nil {
		return ""
	}
	var fe *Error
	if errors.As(err, &fe) {
		return fe.Kind
	}
	return KindFetch
}

// Source says where a feed comes from and how it is bounded.
type Source struct {
	// Name is the feed's name, used in error messages.
	Name string
	// URL is the http or https URL to fetch; exactly one of URL and Path is set.
	URL string
	// Path is the file to read; exactly one of URL and Path is set.
	Path string
	// Format is one of Formats.
	Format string
	// MaxEntries caps the feed's entries (see ParseOptions.MaxEntries).
	MaxEntries int
	// MinConfidence is the lowest abuseConfidenceScore taken from an abuseipdb-json feed.
	MinConfidence int
	// MaxBytes caps the size of the file or response body; 0 means DefaultMaxBytes.
	MaxBytes int64
	// Timeout limits one fetch, body included; 0 means DefaultTimeout.
	Timeout time.Duration
}

// SourceFromConfig returns the Source of a configured feed, with the default byte cap and timeout.
func SourceFromConfig(c config.Feed) Source {
	return Source{
		Name:          c.Name,
		URL:           c.URL,
		Path:          c.Path,
		Format:        c.Format,
		MaxEntries:    int(c.MaxEntries),
		MinConfidence: c.MinConfidence,
	}
}

// Fetcher gets one feed from its file or URL, remembering enough about the last successful fetch (ETag and
// Last-Modified for a URL, modification time, size and identity for a file) to report that nothing changed.
// A Fetcher is safe for use by one goroutine at a time.
type Fetcher struct {
	// Version is the agent version sent in the User-Agent header, "bulwark/<Version>"; empty means "dev".
	Version string

	src    Source
	client *http.Client

	mu           sync.Mutex
	etag         string
	lastModified string
	file         os.FileInfo
}

// NewFetcher returns a Fetcher for src. A nil client means http.DefaultClient; the per-fetch timeout comes from
// src.Timeout, not from the client.
func NewFetcher(src Source, client *http.Client) *Fetcher {
	if client == nil {
		client = http.DefaultClient
	}
	if src.MaxBytes <= 0 {
		src.MaxBytes = DefaultMaxBytes
	}
	if src.Timeout <= 0 {
		src.Timeout = DefaultTimeout
	}
	return &Fetcher{src: src, client: client}
}

// Source returns the fetcher's source, with defaults filled in.
func (f *Fetcher) Source() Source { return f.src }

// Forget drops what the fetcher remembers of the last successful fetch, so the next Fetch downloads and parses
// the feed again even if it has not changed. Feed calls it when it rejects an update.
func (f *Fetcher) Forget() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.etag, f.lastModified, f.file = "", "", nil
}

// Fetch reads and parses the feed. notModified is true, with a nil list, when the feed is unchanged since the
// last successful fetch (HTTP 304, or the same file with the same size and modification time). Every error is an
// *Error.
func (f *Fetcher) Fetch(ctx context.Context) (list *List, notModified bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, f.src.Timeout)
	defer cancel()
	switch {
	case f.src.Path != "" && f.src.URL != "":
		return nil, false, &Error{Kind: KindFetch, Err: errors.New("both url and path set")}
	case f.src.Path != "":
		return f.fetchFile()
	case f.src.URL != "":
		return f.fetchURL(ctx)
	default:
		return nil, false, &Error{Kind: KindFetch, Err: errors.New("neither url nor path set")}
	}
}

func (f *Fetcher) opts() ParseOptions {
	return ParseOptions{MaxEntries: f.src.MaxEntries, MinConfidence: f.src.MinConfidence, MaxBytes: f.src.MaxBytes}
}

func (f *Fetcher) fetchFile() (*List, bool, error) {
	fh, err := os.Open(f.src.Path)
	if err != nil {
		return nil, false, &Error{Kind: KindFetch, Err: err}
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return nil, false, &Error{Kind: KindFetch, Err: err}
	}
	if !fi.Mode().IsRegular() {
		return nil, false, &Error{Kind: KindFetch, Err: fmt.Errorf("%s: not a regular file", f.src.Path)}
	}
	if fi.Size() > f.src.MaxBytes {
		return nil, false, &Error{Kind: KindSize, Err: fmt.Errorf("%s: %w: %d bytes, more than %d", f.src.Path, ErrTooLarge, fi.Size(), f.src.MaxBytes)}
	}
	f.mu.Lock()
	prev := f.file
	f.mu.Unlock()
	if prev != nil && os.SameFile(prev, fi) && prev.Size() == fi.Size() && prev.ModTime().Equal(fi.ModTime()) {
		return nil, true, nil
	}
	list, err := Parse(f.src.Format, &markReader{fh}, f.opts())
	if err != nil {
		return nil, false, classify(fmt.Errorf("%s: %w", f.src.Path, err))
	}
	f.mu.Lock()
	f.file = fi
	f.mu.Unlock()
	return list, false, nil
}

func (f *Fetcher) fetchURL(ctx context.Context) (*List, bool, error) {
	u, err := url.Parse(f.src.URL)
	if err != nil {
		return nil, false, &Error{Kind: KindFetch, Err: err}
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, false, &Error{Kind: KindFetch, Err: fmt.Errorf("unsupported URL scheme %q (want http or https)", u.Scheme)}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, false, &Error{Kind: KindFetch, Err: err}
	}
	version := f.Version
	if version == "" {
		version = "dev"
	}
	req.Header.Set("User-Agent", "bulwark/"+version)
	f.mu.Lock()
	etag, lastModified := f.etag, f.lastModified
	f.mu.Unlock()
	conditional := etag != "" || lastModified != ""
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	if lastModified != "" {
		req.Header.Set("If-Modified-Since", lastModified)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = redact(u)
		}
		return nil, false, &Error{Kind: KindFetch, Err: err}
	}
	defer func() {
		_, _ = io.CopyN(io.Discard, resp.Body, 4096) // let a short leftover reuse the connection
		resp.Body.Close()
	}()
	switch {
	case resp.StatusCode == http.StatusNotModified && conditional:
		return nil, true, nil
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return nil, false, &Error{Kind: KindHTTP, Err: fmt.Errorf("GET %s: status %s", redact(u), resp.Status)}
	}
	if resp.ContentLength > f.src.MaxBytes {
		return nil, false, &Error{Kind: KindSize, Err: fmt.Errorf("GET %s: %w: Content-Length %d, more than %d", redact(u), ErrTooLarge, resp.ContentLength, f.src.MaxBytes)}
	}
	list, err := Parse(f.src.Format, &markReader{resp.Body}, f.opts())
	if err != nil {
		return nil, false, classify(fmt.Errorf("GET %s: %w", redact(u), err))
	}
	f.mu.Lock()
	f.etag, f.lastModified = resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	f.mu.Unlock()
	return list, false, nil
}

// redact hides credentials and the query (AbuseIPDB takes its API key in a header, others in the query).
func redact(u *url.URL) string {
	c := *u
	c.User = nil
	if c.RawQuery != "" {
		c.RawQuery = "..."
	}
	return strings.TrimSuffix(c.String(), "?")
}

// readFailure marks an error of the underlying reader (network, disk), as opposed to bad content.
type readFailure struct{ err error }

func (e *readFailure) Error() string { return "read: " + e.err.Error() }
func (e *readFailure) Unwrap() error { return e.err }

// markReader wraps the reader's errors other than io.EOF in readFailure.
type markReader struct{ r io.Reader }

func (m *markReader) Read(p []byte) (int, error) {
	n, err := m.r.Read(p)
	if err != nil && err != io.EOF {
		err = &readFailure{err}
	}
	return n, err
}

// classify turns an error of Parse into an *Error of the right kind.
func classify(err error) *Error {
	var rf *readFailure
	switch {
	case errors.As(err, &rf):
		return &Error{Kind: KindFetch, Err: err}
	case errors.Is(err, ErrTooLarge), errors.Is(err, ErrTooManyEntries):
		return &Error{Kind: KindSize, Err: err}
	default:
		return &Error{Kind: KindParse, Err: err}
	}
}
