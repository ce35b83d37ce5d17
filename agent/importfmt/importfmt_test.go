package importfmt

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func join(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, " ")
}

const ipsetSave = `create blk4 hash:ip family inet hashsize 1024 maxelem 65536 timeout 600
add blk4 198.18.0.1 timeout 500
add blk4 198.18.0.2
create nets6 hash:net family inet6 hashsize 1024 maxelem 65536 comment
add nets6 2001:2::/64 comment "scanner"
create ports hash:ip,port family inet hashsize 1024 maxelem 65536
add ports 198.18.0.9,tcp:22
create masked hash:ip family inet netmask 24
add masked 198.18.7.0
create bm bitmap:ip range 198.18.8.0-198.18.8.255
add bm 198.18.8.4
add blk4 198.18.0.1
`

// nftSetJSON is what nft 1.0.6 prints for `nft -j list set inet t blk`
// with elements 198.18.0.1, 198.18.1.0/24, 198.18.2.1-198.18.2.3 and one
// with a timeout.
const nftSetJSON = `{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
{"set": {"family": "inet", "name": "blk", "table": "t", "type": "ipv4_addr", "handle": 2, "flags": ["interval", "timeout"],
"elem": ["198.18.0.1", {"prefix": {"addr": "198.18.1.0", "len": 24}}, {"range": ["198.18.2.1", "198.18.2.3"]},
{"elem": {"val": "198.18.3.3", "timeout": 3600, "expires": 3599}}]}}]}`

const nftRulesetJSON = `{"nftables": [{"metainfo": {"json_schema_version": 1}},
{"table": {"family": "inet", "name": "t", "handle": 1}},
{"set": {"family": "inet", "name": "ports", "table": "t", "type": "inet_service", "handle": 3, "elem": [22, 80]}},
{"set": {"family": "inet", "name": "blk6", "table": "t", "type": "ipv6_addr", "handle": 4, "flags": ["interval"],
"elem": [{"prefix": {"addr": "2001:2::", "len": 64}}, "2001:2:0:1::5"]}},
{"set": {"family": "ip", "name": "empty", "table": "u", "type": "ipv4_addr", "handle": 5}},
{"chain": {"family": "inet", "table": "t", "name": "in", "handle": 6}}]}`

const cscliJSON = `[
  {"id": 7, "scenario": "crowdsecurity/ssh-bf", "decisions": [
    {"id": 1, "origin": "crowdsec", "scenario": "crowdsecurity/ssh-bf", "scope": "Ip", "type": "ban", "value": "198.18.9.9", "duration": "3h59m"},
    {"id": 2, "origin": "cscli", "scenario": "manual", "scope": "Range", "type": "ban", "value": "2001:2:0:2::/64", "duration": "1h"},
    {"id": 3, "origin": "cscli", "scenario": "manual", "scope": "Ip", "type": "captcha", "value": "198.18.9.10", "duration": "1h"},
    {"id": 4, "origin": "cscli", "scenario": "manual", "scope": "Country", "type": "ban", "value": "FR", "duration": "1h"}
  ]}
]`

func TestParse(t *testing.T) {
	for _, c := range []struct {
		name, in string
		format   Format // Auto in the table: detection is checked too
		detected Format
		sets     []string
		want     string
		dups     int
		notes    int
	}{
		{"plain", "# list\n198.18.0.1\n198.18.1.0/24 ; comment\n\n2001:2::/48 # x\n198.18.0.1\n", Auto, Plain, nil,
			"198.18.0.1/32 198.18.1.0/24 2001:2::/48", 1, 0},
		{"plain masks host bits", "198.18.1.1/24\n", Plain, Plain, nil, "198.18.1.0/24", 0, 1},
		{"plain empty", "# nothing\n", Auto, Plain, nil, "", 0, 0},
		{"ipset", ipsetSave, Auto, IPSet, nil,
			"198.18.0.1/32 198.18.0.2/32 2001:2::/64 198.18.7.0/24 198.18.8.4/32", 1, 1},
		{"ipset one set", ipsetSave, IPSet, IPSet, []string{"nets6"}, "2001:2::/64", 0, 0},
		{"nft set", nftSetJSON, Auto, NFT, nil,
			"198.18.0.1/32 198.18.1.0/24 198.18.2.1/32 198.18.2.2/31 198.18.3.3/32", 0, 0},
		{"nft ruleset", nftRulesetJSON, Auto, NFT, nil, "2001:2::/64 2001:2:0:1::5/128", 0, 1},
		{"nft ruleset one set", nftRulesetJSON, NFT, NFT, []string{"empty"}, "", 0, 0},
		{"crowdsec", cscliJSON, Auto, CrowdSec, nil, "198.18.9.9/32 2001:2:0:2::/64", 0, 2},
		{"crowdsec none", "null\n", Auto, CrowdSec, nil, "", 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.format == Auto {
				if got := Detect([]byte(c.in)); got != c.detected {
					t.Fatalf("Detect = %s, want %s", got, c.detected)
				}
			}
			r, err := Parse([]byte(c.in), c.format, Options{Sets: c.sets})
			if err != nil {
				t.Fatal(err)
			}
			if r.Format != c.detected {
				t.Errorf("format %s, want %s", r.Format, c.detected)
			}
			if got := join(r.Prefixes); got != c.want {
				t.Errorf("prefixes\n got %s\nwant %s", got, c.want)
			}
			if r.Duplicates != c.dups || len(r.Notes) != c.notes {
				t.Errorf("duplicates %d, notes %q; want %d, %d notes", r.Duplicates, r.Notes, c.dups, c.notes)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct {
		name, in string
		format   Format
		sets     []string
		max      int
		want     string // the whole message
	}{
		{"plain bad address", "198.18.0.1\n198.18.0.300\n", Plain, nil, 0, `line 2: bad address "198.18.0.300"`},
		{"plain sets", "198.18.0.1\n", Plain, []string{"x"}, 0, "sets are selected by name only in ipset and nft input, not in plain"},
		{"ipset unknown line", "create s hash:ip\nflush s\n", IPSet, nil, 0,
			`line 2: "flush" is not an ipset save line (want create or add)`},
		{"ipset add before create", "add s 198.18.0.1\n", IPSet, nil, 0, `line 1: add to set "s", which no create line before made`},
		{"ipset bad element", "create s hash:net\nadd s 198.18.0.0/33\n", IPSet, nil, 0, `line 2: set "s": "198.18.0.0/33" is not a CIDR`},
		{"ipset nomatch", "create s hash:net\nadd s 198.18.0.0/24\nadd s 198.18.0.7 nomatch\n", IPSet, nil, 0,
			`line 3: set "s": 198.18.0.7 is a nomatch exception, which a block or allow list cannot hold; leave it out of the import (or put it in the other list)`},
		{"ipset missing set", ipsetSave, IPSet, []string{"nope"}, 0, `no set "nope" of addresses in the input`},
		{"ipset named set of ports", ipsetSave, IPSet, []string{"ports"}, 0,
			`line 6: set "ports" is of type hash:ip,port: its elements are not addresses`},
		{"ipset bound", ipsetSave, IPSet, nil, 2, `line 5: more than 2 entries`},
		{"ipset short line", "create s\n", IPSet, nil, 0, `line 1: create needs a set name and a type`},
		{"nft syntax", "{\"nftables\": [\n  {\"set\": }\n]}", NFT, nil, 0,
			"line 2, column 11: nft JSON: invalid character '}' looking for beginning of value"},
		{"nft not nft", `{"x": 1}`, NFT, nil, 0, `nft JSON: no "nftables" array (want the output of nft -j list set|sets|ruleset)`},
		{"nft bad element", `{"nftables": [{"set": {"family": "ip", "table": "t", "name": "s", "type": "ipv4_addr", "elem": ["198.18.0.1", {"x": 1}]}}]}`,
			NFT, nil, 0, `set ip t s, element 2: element {"x": 1}: want an address, a prefix, a range or an elem`},
		{"nft family mismatch", `{"nftables": [{"set": {"family": "ip", "table": "t", "name": "s", "type": "ipv4_addr", "elem": ["2001:2::1"]}}]}`,
			NFT, nil, 0, `set ip t s, element 1: 2001:2::1/128 in a set of type ipv4_addr`},
		{"nft named set of ports", nftRulesetJSON, NFT, []string{"ports"}, 0, `set inet t ports is of type "inet_service": its elements are not addresses`},
		{"crowdsec bad value", `[{"id": 3, "decisions": [{"scope": "Ip", "type": "ban", "value": "nope"}]}]`, CrowdSec, nil, 0,
			`alert 1 (id 3), decision 1: "nope" is not an IP address`},
		{"crowdsec host bits", `[{"id": 3, "decisions": [{"scope": "Range", "type": "ban", "value": "198.18.0.1/24"}]}]`, CrowdSec, nil, 0,
			`alert 1 (id 3), decision 1: 198.18.0.1/24 has host bits set`},
		{"crowdsec type", `[{"id": "x"}]`, CrowdSec, nil, 0,
			"line 1, column 11: cscli decisions JSON: json: cannot unmarshal string into Go struct field .id of type int64"},
		{"unknown format", "x", Format("csv"), nil, 0, `unknown format "csv": want one of auto, plain, ipset, nft, crowdsec`},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := Parse([]byte(c.in), c.format, Options{Sets: c.sets, MaxEntries: c.max})
			if err == nil {
				t.Fatalf("no error; got %s", join(r.Prefixes))
			}
			if err.Error() != c.want {
				t.Errorf("error\n got %s\nwant %s", err, c.want)
			}
		})
	}
}

func TestRangePrefixes(t *testing.T) {
	for _, c := range []struct{ lo, hi, want string }{
		{"198.18.0.0", "198.18.0.255", "198.18.0.0/24"},
		{"198.18.0.1", "198.18.0.6", "198.18.0.1/32 198.18.0.2/31 198.18.0.4/31 198.18.0.6/32"},
		{"198.18.0.5", "198.18.0.5", "198.18.0.5/32"},
		{"0.0.0.0", "255.255.255.255", "0.0.0.0/0"},
		{"255.255.255.254", "255.255.255.255", "255.255.255.254/31"},
		{"2001:2::", "2001:2::ffff", "2001:2::/112"},
		{"2001:2::ffff", "2001:2::1:0", "2001:2::ffff/128 2001:2::1:0/128"},
	} {
		ps, err := RangePrefixes(netip.MustParseAddr(c.lo), netip.MustParseAddr(c.hi))
		if err != nil {
			t.Fatalf("%s-%s: %v", c.lo, c.hi, err)
		}
		if got := join(ps); got != c.want {
			t.Errorf("%s-%s = %s, want %s", c.lo, c.hi, got, c.want)
		}
	}
	for _, c := range [][2]string{{"198.18.0.2", "198.18.0.1"}, {"198.18.0.1", "2001:2::1"}} {
		if _, err := RangePrefixes(netip.MustParseAddr(c[0]), netip.MustParseAddr(c[1])); err == nil {
			t.Errorf("%s-%s: no error", c[0], c[1])
		}
	}
}

func TestReadAll(t *testing.T) {
	b, err := ReadAll(strings.NewReader("12345"), 5)
	if err != nil || string(b) != "12345" {
		t.Fatalf("at the bound: %q, %v", b, err)
	}
	if _, err := ReadAll(strings.NewReader("123456"), 5); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over the bound: %v, want ErrTooLarge", err)
	}
}

func TestParseFormat(t *testing.T) {
	for _, f := range Formats {
		if got, err := ParseFormat(string(f)); err != nil || got != f {
			t.Errorf("ParseFormat(%s) = %s, %v", f, got, err)
		}
	}
}
