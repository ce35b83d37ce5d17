package config

import (
	"errors"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"strings"
	"sync"

	"github.com/hashicorp/hcl/v2"

	"github.com/bulwark-filter/bulwark/agent/listset"
)

// Bounds on list files, so a wrong path (a disk image, a log) fails fast instead of filling the maps.
const (
	maxListFileBytes   = 64 << 20
	maxListFileEntries = 2_000_000
	// maxBadLines is how many bad lines of one file are reported one by one; the rest are counted.
	maxBadLines = 10
)

// listSources says where a list's entries are written: the block, each inline CIDR, each list file's element.
type listSources struct {
	block hcl.Range
	cidrs []hcl.Range // parallel to List.CIDRs
	files []hcl.Range // parallel to List.Files
}

// listBlock decodes an allow or block block.
func (d *decoder) listBlock(b *hcl.Block) (List, listSources) {
	c := d.content(b.Body, &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "cidrs"}, {Name: "files"}}})
	l := List{Range: b.DefRange}
	at := listSources{block: b.DefRange}
	if a := c.Attributes["cidrs"]; a != nil {
		l.CIDRs, at.cidrs = d.prefixList(a)
	}
	if a := c.Attributes["files"]; a != nil {
		for _, e := range d.list(a) {
			p, ok := d.str(e)
			if !ok {
				continue
			}
			if p == "" {
				d.errorf(e.Range(), "Invalid list file", "A list file path must not be empty.")
				continue
			}
			if f, ok := d.readListFile(d.resolve(p), e.Range()); ok {
				f.Range = e.Range()
				l.Files = append(l.Files, f)
				at.files = append(at.files, e.Range())
			}
		}
	}
	return l, at
}

// readListFile reads a list file: one CIDR or address per line, '#' and ';' start comments, blank lines are
// skipped. Problems are reported at subject, the file's element in the config.
func (d *decoder) readListFile(path string, subject hcl.Range) (ListFile, bool) {
	// Checked before opening: opening a FIFO would block.
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && d.opts.Offline:
		return ListFile{}, false // a file of the host the config is meant for
	case err != nil:
		d.listFileError(subject, err)
		return ListFile{}, false
	case !st.Mode().IsRegular():
		d.errorf(subject, "Cannot read list file", "%s is not a regular file.", path)
		return ListFile{}, false
	case st.Size() > maxListFileBytes:
		d.errorf(subject, "List file too large", "%s is %d bytes; a list file may have at most %d bytes (64 MiB).", path, st.Size(), maxListFileBytes)
		return ListFile{}, false
	}
	f, err := os.Open(path)
	if err != nil {
		d.listFileError(subject, err)
		return ListFile{}, false
	}
	defer f.Close()

	// The file is read whole (it has at most 64 MiB) into one string the lines are cut from, so that no line is
	// copied, and the entries are sized once, by the number of lines. The limit guards against a file that grows
	// while it is read.
	var text strings.Builder
	text.Grow(int(st.Size()) + 1)
	lr := &io.LimitedReader{R: f, N: maxListFileBytes + 1}
	if _, err := io.Copy(&text, lr); err != nil {
		d.errorf(subject, "Cannot read list file", "%s: %s", path, err)
		return ListFile{}, false
	}
	if lr.N == 0 {
		d.errorf(subject, "List file too large", "%s grew beyond %d bytes (64 MiB) while being read.", path, maxListFileBytes)
		return ListFile{}, false
	}
	src := text.String()
	var parts []listPart
	var all []listset.Key // the halves' one array
	lines := strings.Count(src, "\n") + 1
	cut := strings.IndexByte(src[len(src)/2:], '\n') // the line end the second half starts after
	if lines <= maxListFileEntries && len(src) >= parallelParseBytes && cut >= 0 {
		// Two halves cut at a line end, parsed at once into one array (each half has room for a key a line); no
		// half can pass the entry limit.
		cut += len(src)/2 + 1
		lines0 := strings.Count(src[:cut], "\n")
		all = make([]listset.Key, lines)
		parts = []listPart{{src: src[:cut], first: 1, keys: all[:0:lines0]}, {src: src[cut:], first: 1 + lines0, keys: all[lines0:lines0]}}
		var wg sync.WaitGroup
		for i := range parts {
			wg.Go(func() { parts[i].parse(maxListFileEntries) })
		}
		wg.Wait()
	} else {
		parts = []listPart{{src: src, first: 1}}
		parts[0].parse(maxListFileEntries)
	}
	bad, shown := 0, 0
	for _, pt := range parts {
		for _, e := range pt.problems {
			if shown++; shown <= maxBadLines {
				d.errorf(subject, "Bad list file entry", "%s:%d: %s", path, e.line, e.err)
			}
		}
		bad += pt.bad
	}
	if bad > maxBadLines {
		d.errorf(subject, "Bad list file entry", "%s: %d more bad lines not shown.", path, bad-maxBadLines)
	}
	if at := parts[0].tooMany; at > 0 {
		d.errorf(subject, "List file too large", "%s:%d: a list file may have at most %d entries.", path, at, maxListFileEntries)
		return ListFile{}, false
	}
	lf := ListFile{Path: path, Entries: parts[0].keys}
	if len(parts) > 1 {
		// The second half's keys move down after the first's (an overlapping copy, to lower addresses).
		lf.Entries = append(all[:len(parts[0].keys)], parts[1].keys...)
	}
	// Sorted, the entries are what desired.Compile merges; the file's text is garbage once this returns.
	lf.Entries = listset.SortKeys(lf.Entries)
	return lf, bad == 0
}

// parallelParseBytes is how large a list file is parsed in two halves at once.
const parallelParseBytes = 1 << 20

// listPart is a run of a list file's lines and what parsing them found.
type listPart struct {
	src      string
	first    int // the line number of src's first line
	keys     []listset.Key
	bad      int       // bad lines
	problems []badLine // the first maxBadLines of them
	tooMany  int       // the line of the entry past the limit; 0: none
}

// badLine is a bad line of a list file and what is wrong with it.
type badLine struct {
	line int
	err  error
}

// parse parses p's lines into p.keys (made here unless the caller made room for them): one CIDR or address per
// line, '#' and ';' start comments, blank lines are skipped. It stops at the entry past limit.
func (p *listPart) parse(limit int) {
	if p.keys == nil {
		p.keys = make([]listset.Key, 0, min(strings.Count(p.src, "\n")+1, limit))
	}
	lineNo := p.first - 1
	for line := range strings.Lines(p.src) {
		lineNo++
		k, ok := fastListLine(line)
		if !ok {
			if i := strings.IndexAny(line, "#;"); i >= 0 {
				line = line[:i]
			}
			line = strings.TrimSpace(line)
			if line == "" {
				continue
			}
			pfx, err := parsePrefix(line)
			if err != nil {
				if p.bad++; p.bad <= maxBadLines {
					p.problems = append(p.problems, badLine{lineNo, err})
				}
				continue
			}
			k = listset.KeyOf(pfx)
		}
		if len(p.keys) == limit {
			p.tooMany = lineNo
			return
		}
		p.keys = append(p.keys, k)
	}
}

// fastListLine parses the common list file line, an IPv4 address or prefix in canonical form ("198.51.100.7",
// "198.51.100.0/24") and a line end, without netip's general parser; ok is false for any other line (IPv6,
// comments, spaces, leading zeros, host bits set, errors), which parsePrefix then parses or refuses.
func fastListLine(line string) (k listset.Key, ok bool) {
	line = strings.TrimSuffix(line, "\n")
	var a [4]byte
	i := 0
	for o := range 4 {
		v, n := decimal(line[i:], 3)
		if n == 0 || v > 255 {
			return k, false
		}
		a[o], i = byte(v), i+n
		if o < 3 {
			if i == len(line) || line[i] != '.' {
				return k, false
			}
			i++
		}
	}
	bits := 32
	if i < len(line) && line[i] == '/' {
		v, n := decimal(line[i+1:], 2)
		if n == 0 || v > 32 {
			return k, false
		}
		bits, i = v, i+1+n
	}
	if i != len(line) {
		return k, false
	}
	pfx := netip.PrefixFrom(netip.AddrFrom4(a), bits)
	if pfx.Masked() != pfx {
		return k, false
	}
	return listset.KeyOf(pfx), true
}

// decimal reads the decimal number s starts with, at most the given count of digits with no leading zero, and
// returns it and its length; n is 0 when s starts with no such number.
func decimal(s string, digits int) (v, n int) {
	for n < len(s) && n < digits && '0' <= s[n] && s[n] <= '9' {
		if n == 1 && v == 0 {
			return 0, 0 // a leading zero
		}
		v = v*10 + int(s[n]-'0')
		n++
	}
	if n < len(s) && '0' <= s[n] && s[n] <= '9' {
		return 0, 0 // longer than digits
	}
	return v, n
}

// listFileError reports a list file that cannot be opened, saying plainly when it is missing.
func (d *decoder) listFileError(subject hcl.Range, err error) {
	var pe *fs.PathError
	if errors.Is(err, fs.ErrNotExist) && errors.As(err, &pe) {
		d.errorf(subject, "Missing list file", "%s does not exist.", pe.Path)
		return
	}
	d.errorf(subject, "Cannot read list file", "%s", err)
}
