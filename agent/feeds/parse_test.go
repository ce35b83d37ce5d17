package feeds

import (
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func prefixStrings(ps []netip.Prefix) string {
	ss := make([]string, len(ps))
	for i, p := range ps {
		ss[i] = p.String()
	}
	return strings.Join(ss, " ")
}

func TestParseTestdata(t *testing.T) {
	tests := []struct {
		file, format string
		opts         ParseOptions
		want         string // space-separated prefixes, in order
		skipped      int
		fixed        int
		dups         int
		generated    time.Time
	}{
		{
			file: "spamhaus.txt", format: FormatSpamhaus,
			want:  "192.0.2.0/24 198.18.0.0/16 198.19.128.0/17 198.51.100.0/24 203.0.113.64/26 203.0.113.128/25",
			fixed: 1,
		},
		{
			file: "spamhaus_v6.txt", format: FormatSpamhaus,
			want: "2001:db8:1000::/36 2001:db8:2000::/35 2001:db8:ffff::/48",
		},
		{
			file: "spamhaus.jsonl", format: FormatSpamhausJSON,
			want:      "192.0.2.0/24 198.18.0.0/16 198.51.100.0/24 203.0.113.0/25",
			generated: time.Unix(1700000000, 0).UTC(),
		},
		{
			file: "spamhaus_v6.jsonl", format: FormatSpamhausJSON,
			want:      "2001:db8:1000::/36 2001:db8:2000::/35",
			generated: time.Unix(1700000000, 0).UTC(),
		},
		{
			file: "spamhaus_empty.jsonl", format: FormatSpamhausJSON,
			want:      "",
			generated: time.Unix(1700000000, 0).UTC(),
		},
		{
			file: "level1.netset", format: FormatNetset,
			want: "192.0.2.1/32 192.0.2.128/25 198.18.0.0/15 198.51.100.7/32 203.0.113.0/24",
		},
		{
			file: "v6.netset", format: FormatNetset,
			want: "2001:db8::/48 2001:db8::53/128 2001:db8:0:1::/64",
		},
		{
			file: "plain.txt", format: FormatPlain,
			want: "192.0.2.10/32 198.18.7.0/24 198.51.100.0/24 203.0.113.0/24 203.0.113.5/32 2001:db8::1/128 2001:db8:dead::/48",
			dups: 1,
		},
		{
			file: "abuseipdb.json", format: FormatAbuseIPDBJSON,
			want:      "192.0.2.44/32 198.18.4.2/32 198.51.100.23/32 203.0.113.9/32 2001:db8::bad/128",
			generated: time.Date(2023, 11, 14, 22, 13, 20, 0, time.UTC),
		},
		{
			file: "abuseipdb.json", format: FormatAbuseIPDBJSON, opts: ParseOptions{MinConfidence: 75},
			want:      "192.0.2.44/32 198.51.100.23/32 203.0.113.9/32 2001:db8::bad/128",
			skipped:   1,
			generated: time.Date(2023, 11, 14, 22, 13, 20, 0, time.UTC),
		},
		{
			file: "abuseipdb.json", format: FormatAbuseIPDBJSON, opts: ParseOptions{MinConfidence: 90},
			want:      "192.0.2.44/32 2001:db8::bad/128",
			skipped:   3,
			generated: time.Date(2023, 11, 14, 22, 13, 20, 0, time.UTC),
		},
		{
			file: "abuseipdb.json", format: FormatAbuseIPDBJSON, opts: ParseOptions{MinConfidence: 100},
			want:      "192.0.2.44/32 2001:db8::bad/128",
			skipped:   3,
			generated: time.Date(2023, 11, 14, 22, 13, 20, 0, time.UTC),
		},
		// Caps exactly at the size of the feed are accepted.
		{
			file: "level1.netset", format: FormatNetset, opts: ParseOptions{MaxEntries: 5, MaxBytes: fileSize(t, "level1.netset")},
			want: "192.0.2.1/32 192.0.2.128/25 198.18.0.0/15 198.51.100.7/32 203.0.113.0/24",
		},
	}
	for _, tt := range tests {
		t.Run(tt.file+"/"+tt.format, func(t *testing.T) {
			f, err := os.Open(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			l, err := Parse(tt.format, f, tt.opts)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := prefixStrings(l.Prefixes); got != tt.want {
				t.Errorf("prefixes:\n got %s\nwant %s", got, tt.want)
			}
			if l.Len() != len(l.Prefixes) {
				t.Errorf("Len() = %d, want %d", l.Len(), len(l.Prefixes))
			}
			if l.Skipped != tt.skipped || l.Fixed != tt.fixed || l.Duplicates != tt.dups {
				t.Errorf("skipped/fixed/duplicates = %d/%d/%d, want %d/%d/%d", l.Skipped, l.Fixed, l.Duplicates, tt.skipped, tt.fixed, tt.dups)
			}
			if !l.Generated.Equal(tt.generated) {
				t.Errorf("Generated = %v, want %v", l.Generated, tt.generated)
			}
			checkList(t, l, tt.opts)
		})
	}
}

func fileSize(t *testing.T, name string) int64 {
	t.Helper()
	fi, err := os.Stat(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// checkList verifies the invariants of a parsed list.
func checkList(t testing.TB, l *List, opts ParseOptions) {
	t.Helper()
	max := opts.MaxEntries
	if max <= 0 {
		max = DefaultMaxEntries
	}
	if len(l.Prefixes) > max {
		t.Fatalf("%d prefixes, more than MaxEntries %d", len(l.Prefixes), max)
	}
	for i, p := range l.Prefixes {
		if !p.IsValid() || p.Masked() != p || p.Addr().Is4In6() || p.Addr().Zone() != "" {
			t.Fatalf("prefix %d %v is not valid, masked and unmapped", i, p)
		}
		if i > 0 && comparePrefix(l.Prefixes[i-1], p) >= 0 {
			t.Fatalf("prefixes %v and %v are out of order or duplicated", l.Prefixes[i-1], p)
		}
	}
	if l.Skipped < 0 || l.Fixed < 0 || l.Duplicates < 0 {
		t.Fatalf("negative counter in %+v", *l)
	}
}

func TestParseNormalises(t *testing.T) {
	tests := []struct {
		name, in, want string
		fixed, dups    int
	}{
		{"host bits", "192.0.2.77/24\n198.51.100.1/25\n", "192.0.2.0/24 198.51.100.0/25", 2, 0},
		{"mapped address", "::ffff:192.0.2.1\n", "192.0.2.1/32", 0, 0},
		{"mapped prefix", "::ffff:192.0.2.0/120\n", "192.0.2.0/24", 0, 0},
		{"mapped host bits", "::ffff:192.0.2.9/120\n", "192.0.2.0/24", 1, 0},
		{"dedup after masking", "192.0.2.0/24\n192.0.2.5/24\n", "192.0.2.0/24", 1, 1},
		{"dedup mapped", "192.0.2.1\n::ffff:192.0.2.1/128\n", "192.0.2.1/32", 0, 1},
		{"v4 before v6, address then length", "2001:db8::/32\n203.0.113.0/25\n203.0.113.0/24\n198.18.0.0/15\n", "198.18.0.0/15 203.0.113.0/24 203.0.113.0/25 2001:db8::/32", 0, 0},
		{"CRLF and BOM", "\xef\xbb\xbf192.0.2.1\r\n192.0.2.2\r\n", "192.0.2.1/32 192.0.2.2/32", 0, 0},
		{"no final newline", "192.0.2.1\n192.0.2.2", "192.0.2.1/32 192.0.2.2/32", 0, 0},
		{"tabs and trailing comments", "\t192.0.2.1\t# a\n198.51.100.0/24;b\n", "192.0.2.1/32 198.51.100.0/24", 0, 0},
		{"IPv6 host bits", "2001:db8::1/64\n", "2001:db8::/64", 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := Parse(FormatPlain, strings.NewReader(tt.in), ParseOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := prefixStrings(l.Prefixes); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
			if l.Fixed != tt.fixed || l.Duplicates != tt.dups {
				t.Errorf("fixed/duplicates = %d/%d, want %d/%d", l.Fixed, l.Duplicates, tt.fixed, tt.dups)
			}
			checkList(t, l, ParseOptions{})
		})
	}
}

func TestParseErrors(t *testing.T) {
	long := strings.Repeat("#", MaxLineBytes)
	tests := []struct {
		name, format, in string
		opts             ParseOptions
		want             string // the exact error message
		is               error  // a sentinel the error must match, if any
	}{
		// Line-based text formats.
		{"spamhaus bad CIDR", FormatSpamhaus, "; header\n192.0.2.0/24 ; SBL1\n192.0.2.0/33 ; SBL2\n", ParseOptions{},
			`line 3: bad CIDR "192.0.2.0/33"`, nil},
		{"spamhaus bad address", FormatSpamhaus, "192.0.2.300 ; SBL1\n", ParseOptions{},
			`line 1: bad address "192.0.2.300"`, nil},
		{"spamhaus text without comment", FormatSpamhaus, "192.0.2.0/24 ; SBL1\n198.51.100.0/24 SBL2\n", ParseOptions{},
			`line 2: unexpected text after entry: "198.51.100.0/24 SBL2"`, nil},
		{"spamhaus hash is not a comment", FormatSpamhaus, "# comment\n", ParseOptions{},
			`line 1: unexpected text after entry: "# comment"`, nil},
		{"netset trailing comment", FormatNetset, "# header\n#\n192.0.2.1 # why\n", ParseOptions{},
			`line 3: unexpected text after entry: "192.0.2.1 # why"`, nil},
		{"netset semicolon", FormatNetset, "#\n\n\n\n192.0.2.1;x\n", ParseOptions{},
			`line 5: bad address "192.0.2.1;x"`, nil},
		{"plain zone", FormatPlain, "192.0.2.1\nfe80::1%eth0\n", ParseOptions{},
			`line 2: bad address "fe80::1%eth0"`, nil},
		{"plain short mapped prefix", FormatPlain, "::ffff:192.0.2.0/64\n", ParseOptions{},
			`line 1: bad CIDR "::ffff:192.0.2.0/64": an IPv4-mapped prefix must be at least /96`, nil},
		{"plain leading zeros", FormatPlain, "\n192.0.2.01\n", ParseOptions{},
			`line 2: bad address "192.0.2.01"`, nil},
		{"plain bad bits", FormatPlain, "2001:db8::/129\n", ParseOptions{},
			`line 1: bad CIDR "2001:db8::/129"`, nil},
		{"plain binary", FormatPlain, "192.0.2.1\n\x00\x01\x02\n", ParseOptions{},
			`line 2: bad address "\x00\x01\x02"`, nil},
		{"line too long", FormatPlain, "192.0.2.1\n#\n#\n" + long + "#\n", ParseOptions{},
			`line 4: line longer than 4096 bytes`, nil},
		{"line far too long", FormatNetset, "192.0.2.1\n" + strings.Repeat("1", 100000) + "\n", ParseOptions{},
			`line 2: line longer than 4096 bytes`, nil},
		{"too many entries", FormatNetset, "# h\n192.0.2.1\n192.0.2.2\n#\n192.0.2.3\n192.0.2.4\n", ParseOptions{MaxEntries: 3},
			`line 6: too many entries: more than 3`, ErrTooManyEntries},
		{"duplicates count against the cap", FormatPlain, "192.0.2.1\n192.0.2.1\n", ParseOptions{MaxEntries: 1},
			`line 2: too many entries: more than 1`, ErrTooManyEntries},
		{"too large", FormatPlain, "192.0.2.1\n192.0.2.2\n192.0.2.3\n", ParseOptions{MaxBytes: 15},
			`line 2: feed too large: more than 15 bytes`, ErrTooLarge},
		{"empty", FormatSpamhaus, "", ParseOptions{}, `empty feed`, ErrEmpty},
		{"only comments", FormatNetset, "#\n# Entries: 0\n#\n", ParseOptions{}, `empty feed`, ErrEmpty},
		{"unknown format", "csv", "192.0.2.1\n", ParseOptions{}, `unknown feed format "csv"`, ErrUnknownFormat},

		// spamhaus-json.
		{"json bad CIDR", FormatSpamhausJSON, `{"cidr":"192.0.2.0/24","sblid":"SBL1","rir":"arin"}` + "\n" + `{"cidr":"198.51.100.0/40","sblid":"SBL2","rir":"arin"}` + "\n", ParseOptions{},
			`line 2: bad CIDR "198.51.100.0/40"`, nil},
		{"json syntax", FormatSpamhausJSON, `{"cidr":"192.0.2.0/24"}` + "\n\n" + `{"cidr":"198.51.100.0/24"` + "\n", ParseOptions{},
			`line 3: bad JSON record: unexpected end of JSON input`, nil},
		{"json not an object", FormatSpamhausJSON, "192.0.2.0/24 ; SBL1\n", ParseOptions{},
			`line 1: bad JSON record: invalid character '.' after top-level value`, nil},
		{"json wrong type", FormatSpamhausJSON, `{"cidr":1}` + "\n", ParseOptions{},
			`line 1: bad JSON record: json: cannot unmarshal number into Go struct field spamhausRecord.cidr of type string`, nil},
		{"json without cidr", FormatSpamhausJSON, `{"cidr":"192.0.2.0/24"}` + "\n" + `{"sblid":"SBL1"}` + "\n", ParseOptions{},
			`line 2: record without cidr`, nil},
		{"json null", FormatSpamhausJSON, "null\n", ParseOptions{},
			`line 1: record without cidr`, nil},
		{"json metadata mismatch", FormatSpamhausJSON, `{"cidr":"192.0.2.0/24"}` + "\n" + `{"cidr":"198.51.100.0/24"}` + "\n" + `{"type":"metadata","timestamp":1700000000,"records":3}` + "\n", ParseOptions{},
			`line 3: metadata says 3 records but the feed has 2 (truncated download?)`, nil},
		{"json metadata says empty", FormatSpamhausJSON, `{"cidr":"192.0.2.0/24"}` + "\n" + `{"type":"metadata","records":0}` + "\n", ParseOptions{},
			`line 2: metadata says 0 records but the feed has 1 (truncated download?)`, nil},
		{"json second metadata", FormatSpamhausJSON, `{"cidr":"192.0.2.0/24"}` + "\n" + `{"type":"metadata","records":1}` + "\n" + `{"type":"metadata","records":1}` + "\n", ParseOptions{},
			`line 3: second metadata record (first on line 2)`, nil},
		{"json negative records", FormatSpamhausJSON, `{"type":"metadata","records":-1}` + "\n", ParseOptions{},
			`line 1: metadata: negative record count -1`, nil},
		{"json metadata without records, no entries", FormatSpamhausJSON, `{"type":"metadata","timestamp":1700000000}` + "\n", ParseOptions{},
			`empty feed`, ErrEmpty},
		{"json too many", FormatSpamhausJSON, `{"cidr":"192.0.2.0/24"}` + "\n" + `{"cidr":"198.51.100.0/24"}` + "\n", ParseOptions{MaxEntries: 1},
			`line 2: too many entries: more than 1`, ErrTooManyEntries},
		{"json line too long", FormatSpamhausJSON, `{"cidr":"192.0.2.0/24","x":"` + strings.Repeat("a", 5000) + `"}` + "\n", ParseOptions{},
			`line 1: line longer than 4096 bytes`, nil},

		// abuseipdb-json.
		{"abuseipdb bad address", FormatAbuseIPDBJSON, `{"data":[{"ipAddress":"192.0.2.1","abuseConfidenceScore":100},{"ipAddress":"198.51.100.2","abuseConfidenceScore":90},{"ipAddress":"203.0.113.256","abuseConfidenceScore":100}]}`, ParseOptions{},
			`data[2]: bad address "203.0.113.256"`, nil},
		{"abuseipdb bad address under min confidence", FormatAbuseIPDBJSON, `{"data":[{"ipAddress":"192.0.2.1","abuseConfidenceScore":100},{"ipAddress":"nope","abuseConfidenceScore":1}]}`, ParseOptions{MinConfidence: 50},
			`data[1]: bad address "nope"`, nil},
		{"abuseipdb score out of range", FormatAbuseIPDBJSON, `{"data":[{"ipAddress":"192.0.2.1","abuseConfidenceScore":100},{"ipAddress":"192.0.2.2","abuseConfidenceScore":101}]}`, ParseOptions{},
			`data[1]: abuseConfidenceScore 101 out of range 0..100`, nil},
		{"abuseipdb fractional score", FormatAbuseIPDBJSON, `{"data":[{"ipAddress":"192.0.2.1","abuseConfidenceScore":99.5}]}`, ParseOptions{},
			`data[0]: json: cannot unmarshal number 99.5 into Go struct field abuseIPDBEntry.abuseConfidenceScore of type int`, nil},
		{"abuseipdb missing address", FormatAbuseIPDBJSON, `{"data":[{"abuseConfidenceScore":100}]}`, ParseOptions{},
			`data[0]: entry without ipAddress`, nil},
		{"abuseipdb element not an object", FormatAbuseIPDBJSON, `{"data":[{"ipAddress":"192.0.2.1"},"192.0.2.2"]}`, ParseOptions{},
			`data[1]: json: cannot unmarshal string into Go value of type feeds.abuseIPDBEntry`, nil},
		{"abuseipdb truncated", FormatAbuseIPDBJSON, `{"data":[{"ipAddress":"192.0.2.1"},{"ipAddress":"192.0.2.2"},{"ipAdd`, ParseOptions{},
			`data[2]: unexpected EOF`, nil},
		{"abuseipdb syntax in data", FormatAbuseIPDBJSON, `{"data":[{"ipAddress":"192.0.2.1"},{"ipAddress" "192.0.2.2"}]}`, ParseOptions{},
			`data[1]: invalid character '"' after object key`, nil},
		{"abuseipdb truncated after data", FormatAbuseIPDBJSON, `{"data":[{"ipAddress":"192.0.2.1"}]`, ParseOptions{},
			`unexpected EOF`, nil},
		{"abuseipdb no data", FormatAbuseIPDBJSON, `{"meta":{"generatedAt":"2023-11-14T22:13:20+00:00"}}`, ParseOptions{},
			`no data array`, nil},
		{"abuseipdb data not an array", FormatAbuseIPDBJSON, `{"data":{"ipAddress":"192.0.2.1"}}`, ParseOptions{},
			`data is not an array`, nil},
		{"abuseipdb two data arrays", FormatAbuseIPDBJSON, `{"data":[{"ipAddress":"192.0.2.1"}],"data":[]}`, ParseOptions{},
			`second data array`, nil},
		{"abuseipdb not an object", FormatAbuseIPDBJSON, `[{"ipAddress":"192.0.2.1"}]`, ParseOptions{},
			`not a JSON object`, nil},
		{"abuseipdb text", FormatAbuseIPDBJSON, "192.0.2.1\n", ParseOptions{},
			`not a JSON object`, nil},
		{"abuseipdb syntax at top", FormatAbuseIPDBJSON, `{"meta" 1}`, ParseOptions{},
			`meta: at byte 8: expected colon after object key`, nil},
		{"abuseipdb empty input", FormatAbuseIPDBJSON, ``, ParseOptions{}, `empty feed`, ErrEmpty},
		{"abuseipdb truncated data", FormatAbuseIPDBJSON, `{"data":`, ParseOptions{}, `data: unexpected EOF`, nil},
		{"abuseipdb trailing data", FormatAbuseIPDBJSON, `{"data":[{"ipAddress":"192.0.2.1"}]} {}`, ParseOptions{},
			`unexpected data after the JSON object`, nil},
		{"abuseipdb error response", FormatAbuseIPDBJSON, `{"errors":[{"detail":"Daily rate limit of 5 requests exceeded for this endpoint.","status":429}]}`, ParseOptions{},
			`feed reports an error: status 429: Daily rate limit of 5 requests exceeded for this endpoint.`, nil},
		{"abuseipdb all under min confidence", FormatAbuseIPDBJSON, `{"data":[{"ipAddress":"192.0.2.1","abuseConfidenceScore":10},{"ipAddress":"192.0.2.2","abuseConfidenceScore":20}]}`, ParseOptions{MinConfidence: 50},
			`empty feed: all 2 entries skipped (under min confidence)`, ErrEmpty},
		{"abuseipdb empty data", FormatAbuseIPDBJSON, `{"meta":{},"data":[]}`, ParseOptions{},
			`empty feed`, ErrEmpty},
		{"abuseipdb too many", FormatAbuseIPDBJSON, `{"data":[{"ipAddress":"192.0.2.1","abuseConfidenceScore":100},{"ipAddress":"192.0.2.2","abuseConfidenceScore":10},{"ipAddress":"192.0.2.3","abuseConfidenceScore":100},{"ipAddress":"192.0.2.4","abuseConfidenceScore":100}]}`, ParseOptions{MaxEntries: 2, MinConfidence: 50},
			`data[3]: too many entries: more than 2`, ErrTooManyEntries},
		{"abuseipdb too large", FormatAbuseIPDBJSON, `{"data":[{"ipAddress":"192.0.2.1"},{"ipAddress":"192.0.2.2"}]}`, ParseOptions{MaxBytes: 40},
			`data[1]: feed too large: more than 40 bytes`, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := Parse(tt.format, strings.NewReader(tt.in), tt.opts)
			if err == nil {
				t.Fatalf("no error; got %d prefixes", l.Len())
			}
			if l != nil {
				t.Errorf("got a list with the error")
			}
			if err.Error() != tt.want {
				t.Errorf("error:\n got %s\nwant %s", err, tt.want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
		})
	}
}

func TestParseMaxLine(t *testing.T) {
	// A line of exactly MaxLineBytes is fine, CRLF or not.
	for _, eol := range []string{"\n", "\r\n", ""} {
		in := "192.0.2.1\n" + strings.Repeat(";", MaxLineBytes) + eol
		if _, err := Parse(FormatPlain, strings.NewReader(in), ParseOptions{}); err != nil {
			t.Errorf("eol %q: %v", eol, err)
		}
	}
}

type failingReader struct {
	data string
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.data == "" {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestParseReadError(t *testing.T) {
	boom := errors.New("boom")
	valid := map[string]string{
		FormatSpamhaus:      "192.0.2.0/24 ; SBL1\n",
		FormatSpamhausJSON:  `{"cidr":"192.0.2.0/24"}` + "\n",
		FormatNetset:        "#\n192.0.2.1\n",
		FormatPlain:         "192.0.2.1\n",
		FormatAbuseIPDBJSON: `{"data":[{"ipAddress":"192.0.2.1"},`,
	}
	for _, format := range Formats {
		_, err := Parse(format, &failingReader{data: valid[format], err: boom}, ParseOptions{})
		if !errors.Is(err, boom) {
			t.Errorf("%s: error %v does not wrap the read error", format, err)
		}
	}
	// A read error is not mistaken for the end of the input.
	_, err := Parse(FormatPlain, &failingReader{data: "192.0.2.1\n192.0.2.2\n", err: io.ErrUnexpectedEOF}, ParseOptions{})
	if err == nil || err.Error() != "line 3: unexpected EOF" {
		t.Errorf("got %v", err)
	}
}
