// Package importfmt reads the address lists of the tools operators already
// run, for `bulwark block import` and `bulwark allow import`: plain lists,
// `ipset save` output, `nft -j list set` (or `list ruleset`) JSON and
// CrowdSec's `cscli decisions list -o json`.
//
// Nothing here panics on bad input. Input is bounded by the caller's read
// (ReadAll) and the output by Options.MaxEntries; an error names the line
// (text formats) or the line and column, or the set and element (JSON).
package importfmt

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"

	"github.com/bulwark-filter/bulwark/agent/feeds"
)

// Format names an input format.
type Format string

// The formats Parse reads.
const (
	Auto     Format = "auto"     // detected from the input (Detect)
	Plain    Format = "plain"    // one address or CIDR per line, "#" and ";" comments
	IPSet    Format = "ipset"    // `ipset save` output
	NFT      Format = "nft"      // `nft -j list set|sets|ruleset` JSON
	CrowdSec Format = "crowdsec" // `cscli decisions list -o json`
)

// Formats are the formats a user may name, Auto first.
var Formats = []Format{Auto, Plain, IPSet, NFT, CrowdSec}

// DefaultMaxBytes is the largest input ReadAll accepts when given 0: an
// nft JSON dump of a million elements stays below it.
const DefaultMaxBytes = 256 << 20

// ErrTooLarge reports an input over its byte bound.
var ErrTooLarge = errors.New("input too large")

// ReadAll reads r up to max bytes (0: DefaultMaxBytes); more is
// ErrTooLarge, not a truncated list.
func ReadAll(r io.Reader, max int64) ([]byte, error) {
	if max <= 0 {
		max = DefaultMaxBytes
	}
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, max)
	}
	return b, nil
}

// Options select and bound what Parse takes.
type Options struct {
	// Sets are the ipset or nft set names to take; empty: every set that
	// holds addresses. A named set that is missing or holds no addresses is
	// an error.
	Sets []string
	// MaxEntries is the most prefixes the result may have (after ranges
	// are split into prefixes and duplicates removed); 0: no bound.
	MaxEntries int
}

// Result is a parsed input.
type Result struct {
	Format Format
	// Prefixes are the entries: masked, IPv4-mapped IPv6 unmapped, without
	// duplicates, in input order (a plain list's sorted, as a feed's).
	Prefixes []netip.Prefix
	// Duplicates counts entries dropped because an equal prefix came
	// before.
	Duplicates int
	// Notes say what was left out on purpose and why (a set of ports, a
	// CrowdSec captcha decision), one line each.
	Notes []string
}

// Error is bad input at one place.
type Error struct {
	Line int    // 1-based; 0 when the place is Where
	Col  int    // 1-based column in JSON input; 0 when unknown
	At   string // e.g. `set "blk", element 3`, when there is no line
	Err  error
}

func (e *Error) Error() string {
	var where []string
	if e.Line > 0 {
		w := fmt.Sprintf("line %d", e.Line)
		if e.Col > 0 {
			w += fmt.Sprintf(", column %d", e.Col)
		}
		where = append(where, w)
	}
	if e.At != "" {
		where = append(where, e.At)
	}
	if len(where) == 0 {
		return e.Err.Error()
	}
	return strings.Join(where, ", ") + ": " + e.Err.Error()
}

// Unwrap is the problem.
func (e *Error) Unwrap() error { return e.Err }

func lineErr(line int, format string, args ...any) error {
	return &Error{Line: line, Err: fmt.Errorf(format, args...)}
}

// ParseFormat is the Format named s.
func ParseFormat(s string) (Format, error) {
	for _, f := range Formats {
		if string(f) == s {
			return f, nil
		}
	}
	names := make([]string, len(Formats))
	for i, f := range Formats {
		names[i] = string(f)
	}
	return "", fmt.Errorf("unknown format %q: want one of %s", s, strings.Join(names, ", "))
}

// Detect names the format of data: JSON that is an object is nft's, JSON
// that is an array (or null) is CrowdSec's, text whose first entry line
// starts with "create" or "add" is ipset's, other text is plain.
func Detect(data []byte) Format {
	s := bytes.TrimLeft(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")), " \t\r\n")
	switch {
	case bytes.HasPrefix(s, []byte("{")):
		return NFT
	case bytes.HasPrefix(s, []byte("[")), bytes.HasPrefix(s, []byte("null")):
		return CrowdSec
	}
	for _, line := range bytes.Split(s, []byte("\n")) {
		f := strings.Fields(string(line))
		if len(f) == 0 || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], ";") {
			continue
		}
		if ipsetCommand(f[0]) != "" {
			return IPSet
		}
		return Plain
	}
	return Plain
}

// Parse reads data in format f (Auto: Detect's).
func Parse(data []byte, f Format, o Options) (*Result, error) {
	if f == Auto || f == "" {
		f = Detect(data)
	}
	b := &builder{res: Result{Format: f}, max: o.MaxEntries, seen: map[netip.Prefix]struct{}{}}
	var err error
	switch f {
	case Plain:
		err = parsePlain(data, b)
	case IPSet:
		err = parseIPSet(data, b, o.Sets)
	case NFT:
		err = parseNFT(data, b, o.Sets)
	case CrowdSec:
		err = parseCrowdSec(data, b)
	default:
		_, err = ParseFormat(string(f))
	}
	if err != nil {
		return nil, err
	}
	if f != IPSet && f != NFT && len(o.Sets) > 0 {
		return nil, fmt.Errorf("sets are selected by name only in ipset and nft input, not in %s", f)
	}
	return &b.res, nil
}

// builder collects prefixes without duplicates.
type builder struct {
	res  Result
	max  int
	seen map[netip.Prefix]struct{}
}

// add adds p (normalised); an error when over the bound.
func (b *builder) add(p netip.Prefix) error {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	p = p.Masked()
	if _, ok := b.seen[p]; ok {
		b.res.Duplicates++
		return nil
	}
	if b.max > 0 && len(b.res.Prefixes) >= b.max {
		return fmt.Errorf("more than %d entries", b.max)
	}
	b.seen[p] = struct{}{}
	b.res.Prefixes = append(b.res.Prefixes, p)
	return nil
}

func (b *builder) notef(format string, args ...any) {
	b.res.Notes = append(b.res.Notes, fmt.Sprintf(format, args...))
}

// parsePlain reads a plain list with the feeds' parser (the same syntax as
// a feed of format "plain").
func parsePlain(data []byte, b *builder) error {
	l, err := feeds.Parse(feeds.FormatPlain, bytes.NewReader(data), feeds.ParseOptions{MaxBytes: int64(len(data)) + 1})
	if errors.Is(err, feeds.ErrEmpty) {
		return nil
	}
	if err != nil {
		var pe *feeds.ParseError
		if errors.As(err, &pe) && pe.Line > 0 {
			return &Error{Line: pe.Line, Err: pe.Err}
		}
		return err
	}
	if l.Fixed > 0 {
		b.notef("%d entries had host bits set and were masked (e.g. 198.18.0.1/24 became 198.18.0.0/24)", l.Fixed)
	}
	b.res.Duplicates += l.Duplicates
	for _, p := range l.Prefixes {
		if err := b.add(p); err != nil {
			return err
		}
	}
	return nil
}

// parseEntry parses an address, a CIDR or a range "A-B" into prefixes.
func parseEntry(s string) ([]netip.Prefix, error) {
	if lo, hi, ok := strings.Cut(s, "-"); ok {
		a, err1 := netip.ParseAddr(lo)
		z, err2 := netip.ParseAddr(hi)
		if err1 != nil || err2 != nil || a.Zone() != "" || z.Zone() != "" {
			return nil, fmt.Errorf("%q is not an address range", s)
		}
		return RangePrefixes(a.Unmap(), z.Unmap())
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil || p.Addr().Zone() != "" {
			return nil, fmt.Errorf("%q is not a CIDR", s)
		}
		return []netip.Prefix{p}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return nil, fmt.Errorf("%q is not an IP address", s)
	}
	return []netip.Prefix{netip.PrefixFrom(a, a.BitLen())}, nil
}

// RangePrefixes is the shortest list of prefixes that covers lo to hi
// (both included, one family, lo <= hi).
func RangePrefixes(lo, hi netip.Addr) ([]netip.Prefix, error) {
	if lo.Is4() != hi.Is4() {
		return nil, fmt.Errorf("range %s-%s mixes IPv4 and IPv6", lo, hi)
	}
	if hi.Less(lo) {
		return nil, fmt.Errorf("range %s-%s ends before it starts", lo, hi)
	}
	var out []netip.Prefix
	for {
		// The largest block that starts at lo and ends at or before hi.
		bits := lo.BitLen()
		for bits > 0 {
			p := netip.PrefixFrom(lo, bits-1)
			if p.Masked().Addr() != lo || hi.Less(lastAddr(p)) {
				break
			}
			bits--
		}
		p := netip.PrefixFrom(lo, bits)
		out = append(out, p)
		last := lastAddr(p)
		if last == hi {
			return out, nil
		}
		lo = last.Next()
	}
}

// lastAddr is the last address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(a)*8; i++ {
		a[i/8] |= 0x80 >> (i % 8)
	}
	r, _ := netip.AddrFromSlice(a)
	return r
}

// selected reports whether set name is one of sets (every set when sets
// is empty).
func selected(sets []string, name string) bool {
	return len(sets) == 0 || slices.Contains(sets, name)
}

// missingSets is an error naming the sets of want that found does not hold.
func missingSets(want []string, found map[string]bool) error {
	var miss []string
	for _, s := range want {
		if !found[s] {
			miss = append(miss, fmt.Sprintf("%q", s))
		}
	}
	if len(miss) == 0 {
		return nil
	}
	return fmt.Errorf("no set %s of addresses in the input", strings.Join(miss, ", "))
}
