package sigspec

import (
	"reflect"
	"strings"
	"testing"

	"github.com/bulwark-filter/bulwark/maps"
)

func TestParse(t *testing.T) {
	s, err := Parse("protocol=tcp dst_port=80 tcp_flags=syn ttl=200-255 ip_length=40 window=1024-65535 df=true ip_id_zero=false data=0102/ff0f")
	if err != nil {
		t.Fatal(err)
	}
	want := maps.Signature{
		Fields: maps.SigProto | maps.SigDPort | maps.SigTCPFlags | maps.SigTTL | maps.SigIPLen | maps.SigWindow |
			maps.SigDF | maps.SigIPID | maps.SigDataPrefix,
		Proto: 6, DPort: maps.Range{Lo: 80, Hi: 80}, TCPValue: 0x02, TCPMask: 0x12, TTL: maps.Range{Lo: 200, Hi: 255},
		IPLen: maps.Range{Lo: 40, Hi: 40}, Window: maps.Range{Lo: 1024, Hi: 65535}, DF: true,
		Data: []byte{1, 2}, DataMask: []byte{0xff, 0x0f},
	}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("got %+v\nwant %+v", s, want)
	}
	// What String prints, Parse reads back to the same signature.
	again, err := Parse(s.String())
	if err != nil || !reflect.DeepEqual(again, s) {
		t.Fatalf("round trip of %q: %+v, %v", s.String(), again, err)
	}
}

func TestParseErrors(t *testing.T) {
	for text, want := range map[string]string{
		"":                                 "empty match",
		"ttl":                              `"ttl": want key=value`,
		"ttl=300":                          `ttl: "300": want n or lo-hi with lo <= hi <= 255`,
		"ttl=9-3":                          "lo <= hi",
		"dst_port=1 dst_port=2":            "dst_port given twice",
		"colour=red":                       "unknown key",
		"tcp_flags=0x12/0x02":              "outside mask",
		"tcp_flags=urg":                    "want a name",
		"data=zz":                          "bytes in hex",
		"data=0102/ff":                     "2 bytes with a 1-byte mask",
		"tcp_options_length=3":             "a multiple of 4",
		"data=" + strings.Repeat("00", 17): "want 1-16 bytes",
	} {
		if _, err := Parse(text); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want an error with %q", text, err, want)
		}
	}
}

func TestParseAction(t *testing.T) {
	var s maps.Signature
	s.Fields = maps.SigTTL
	s.TTL = maps.Range{Lo: 1, Hi: 2}
	if err := ParseAction("limit", 100, 0, &s); err != nil || s.Action != maps.SigLimit || s.Burst != 100 {
		t.Errorf("limit 100: %+v, %v", s, err)
	}
	for _, c := range []struct {
		action     string
		pps, burst uint64
		want       string
	}{{"limit", 0, 0, "pps and burst above 0"}, {"drop", 5, 0, "pps and burst are for action limit"}, {"block", 0, 0, "want drop, limit or count"}} {
		s := s
		if err := ParseAction(c.action, c.pps, c.burst, &s); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %d/%d: %v, want %q", c.action, c.pps, c.burst, err, c.want)
		}
	}
}
