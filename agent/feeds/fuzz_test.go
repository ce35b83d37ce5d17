package feeds

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// fuzzOpts are small caps so the fuzzer reaches them.
var fuzzOpts = ParseOptions{MaxEntries: 50, MinConfidence: 50, MaxBytes: 1 << 16}

func fuzzParse(f *testing.F, format string, seedFiles []string, seeds ...string) {
	for _, name := range seedFiles {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := Parse(format, bytes.NewReader(data), fuzzOpts)
		if err != nil {
			if l != nil {
				t.Fatalf("list with error %v", err)
			}
			return
		}
		if len(l.Prefixes) == 0 && format != FormatSpamhausJSON {
			t.Fatalf("empty list without error")
		}
		checkList(t, l, fuzzOpts)
	})
}

func FuzzParseSpamhaus(f *testing.F) {
	fuzzParse(f, FormatSpamhaus, []string{"spamhaus.txt", "spamhaus_v6.txt"},
		"192.0.2.77/24 ; SBL1\n", "::ffff:192.0.2.0/120;x\r\n", "; only a comment\n")
}

func FuzzParseSpamhausJSON(f *testing.F) {
	fuzzParse(f, FormatSpamhausJSON, []string{"spamhaus.jsonl", "spamhaus_v6.jsonl", "spamhaus_empty.jsonl"},
		`{"cidr":"192.0.2.0/24"}`+"\n"+`{"type":"metadata","records":2}`+"\n", "null\n")
}

func FuzzParseNetset(f *testing.F) {
	fuzzParse(f, FormatNetset, []string{"level1.netset", "v6.netset"}, "#\n192.0.2.1\n2001:db8::1/64\n")
}

func FuzzParsePlain(f *testing.F) {
	fuzzParse(f, FormatPlain, []string{"plain.txt", "level1.netset", "spamhaus.txt"}, "\xef\xbb\xbf192.0.2.1 # x\n")
}

func FuzzParseAbuseIPDBJSON(f *testing.F) {
	fuzzParse(f, FormatAbuseIPDBJSON, []string{"abuseipdb.json"},
		`{"data":[{"ipAddress":"192.0.2.1","abuseConfidenceScore":10},{"ipAddress":"192.0.2.2","abuseConfidenceScore":100}]}`,
		`{"errors":[{"detail":"x","status":429}]}`)
}
