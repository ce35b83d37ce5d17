package feeds

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// spamhausRecord is one line of a Spamhaus DROP JSON feed: a prefix or the metadata record.
type spamhausRecord struct {
	Type      string `json:"type"`
	CIDR      string `json:"cidr"`
	SBLID     string `json:"sblid"`
	RIR       string `json:"rir"`
	Timestamp int64  `json:"timestamp"`
	Records   *int64 `json:"records"`
}

// parseSpamhausJSON parses JSON lines: prefix records and at most one metadata record (normally the last line).
// When the metadata record gives a record count, it must equal the number of prefix records read; a mismatch
// means a truncated or corrupted download.
func parseSpamhausJSON(r io.Reader, b *builder) error {
	lr := newLineReader(r)
	metaLine := 0
	var records *int64
	for {
		raw, ok, err := lr.next()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if len(strings.TrimSpace(string(raw))) == 0 {
			continue
		}
		var rec spamhausRecord
		if err := json.Unmarshal(raw, &rec); err != nil {
			return lineErr(lr.line, "bad JSON record: %v", err)
		}
		switch {
		case rec.Type == "metadata":
			if metaLine != 0 {
				return lineErr(lr.line, "second metadata record (first on line %d)", metaLine)
			}
			metaLine = lr.line
			if rec.Records != nil && *rec.Records < 0 {
				return lineErr(lr.line, "metadata: negative record count %d", *rec.Records)
			}
			records = rec.Records
			if rec.Timestamp > 0 {
				b.list.Generated = time.Unix(rec.Timestamp, 0).UTC()
			}
		case rec.CIDR == "":
			return lineErr(lr.line, "record without cidr")
		default:
			if err := b.add(rec.CIDR); err != nil {
				return &ParseError{Line: lr.line, Index: -1, Err: err}
			}
		}
	}
	if records != nil {
		if *records != int64(b.n) {
			return lineErr(metaLine, "metadata says %d records but the feed has %d (truncated download?)", *records, b.n)
		}
		b.emptyOK = *records == 0
	}
	return nil
}

// abuseIPDBEntry is one element of an AbuseIPDB blacklist's data array. Other fields (countryCode,
// lastReportedAt) are ignored.
type abuseIPDBEntry struct {
	IPAddress string `json:"ipAddress"`
	Score     *int   `json:"abuseConfidenceScore"`
}

// parseAbuseIPDB streams an AbuseIPDB blacklist response: {"meta":{"generatedAt":...},"data":[...]}. An
// {"errors":[...]} response (rate limit, bad key) is reported as an error. Entries without a score count as
// score 0.
func parseAbuseIPDB(r io.Reader, b *builder, minConfidence int) error {
	dec := json.NewDecoder(r)
	where := func(err error) error {
		err = noEOF(err)
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return fmt.Errorf("at byte %d: %w", se.Offset, err)
		}
		return err
	}
	top := &ParseError{Index: -1}
	fail := func(format string, args ...any) error {
		top.Err = fmt.Errorf(format, args...)
		return top
	}
	tok, err := dec.Token()
	if err == io.EOF {
		return ErrEmpty
	}
	if err != nil {
		return fail("%w", where(err))
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fail("not a JSON object")
	}
	sawData := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fail("%w", where(err))
		}
		key, _ := tok.(string)
		switch key {
		case "data":
			if sawData {
				return fail("second data array")
			}
			sawData = true
			if err := parseAbuseIPDBData(dec, b, minConfidence); err != nil {
				return err
			}
		case "meta":
			var meta struct {
				GeneratedAt string `json:"generatedAt"`
			}
			if err := dec.Decode(&meta); err != nil {
				return fail("meta: %w", where(err))
			}
			if t, err := time.Parse(time.RFC3339, meta.GeneratedAt); err == nil {
				b.list.Generated = t.UTC()
			}
		case "errors":
			var errs []struct {
				Detail string `json:"detail"`
				Status int    `json:"status"`
			}
			if err := dec.Decode(&errs); err != nil {
				return fail("errors: %w", where(err))
			}
			if len(errs) > 0 {
				return fail("feed reports an error: status %d: %s", errs[0].Status, errs[0].Detail)
			}
		default:
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return fail("%s: %w", key, where(err))
			}
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return fail("%w", where(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		if err == nil {
			return fail("unexpected data after the JSON object")
		}
		return fail("%w", where(err))
	}
	if !sawData {
		return fail("no data array")
	}
	return nil
}

// parseAbuseIPDBData reads the data array; errors name the element index.
func parseAbuseIPDBData(dec *json.Decoder, b *builder, minConfidence int) error {
	tok, err := dec.Token()
	if err != nil {
		return &ParseError{Index: -1, Err: fmt.Errorf("data: %w", noEOF(err))}
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return &ParseError{Index: -1, Err: errors.New("data is not an array")}
	}
	for i := 0; dec.More(); i++ {
		var e abuseIPDBEntry
		if err := dec.Decode(&e); err != nil {
			return &ParseError{Index: i, Err: err}
		}
		score := 0
		if e.Score != nil {
			score = *e.Score
		}
		if score < 0 || score > 100 {
			return &ParseError{Index: i, Err: fmt.Errorf("abuseConfidenceScore %d out of range 0..100", score)}
		}
		if e.IPAddress == "" {
			return &ParseError{Index: i, Err: errors.New("entry without ipAddress")}
		}
		if score < minConfidence {
			// Validate it anyway: a feed with garbage in it is suspect as a whole.
			if _, _, err := parseEntry(e.IPAddress); err != nil {
				return &ParseError{Index: i, Err: err}
			}
			b.list.Skipped++
			continue
		}
		if err := b.add(e.IPAddress); err != nil {
			return &ParseError{Index: i, Err: err}
		}
	}
	if _, err := dec.Token(); err != nil { // the closing ']'
		return &ParseError{Index: -1, Err: fmt.Errorf("data: %w", noEOF(err))}
	}
	return nil
}

// noEOF turns io.EOF, which inside a JSON value means truncated input, into io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
