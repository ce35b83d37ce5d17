package config

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"strings"

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
	lf := ListFile{Path: path, Entries: make([]listset.Key, 0, min(strings.Count(src, "\n")+1, maxListFileEntries))}
	bad, lineNo := 0, 0
	for line := range strings.Lines(src) {
		lineNo++
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		p, err := parsePrefix(line)
		if err != nil {
			bad++
			if bad <= maxBadLines {
				d.errorf(subject, "Bad list file entry", "%s:%d: %s", path, lineNo, err)
			}
			continue
		}
		if len(lf.Entries) == maxListFileEntries {
			d.errorf(subject, "List file too large", "%s:%d: a list file may have at most %d entries.", path, lineNo, maxListFileEntries)
			return ListFile{}, false
		}
		lf.Entries = append(lf.Entries, listset.KeyOf(p))
	}
	if bad > maxBadLines {
		d.errorf(subject, "Bad list file entry", "%s: %d more bad lines not shown.", path, bad-maxBadLines)
	}
	// Sorted, the entries are what desired.Compile merges; the file's text is garbage once this returns.
	lf.Entries = listset.SortKeys(lf.Entries)
	return lf, bad == 0
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
