// Package feeds reads threat feeds: it parses the supported list formats into normalised prefix lists, fetches
// feeds from files or HTTP(S) URLs with conditional requests and size caps, keeps the last good version of every
// feed in force when an update fails or looks suspect, and computes the differences the agent applies to its maps.
//
// Nothing in this package panics on bad input, and memory is bounded: every input is read through a reader capped
// at ParseOptions.MaxBytes, lines are limited to MaxLineBytes, and a feed with more than ParseOptions.MaxEntries
// entries is refused rather than truncated.
package feeds

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Feed formats accepted by Parse.
const (
	// FormatSpamhaus is Spamhaus DROP text: "1.10.16.0/20 ; SBL256894", with ";" comments.
	FormatSpamhaus = "spamhaus"
	// FormatSpamhausJSON is Spamhaus DROP JSON lines, {"cidr":...,"sblid":...,"rir":...}, plus a metadata record.
	FormatSpamhausJSON = "spamhaus-json"
	// FormatNetset is a FireHOL netset: "#" comment lines and one address or CIDR per line.
	FormatNetset = "netset"
	// FormatPlain is a plain list: one address or CIDR per line, with "#" and ";" comments.
	FormatPlain = "plain"
	// FormatAbuseIPDBJSON is the AbuseIPDB blacklist JSON: {"meta":{...},"data":[{"ipAddress":...}, ...]}.
	FormatAbuseIPDBJSON = "abuseipdb-json"
)

// Formats lists every format Parse accepts.
var Formats = []string{FormatSpamhaus, FormatSpamhausJSON, FormatNetset, FormatPlain, FormatAbuseIPDBJSON}

// Limits applied when ParseOptions (or Source) leave them zero.
const (
	// DefaultMaxEntries is the entry cap used when ParseOptions.MaxEntries is 0; it is the largest max_entries
	// the configuration accepts.
	DefaultMaxEntries = 1 << 26
	// DefaultMaxBytes is the input size cap used when ParseOptions.MaxBytes is 0. The largest common feeds
	// (a full AbuseIPDB blacklist, FireHOL level sets) stay well below it.
	DefaultMaxBytes = 64 << 20
	// MaxLineBytes is the longest line (without its line ending) accepted in the line-based formats.
	MaxLineBytes = 4096
)

// Sentinel errors, matched with errors.Is.
var (
	// ErrTooLarge reports an input larger than its byte cap.
	ErrTooLarge = errors.New("feed too large")
	// ErrTooManyEntries reports a feed with more entries than its entry cap.
	ErrTooManyEntries = errors.New("too many entries")
	// ErrEmpty reports a feed without a single entry.
	ErrEmpty = errors.New("empty feed")
	// ErrUnknownFormat reports a format name Parse does not know.
	ErrUnknownFormat = errors.New("unknown feed format")
)

// ParseOptions bounds what Parse accepts.
type ParseOptions struct {
	// MaxEntries is the most entries the feed may have (counted before duplicates are removed); a feed with more
	// is refused, not truncated. 0 means DefaultMaxEntries.
	MaxEntries int
	// MinConfidence is the lowest abuseConfidenceScore taken from an abuseipdb-json feed; entries below it are
	// counted in List.Skipped. Other formats ignore it.
	MinConfidence int
	// MaxBytes is the largest input accepted; a larger one is refused with ErrTooLarge. 0 means DefaultMaxBytes.
	MaxBytes int64
}

// List is a parsed feed.
type List struct {
	// Prefixes are the feed's entries: masked, IPv4-mapped IPv6 unmapped, sorted (IPv4 first, then by address
	// and prefix length) and without duplicates. A bare address is a /32 or /128.
	Prefixes []netip.Prefix
	// Skipped counts entries left out on purpose, such as abuseipdb-json entries under MinConfidence.
	Skipped int
	// Fixed counts entries that had host bits set and were masked (e.g. "192.0.2.1/24" became 192.0.2.0/24).
	Fixed int
	// Duplicates counts entries dropped because an equal prefix was already in the feed.
	Duplicates int
	// Generated is when the publisher generated the feed, if the format says so (spamhaus-json metadata
	// timestamp, abuseipdb-json meta.generatedAt); otherwise zero.
	Generated time.Time
}

// Len returns the number of prefixes; it is 0 for a nil List.
func (l *List) Len() int {
	if l == nil {
		return 0
	}
	return len(l.Prefixes)
}

// ParseError is a problem at one place in a feed. Its message names the place: "line 17: ..." for line-based
// formats, "data[17]: ..." for entries of an abuseipdb-json feed.
type ParseError struct {
	// Line is the 1-based line number, or 0 when the problem is not tied to a line.
	Line int
	// Index is the index in the abuseipdb-json data array when Line is 0, or -1.
	Index int
	// Err is the problem.
	Err error
}

// Error implements error.
func (e *ParseError) Error() string {
	switch {
	case e.Line > 0:
		return fmt.Sprintf("line %d: %v", e.Line, e.Err)
	case e.Index >= 0:
		return fmt.Sprintf("data[%d]: %v", e.Index, e.Err)
	default:
		return e.Err.Error()
	}
}

// Unwrap returns the underlying error.
func (e *ParseError) Unwrap() error { return e.Err }

func lineErr(line int, format string, args ...any) error {
	return &ParseError{Line: line, Index: -1, Err: fmt.Errorf(format, args...)}
}

// Parse reads a feed in the named format. It returns an error, and no list, if the input is larger than
// opts.MaxBytes, has more than opts.MaxEntries entries, has no entries at all (unless a metadata record says the
// feed is empty), has a line longer than MaxLineBytes, or has an entry that does not parse; the error names the
// line (or the abuseipdb-json data index). Entries with host bits set are masked and counted in List.Fixed.
func Parse(format string, r io.Reader, opts ParseOptions) (*List, error) {
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultMaxEntries
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	b := &builder{max: opts.MaxEntries}
	cr := &capReader{r: r, max: opts.MaxBytes}
	var err error
	switch format {
	case FormatSpamhaus:
		err = parseText(cr, b, ";", false)
	case FormatNetset:
		err = parseText(cr, b, "#", true)
	case FormatPlain:
		err = parseText(cr, b, "#;", false)
	case FormatSpamhausJSON:
		err = parseSpamhausJSON(cr, b)
	case FormatAbuseIPDBJSON:
		err = parseAbuseIPDB(cr, b, opts.MinConfidence)
	default:
		return nil, fmt.Errorf("%w %q", ErrUnknownFormat, format)
	}
	if err != nil {
		return nil, err
	}
	if len(b.list.Prefixes) == 0 && !b.emptyOK {
		if b.list.Skipped > 0 {
			return nil, fmt.Errorf("%w: all %d entries skipped (under min confidence)", ErrEmpty, b.list.Skipped)
		}
		return nil, ErrEmpty
	}
	b.finish()
	return &b.list, nil
}

// builder collects entries.
type builder struct {
	list    List
	max     int
	n       int  // entries added, before deduplication
	emptyOK bool // a metadata record said the feed has no records
}

// add parses and adds one entry; the error carries no position.
func (b *builder) add(s string) error {
	p, fixed, err := parseEntry(s)
	if err != nil {
		return err
	}
	if b.n >= b.max {
		return fmt.Errorf("%w: more than %d", ErrTooManyEntries, b.max)
	}
	b.n++
	if fixed {
		b.list.Fixed++
	}
	b.list.Prefixes = append(b.list.Prefixes, p)
	return nil
}

func (b *builder) finish() {
	ps := b.list.Prefixes
	slices.SortFunc(ps, comparePrefix)
	before := len(ps)
	ps = slices.Compact(ps)
	b.list.Duplicates = before - len(ps)
	b.list.Prefixes = slices.Clip(ps)
}

// comparePrefix orders prefixes by address family (IPv4 first), then address, then prefix length.
func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// parseEntry parses an address or CIDR and normalises it: IPv4-mapped IPv6 is unmapped and host bits are masked
// (fixed reports that they were set).
func parseEntry(s string) (p netip.Prefix, fixed bool, err error) {
	if strings.IndexByte(s, '/') >= 0 {
		p, err = netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, false, fmt.Errorf("bad CIDR %q", s)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, false, fmt.Errorf("bad address %q", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if a := p.Addr(); a.Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, false, fmt.Errorf("bad CIDR %q: an IPv4-mapped prefix must be at least /96", s)
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	m := p.Masked()
	return m, m != p, nil
}

// capReader fails with ErrTooLarge once more than max bytes have been read.
type capReader struct {
	r   io.Reader
	max int64
	n   int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.n > c.max {
		return 0, c.tooLarge()
	}
	if room := c.max - c.n + 1; int64(len(p)) > room {
		p = p[:room]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.max {
		return n - int(c.n-c.max), c.tooLarge()
	}
	return n, err
}

func (c *capReader) tooLarge() error {
	return fmt.Errorf("%w: more than %d bytes", ErrTooLarge, c.max)
}

// lineReader yields lines without their line endings, refusing lines longer than MaxLineBytes.
type lineReader struct {
	br   *bufio.Reader
	line int
	done bool
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, 2*MaxLineBytes)}
}

// next returns the next line; ok is false at the end of the input. Errors carry the line number.
func (lr *lineReader) next() (line []byte, ok bool, err error) {
	if lr.done {
		return nil, false, nil
	}
	lr.line++
	line, err = lr.br.ReadSlice('\n')
	switch {
	case err == io.EOF:
		lr.done = true
		if len(line) == 0 {
			return nil, false, nil
		}
	case errors.Is(err, bufio.ErrBufferFull):
		return nil, false, lineErr(lr.line, "line longer than %d bytes", MaxLineBytes)
	case err != nil:
		return nil, false, &ParseError{Line: lr.line, Index: -1, Err: err}
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) > MaxLineBytes {
		return nil, false, lineErr(lr.line, "line longer than %d bytes", MaxLineBytes)
	}
	if lr.line == 1 {
		line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf")) // UTF-8 byte order mark
	}
	return line, true, nil
}

// parseText parses the line-based text formats. comments holds the characters that start a comment; with
// wholeLineOnly, a comment character is only recognised at the start of a line (FireHOL netsets).
func parseText(r io.Reader, b *builder, comments string, wholeLineOnly bool) error {
	lr := newLineReader(r)
	for {
		raw, ok, err := lr.next()
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		s := strings.TrimSpace(string(raw))
		if s == "" {
			continue
		}
		if wholeLineOnly {
			if strings.ContainsAny(s[:1], comments) {
				continue
			}
		} else if i := strings.IndexAny(s, comments); i >= 0 {
			s = strings.TrimSpace(s[:i])
			if s == "" {
				continue
			}
		}
		if strings.ContainsAny(s, " \t") {
			return lineErr(lr.line, "unexpected text after entry: %q", s)
		}
		if err := b.add(s); err != nil {
			return &ParseError{Line: lr.line, Index: -1, Err: err}
		}
	}
}
