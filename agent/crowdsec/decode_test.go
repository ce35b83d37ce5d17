package crowdsec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// jsonDecodeStream is the decoder DecodeStream replaced, on
// encoding/json's Decoder: the reference it is fuzzed against.
func jsonDecodeStream(r io.Reader) (Stream, error) {
	var s Stream
	dec := json.NewDecoder(r)
	if err := jsonExpectDelim(dec, '{'); err != nil {
		return s, err
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return s, err
		}
		var list *[]Decision
		switch tok {
		case "new":
			list = &s.New
		case "deleted":
			list = &s.Deleted
		default:
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return s, err
			}
			continue
		}
		tok, err = dec.Token()
		switch {
		case err != nil:
			return s, err
		case tok == nil:
			continue
		case tok != json.Delim('['):
			return s, fmt.Errorf("%v where a list of decisions was expected", tok)
		}
		for dec.More() {
			var d Decision
			if err := dec.Decode(&d); err != nil {
				return s, err
			}
			*list = append(*list, d)
		}
		if err := jsonExpectDelim(dec, ']'); err != nil {
			return s, err
		}
	}
	if err := jsonExpectDelim(dec, '}'); err != nil {
		return s, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return s, fmt.Errorf("data after the answer's object (%v)", err)
	}
	return s, nil
}

func jsonExpectDelim(dec *json.Decoder, d json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != d {
		return fmt.Errorf("%v where %v was expected", tok, d)
	}
	return nil
}

// sameAsJSON checks that DecodeStream reads in as encoding/json does:
// both fail, or both read the same decisions (nil and empty lists alike).
// Each is read whole, and one byte per read.
func sameAsJSON(t *testing.T, in []byte) {
	t.Helper()
	want, wantErr := jsonDecodeStream(bytes.NewReader(in))
	for _, r := range []io.Reader{bytes.NewReader(in), iotest.OneByteReader(bytes.NewReader(in))} {
		got, err := DecodeStream(r)
		switch {
		case (err != nil) != (wantErr != nil):
			t.Fatalf("%q: error %v; encoding/json's %v", in, err, wantErr)
		case err == nil && !sameStream(got, want):
			t.Fatalf("%q: %+v; encoding/json read %+v", in, got, want)
		}
	}
}

func sameStream(a, b Stream) bool {
	return (len(a.New) == 0 && len(b.New) == 0 || reflect.DeepEqual(a.New, b.New)) &&
		(len(a.Deleted) == 0 && len(b.Deleted) == 0 || reflect.DeepEqual(a.Deleted, b.Deleted))
}

// decodeSeeds are answers the LAPI writes, and near misses of its form.
var decodeSeeds = []string{
	`{"deleted":null,"new":[{"duration":"3h59m59.5s","id":1,"origin":"cscli","scenario":"test/s","scope":"Ip","simulated":false,"type":"ban","until":"2026-01-01T04:00:00Z","value":"198.18.0.1"}]}` + "\n",
	`{"new":[{"id":2,"value":"2001:2::1","scope":"Range","uuid":"x","extra":{"a":[1,"}"]}},{"ID":3,"Value":"198.18.0.3"}],"deleted":[{"id":-4}]}`,
	`{"new":[{"id":1.5}]}`, `{"new":[{"id":"7"}]}`, `{"new":[{"id":01}]}`, `{"new":[{"id":1e3}]}`, `{"new":[{"id":123456789012345678901}]}`,
	`{"new":[{"value":"a\"b","origin":"\u00e9","type":null}]}`, `{"new":[{"value":"\xff"}]}`, `{"new":[{"value":"` + "\x01" + `"}]}`,
	`{"new":[{"scope":"ip"},]}`, `{"new":[{"scope":"ip"}}`, `{"new":[{"scope" "ip"}]}`, `{"new":[{"scope":"ip",}]}`, `{"new":[{,}]}`,
	`{"new":[{"ſcope":"ip","\u0073cope":"range","Scope":"x"}]}`, `{"new":[{"x":tru}]}`, `{"new":[{"x":truex}]}`, `{"new":[{"x":-}]}`,
	`{"new":[{"x":1.}]}`, `{"new":[{"x":1.0e+5,"y":-0,"z":null,"w":true,"v":false}]}`, `{"new":[1]}`, `{"new":[[]]}`, `{"new":["x"]}`,
	`{"new":{}}`, `{"new":"x"}`, `{"new":1x}`, `{"new":nul}`, `{"new":null,}`, `{"x":1 2}`, `{"n\u0065w":[{"id":9}]}`, `{"new":[],"new":[{"id":1}]}`,
	`{}`, ` { } `, `{} {}`, `{}x`, `[]`, ``, `{`, `{"new":[`, `{"new":[{"id":1`, `{"new":[{"id":1}`, `{1:2}`, `{,}`, `{"a"}`, `{"a":}`,
	`{"new":[{"id":1},{"id":2}]}` + "\t\r\n ", "\xef\xbb\xbf{}",
}

func TestDecodeStreamSameAsJSON(t *testing.T) {
	for _, s := range decodeSeeds {
		sameAsJSON(t, []byte(s))
	}
	// A long answer: many buffer refills, values across their edges.
	var b strings.Builder
	b.WriteString(`{"new":[`)
	for i := range 20000 {
		if i > 0 {
			b.WriteString(",\n ")
		}
		fmt.Fprintf(&b, `{"duration":"%dh1m%d.%03ds","id":%d,"origin":"o%d","scenario":"s/%d","scope":"Ip","type":"ban","value":"198.18.%d.%d"}`,
			i%5, i%60, i%1000, i+1, i%3, i%7, i/256%256, i%256)
	}
	b.WriteString(`],"deleted":[{"id":5,"value":"2001:2::5"}]}`)
	sameAsJSON(t, []byte(b.String()))
	long := []byte(b.String())
	if _, err := DecodeStream(bytes.NewReader(long[:len(long)-1])); err == nil || !strings.Contains(err.Error(), "unexpected EOF") {
		t.Errorf("an answer cut short: %v; want unexpected EOF", err)
	}
}

func FuzzDecodeStream(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) { sameAsJSON(t, in) })
}
