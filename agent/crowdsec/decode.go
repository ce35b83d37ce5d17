package crowdsec

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// DecodeStream decodes one answer of /v1/decisions/stream from r, one
// decision at a time: {"new": [...], "deleted": [...]}, either list null
// or absent, other keys skipped, nothing after the object but space.
//
// A decision is read by a scanner of the fields the LAPI writes (numbers,
// plain strings, literals): a startup answer of 100,000 decisions is some
// 20 MB, and encoding/json's reflection cost most of its apply. Anything
// else in a decision (escapes, nested values, null, keys that differ only
// in case) is handed to encoding/json, as are the keys and the other
// values of the answer's object, so the result and the errors are
// encoding/json's (fuzzed against it in decode_test.go).
func DecodeStream(r io.Reader) (Stream, error) {
	var s Stream
	d := &streamScanner{r: r, buf: make([]byte, 0, scanBuffer), names: map[string]string{}}
	if err := d.expect('{', "{"); err != nil {
		return s, err
	}
	if c, err := d.peekNonSpace(); err != nil {
		return s, err
	} else if c == '}' {
		d.pos++
		return s, d.end()
	}
	for {
		raw, err := d.value()
		if err != nil {
			return s, err
		}
		var key string
		if err := json.Unmarshal(raw, &key); err != nil {
			return s, d.errorf("a key of the answer: %v", err)
		}
		if err := d.expect(':', ": after the key"); err != nil {
			return s, err
		}
		var list *[]Decision
		switch key {
		case "new":
			list = &s.New
		case "deleted":
			list = &s.Deleted
		default:
			raw, err := d.value()
			if err != nil {
				return s, err
			}
			if !json.Valid(raw) {
				var v any
				return s, d.errorf("key %q: %v", key, json.Unmarshal(raw, &v))
			}
		}
		if list != nil {
			if *list, err = d.decisions(*list); err != nil {
				return s, fmt.Errorf("%s: %w", key, err)
			}
		}
		c, err := d.nextNonSpace()
		if err != nil {
			return s, err
		}
		switch c {
		case ',':
			continue
		case '}':
			return s, d.end()
		}
		return s, d.errorf("%q where , or } was expected", c)
	}
}

// scanBuffer is the scanner's first buffer; it grows to hold the longest
// value.
const scanBuffer = 64 << 10

// maxNames bounds the origins, scenarios, scopes and types a stream's
// decisions share one string each of.
const maxNames = 4096

// streamScanner reads a decision stream through a buffer that holds at
// least the value being read.
type streamScanner struct {
	r    io.Reader
	buf  []byte // buf[pos:] is read and not yet taken
	pos  int
	off  int64 // of buf[0] in the stream
	eof  bool
	rerr error // a read error other than io.EOF
	// names holds one string per origin, scenario, scope and type, last
	// the one each field had in the decision before.
	names map[string]string
	last  [len(decisionFields)]string
}

// more reads more of the stream, keeping buf[pos:]; false at its end or
// on a read error (in rerr).
func (d *streamScanner) more() bool {
	if d.eof || d.rerr != nil {
		return false
	}
	if d.pos > 0 {
		n := copy(d.buf, d.buf[d.pos:])
		d.off += int64(d.pos)
		d.buf, d.pos = d.buf[:n], 0
	}
	if len(d.buf) == cap(d.buf) {
		d.buf = append(d.buf, make([]byte, cap(d.buf))...)[:len(d.buf)]
	}
	for range maxEmptyReads {
		n, err := d.r.Read(d.buf[len(d.buf):cap(d.buf)])
		d.buf = d.buf[:len(d.buf)+n]
		switch {
		case err == io.EOF:
			d.eof = true
		case err != nil:
			d.rerr = err
		}
		if n > 0 || err != nil {
			return n > 0
		}
	}
	d.rerr = io.ErrNoProgress
	return false
}

// maxEmptyReads is how many reads in a row may return nothing.
const maxEmptyReads = 100

// short is the error of a stream that ended in a value: the read error,
// or an unexpected EOF.
func (d *streamScanner) short() error {
	if d.rerr != nil {
		return d.rerr
	}
	return d.errorf("%w", io.ErrUnexpectedEOF)
}

// errorf is an error at the scanner's offset in the stream.
func (d *streamScanner) errorf(format string, args ...any) error {
	return fmt.Errorf("at byte %d: %w", d.off+int64(d.pos), fmt.Errorf(format, args...))
}

// peekNonSpace skips space and returns the next byte, not taken.
func (d *streamScanner) peekNonSpace() (byte, error) {
	for {
		for d.pos < len(d.buf) {
			if c := d.buf[d.pos]; !isSpace(c) {
				return c, nil
			}
			d.pos++
		}
		if !d.more() {
			return 0, d.short()
		}
	}
}

// nextNonSpace skips space and takes the next byte.
func (d *streamScanner) nextNonSpace() (byte, error) {
	c, err := d.peekNonSpace()
	if err == nil {
		d.pos++
	}
	return c, err
}

// expect takes the next byte after space, which must be c.
func (d *streamScanner) expect(c byte, what string) error {
	got, err := d.nextNonSpace()
	if err != nil {
		return err
	}
	if got != c {
		d.pos--
		return d.errorf("%q where %s was expected", got, what)
	}
	return nil
}

// end checks that nothing but space follows the answer's object.
func (d *streamScanner) end() error {
	for {
		for ; d.pos < len(d.buf); d.pos++ {
			if !isSpace(d.buf[d.pos]) {
				return d.errorf("data after the answer's object (%q)", d.buf[d.pos])
			}
		}
		if !d.more() {
			if d.rerr != nil {
				return d.rerr
			}
			return nil
		}
	}
}

// value takes the next value as raw bytes, found by its brackets and
// quotes only: the caller validates them. The bytes stay valid until the
// next read.
func (d *streamScanner) value() ([]byte, error) {
	if _, err := d.peekNonSpace(); err != nil {
		return nil, err
	}
	for {
		n, ok := extent(d.buf[d.pos:])
		if ok {
			v := d.buf[d.pos : d.pos+n]
			d.pos += n
			return v, nil
		}
		if !d.more() {
			if d.eof && d.rerr == nil && n > 0 {
				// A number or literal that ends the stream: the caller's
				// check, or the one of what follows, fails on it.
				v := d.buf[d.pos : d.pos+n]
				d.pos += n
				return v, nil
			}
			return nil, d.short()
		}
	}
}

// extent is the length of the value that b starts with, found by its
// brackets and quotes, and whether b holds all of it (a number or literal
// ends at a delimiter: false, with its length so far, when b ends first).
func extent(b []byte) (int, bool) {
	depth, in, esc := 0, false, false
	for i, c := range b {
		switch {
		case in:
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				in = false
				if depth == 0 {
					return i + 1, true
				}
			}
		case c == '"':
			in = true
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			if depth == 0 {
				return i, true // a scalar's end, or a stray bracket (empty)
			}
			if depth--; depth == 0 {
				return i + 1, true
			}
		case depth == 0 && (c == ',' || c == ':' || isSpace(c)):
			return i, true
		}
	}
	return len(b), false
}

// decisions reads a list of decisions (or null) and appends them to
// into.
func (d *streamScanner) decisions(into []Decision) ([]Decision, error) {
	c, err := d.peekNonSpace()
	if err != nil {
		return into, err
	}
	if c != '[' {
		raw, err := d.value()
		if err != nil {
			return into, err
		}
		if string(raw) == "null" {
			return into, nil
		}
		return into, d.errorf("%.20q where a list of decisions was expected", raw)
	}
	d.pos++
	if c, err := d.peekNonSpace(); err != nil {
		return into, err
	} else if c == ']' {
		d.pos++
		return into, nil
	}
	for {
		if _, err := d.peekNonSpace(); err != nil {
			return into, err
		}
		var dec Decision
		for {
			n, st := d.scanDecision(d.buf[d.pos:], &dec)
			if st == scanOK {
				d.pos += n
				break
			}
			if st == scanShort && d.more() {
				continue
			}
			// Not the LAPI's plain form, or cut short: encoding/json
			// reads it, and says what is wrong.
			at := d.off + int64(d.pos)
			raw, err := d.value()
			if err != nil {
				return into, fmt.Errorf("decision %d: %w", len(into)+1, err)
			}
			dec = Decision{}
			if err := json.Unmarshal(raw, &dec); err != nil {
				return into, fmt.Errorf("decision %d at byte %d: %w", len(into)+1, at, err)
			}
			break
		}
		into = addDecision(into, dec)
		c, err := d.nextNonSpace()
		if err != nil {
			return into, err
		}
		switch c {
		case ',':
		case ']':
			return into, nil
		default:
			d.pos--
			return into, d.errorf("%q where , or ] was expected", c)
		}
	}
}

// addDecision appends dec to list, growing it by doubling: 100,000 decisions are
// some 10 MB, and append's smaller steps for large slices copied them
// five times over.
func addDecision(list []Decision, dec Decision) []Decision {
	if len(list) == cap(list) {
		grown := make([]Decision, len(list), max(2*cap(list), 64))
		copy(grown, list)
		list = grown
	}
	return append(list, dec)
}

// scanState is how scanDecision ended.
type scanState int

const (
	scanOK    scanState = iota
	scanShort           // b ends within the decision
	scanSlow            // not the plain form: for encoding/json
)

// decisionFields are a decision's JSON keys.
var decisionFields = [...]string{"id", "origin", "scenario", "scope", "type", "value", "duration"}

// decisionField is the index in decisionFields of key, or -1.
func decisionField(key []byte) int {
	switch string(key) {
	case "id":
		return 0
	case "origin":
		return 1
	case "scenario":
		return 2
	case "scope":
		return 3
	case "type":
		return 4
	case "value":
		return 5
	case "duration":
		return 6
	}
	return -1
}

// scanDecision reads the decision object b starts with into dec: the
// fields' keys as the LAPI writes them, integers of at most 18 digits,
// strings without escapes or invalid UTF-8, and other keys with a plain
// string, number, true, false or null. n is its length.
func (d *streamScanner) scanDecision(b []byte, dec *Decision) (n int, st scanState) {
	i := 0
	ws := func() {
		for i < len(b) && isSpace(b[i]) {
			i++
		}
	}
	if len(b) == 0 {
		return 0, scanShort
	}
	if b[0] != '{' {
		return 0, scanSlow
	}
	i++
	ws()
	if i < len(b) && b[i] == '}' {
		return i + 1, scanOK
	}
	for {
		ws()
		k0, k1, st := plainString(b, i)
		if st != scanOK {
			return 0, st
		}
		i = k1 + 1
		ws()
		if i >= len(b) {
			return 0, scanShort
		}
		if b[i] != ':' {
			return 0, scanSlow
		}
		i++
		ws()
		if i >= len(b) {
			return 0, scanShort
		}
		field := decisionField(b[k0:k1])
		known := field >= 0
		if !known && !unrelatedKey(b[k0:k1]) {
			return 0, scanSlow
		}
		switch {
		case known && field == 0:
			v, end, st := plainInt(b, i)
			if st != scanOK {
				return 0, st
			}
			dec.ID, i = v, end
		case known:
			v0, v1, st := plainString(b, i)
			if st != scanOK {
				return 0, st
			}
			v := b[v0:v1]
			i = v1 + 1
			switch field {
			case 1:
				dec.Origin = d.name(field, v)
			case 2:
				dec.Scenario = d.name(field, v)
			case 3:
				dec.Scope = d.name(field, v)
			case 4:
				dec.Type = d.name(field, v)
			case 5:
				dec.Value = string(v)
			case 6:
				dec.Duration = string(v)
			}
		default:
			end, st := plainScalar(b, i)
			if st != scanOK {
				return 0, st
			}
			i = end
		}
		ws()
		if i >= len(b) {
			return 0, scanShort
		}
		switch b[i] {
		case ',':
			i++
		case '}':
			return i + 1, scanOK
		default:
			return 0, scanSlow
		}
	}
}

// name is one string per distinct origin, scenario, scope or type (at
// most maxNames of them; past that, a new string each) of field: most
// decisions have their field's value of the one before.
func (d *streamScanner) name(field int, b []byte) string {
	if s := d.last[field]; s == string(b) {
		return s
	}
	s, ok := d.names[string(b)]
	if !ok {
		s = string(b)
		if len(d.names) < maxNames {
			d.names[s] = s
		}
	}
	d.last[field] = s
	return s
}

// unrelatedKey says that key, an unescaped JSON key, matches none of a
// decision's fields even as encoding/json folds case: ASCII, and not one
// of them in other case.
func unrelatedKey(key []byte) bool {
	for _, c := range key {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	for _, f := range decisionFields {
		if len(f) == len(key) && equalFoldASCII(f, key) {
			return false
		}
	}
	return true
}

// equalFoldASCII compares an ASCII string and ASCII bytes, ignoring case.
func equalFoldASCII(s string, b []byte) bool {
	for i := range len(s) {
		x, y := s[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// plainString finds the string at b[i]: its content is b[s:e] and its
// closing quote b[e]. scanSlow: not a string, or one with an escape, a
// control character or invalid UTF-8.
func plainString(b []byte, i int) (s, e int, st scanState) {
	if i >= len(b) {
		return 0, 0, scanShort
	}
	if b[i] != '"' {
		return 0, 0, scanSlow
	}
	ascii := true
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			if !ascii && !utf8.Valid(b[i+1:j]) {
				return 0, 0, scanSlow
			}
			return i + 1, j, scanOK
		case c == '\\' || c < 0x20:
			return 0, 0, scanSlow
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return 0, 0, scanShort
}

// plainInt reads the integer at b[i] (at most 18 digits, no fraction or
// exponent) and where it ends.
func plainInt(b []byte, i int) (v int64, end int, st scanState) {
	neg := i < len(b) && b[i] == '-'
	if neg {
		i++
	}
	j := i
	for ; j < len(b) && '0' <= b[j] && b[j] <= '9'; j++ {
		v = v*10 + int64(b[j]-'0')
	}
	switch {
	case j == len(b):
		return 0, 0, scanShort
	case j == i || j-i > 18 || (b[i] == '0' && j-i > 1) || !isDelim(b[j]):
		return 0, 0, scanSlow
	}
	if neg {
		v = -v
	}
	return v, j, scanOK
}

// plainScalar finds the end of the plain string, number, true, false or
// null at b[i], checked as JSON.
func plainScalar(b []byte, i int) (end int, st scanState) {
	if i >= len(b) {
		return 0, scanShort
	}
	switch c := b[i]; {
	case c == '"':
		_, e, st := plainString(b, i)
		return e + 1, st
	case c == 't' || c == 'f' || c == 'n':
		for _, lit := range []string{"true", "false", "null"} {
			if c != lit[0] {
				continue
			}
			switch {
			case len(b)-i <= len(lit):
				return 0, scanShort
			case string(b[i:i+len(lit)]) == lit && isDelim(b[i+len(lit)]):
				return i + len(lit), scanOK
			}
		}
		return 0, scanSlow
	case c == '-' || ('0' <= c && c <= '9'):
		j := i
		for j < len(b) && !isDelim(b[j]) {
			j++
		}
		if j == len(b) {
			return 0, scanShort
		}
		if !validNumber(b[i:j]) {
			return 0, scanSlow
		}
		return j, scanOK
	}
	return 0, scanSlow
}

// validNumber says whether b is a JSON number.
func validNumber(b []byte) bool {
	i := 0
	digits := func() int {
		j := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		return i - j
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	if n := digits(); n == 0 || (n > 1 && b[i-n] == '0') {
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(b)
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// isDelim says whether c may follow a number or literal in an object.
func isDelim(c byte) bool { return c == ',' || c == '}' || isSpace(c) }

// errTooLarge is an answer over the read cap.
var errTooLarge = errors.New("answer larger than the read cap")
