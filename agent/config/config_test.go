package config

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/bulwark-filter/bulwark/agent/listset"
)

// issue3Example is the config from the agent issue, which must be accepted as written.
const issue3Example = `mode      = "enforce"          # enforce | monitor
malformed = "drop"             # drop | pass

interface "eth0" {
  attach = "auto"              # auto | native | generic
}

allow {
  cidrs = ["198.18.0.0/30", "2001:2::1/128"]
  files = []                   # one CIDR or address per line, '#' and ';' comments
}

block {
  cidrs = ["198.18.66.0/24"]
  files = ["/etc/bulwark/block.txt"]
}

limits {
  ipv6_prefix = 64
  default {
    pps       = 1000
    burst     = 2000
    bandwidth = "100Mbit"      # optional; also "12MB" (bytes); per second
  }
  rule "dns" {
    protocol = "udp"
    ports    = ["53"]          # also ranges "1000-2000"
    pps      = 50
    burst    = 100
  }
  rule "syn" {
    protocol  = "tcp"
    tcp_flags = "syn"          # SYN without ACK
    pps       = 20
    burst     = 40
  }
  class "partners" {
    cidrs      = ["198.18.10.0/24"]
    multiplier = 10
  }
  throttle_multiplier = 0.1
}

metrics {
  listen = "127.0.0.1:9740"
}

log {
  level      = "info"          # trace | debug | info | warn | error
  format     = "text"          # text | json
  audit_file = "/var/log/bulwark/audit.jsonl"
}

control {
  socket = "/run/bulwark/bulwark.sock"
}
`

// issue4Example is the reputation, feed and geoip config from the reputation issue, which must be accepted.
const issue4Example = `reputation {
  mode           = "enforce"        # enforce | shadow | off
  interval       = "1s"
  throttle_score = 50
  block_score    = 80
  throttle_for   = "5m"
  block_for      = "10m"
  max_block_for  = "24h"
  max_verdicts   = 100000
  protect        = ["198.18.0.1/32"]
}

feed "spamhaus-drop" {
  url     = "https://example.invalid/drop_v4.json"   # or: path = "/etc/bulwark/feeds/drop_v4.json"
  format  = "spamhaus-json"         # spamhaus | spamhaus-json | netset | plain | abuseipdb-json
  refresh = "1h"
  action  = "block"                 # block | score
  weight  = 40                      # with action = "score"
}

geoip {
  country_database = "/var/lib/GeoIP/GeoLite2-Country.mmdb"
  asn_database     = "/var/lib/GeoIP/GeoLite2-ASN.mmdb"
  country_weights  = { "XX" = 20 }
  asn_weights      = { "64496" = 30 }
}
`

var skipIfCheck = Options{SkipInterfaceCheck: true}

// mmdbDir holds MaxMind's test databases, next to the repository.
func mmdbDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "test", "testdata", "mmdb"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "GeoLite2-Country-Test.mmdb")); err != nil {
		t.Fatalf("MaxMind test databases (test/testdata/mmdb) missing: %v", err)
	}
	return dir
}

// withMMDB points the issue's GeoIP database paths at MaxMind's test databases.
func withMMDB(t *testing.T, src string) string {
	dir := mmdbDir(t)
	return strings.NewReplacer(
		"/var/lib/GeoIP/GeoLite2-Country.mmdb", filepath.Join(dir, "GeoLite2-Country-Test.mmdb"),
		"/var/lib/GeoIP/GeoLite2-ASN.mmdb", filepath.Join(dir, "GeoLite2-ASN-Test.mmdb"),
	).Replace(src)
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	cfg, diags := ParseWithOptions("test.hcl", []byte(src), skipIfCheck)
	if diags.HasErrors() {
		t.Fatalf("unexpected errors:\n%s", FormatDiagnostics(diags))
	}
	return cfg
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// keys returns the list file entries of prefixes, in the order given.
func keys(ss ...string) []listset.Key {
	var out []listset.Key
	for _, s := range ss {
		out = append(out, listset.KeyOf(pfx(s)))
	}
	return out
}

func TestIssue3Example(t *testing.T) {
	dir := t.TempDir()
	list := writeFile(t, dir, "block.txt", "# Spamhaus DROP\n1.10.16.0/20 ; SBL256894\n\n198.51.100.7\r\n2001:db8::/32 # doc\n")
	src := strings.Replace(issue3Example, "/etc/bulwark/block.txt", list, 1)
	cfg, diags := ParseWithOptions("test.hcl", []byte(src), skipIfCheck)
	if len(diags) != 0 {
		t.Fatalf("diagnostics:\n%s", FormatDiagnostics(diags))
	}
	want := defaults()
	want.Interfaces = []Interface{{Name: "eth0", Attach: "auto"}}
	want.Allow = List{CIDRs: []netip.Prefix{pfx("198.18.0.0/30"), pfx("2001:2::1/128")}}
	want.Block = List{
		CIDRs: []netip.Prefix{pfx("198.18.66.0/24")},
		Files: []ListFile{{Path: list, Entries: keys("1.10.16.0/20", "198.51.100.7/32", "2001:db8::/32")}},
	}
	want.Limits = Limits{
		IPv6Prefix: 64,
		Default:    Limit{PPS: 1000, Burst: 2000, BytesPerSec: 12_500_000, ByteBurst: 12_500_000},
		Rules: []Rule{
			{Name: "dns", Protocol: "udp", Ports: []PortRange{{53, 53}}, Limit: Limit{PPS: 50, Burst: 100}},
			{Name: "syn", Protocol: "tcp", SYN: true, Ports: []PortRange{{0, 65535}}, Limit: Limit{PPS: 20, Burst: 40}},
		},
		Classes:            []Class{{Name: "partners", CIDRs: []netip.Prefix{pfx("198.18.10.0/24")}, Multiplier: 10}},
		ThrottleMultiplier: 0.1,
		Aggregate:          Aggregate{IPv4Prefix: 24, IPv6Prefix: 48},
		NewSources:         Limit{PPS: 50000, Burst: 100000},
	}
	// Ranges are checked apart from the values.
	if got := cfg.Limits.Rules[1].Range; got.Start.Line != 31 || got.Start.Column != 3 {
		t.Errorf("rule syn range = %v, want line 31 col 3", got)
	}
	clearRanges(cfg)
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("config mismatch:\n got %+v\nwant %+v", *cfg, *want)
	}
}

// clearRanges zeroes the source positions in cfg so it can be compared with a literal.
func clearRanges(cfg *Config) {
	cfg.Set = nil
	for _, l := range []*List{&cfg.Allow, &cfg.Block} {
		l.Range = hcl.Range{}
		for i := range l.Files {
			l.Files[i].Range = hcl.Range{}
		}
	}
	for i := range cfg.Interfaces {
		cfg.Interfaces[i].Range = hcl.Range{}
	}
	for i := range cfg.Limits.Rules {
		cfg.Limits.Rules[i].Range = hcl.Range{}
	}
	for i := range cfg.Limits.Classes {
		cfg.Limits.Classes[i].Range = hcl.Range{}
	}
	for i := range cfg.Feeds {
		cfg.Feeds[i].Range = hcl.Range{}
	}
}

func TestIssue3ExampleMissingListFile(t *testing.T) {
	if _, err := os.Stat("/etc/bulwark/block.txt"); err == nil {
		t.Skip("/etc/bulwark/block.txt exists on this host")
	}
	cfg, diags := ParseWithOptions("test.hcl", []byte(issue3Example), skipIfCheck)
	if cfg != nil {
		t.Error("config returned despite errors")
	}
	const want = "test.hcl:15:12: Missing list file: /etc/bulwark/block.txt does not exist."
	if got := FormatDiagnostics(diags); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestIssue4Example(t *testing.T) {
	dir := mmdbDir(t)
	src := `interface "eth0" {}` + "\n" + withMMDB(t, issue4Example)
	cfg, diags := ParseWithOptions("test.hcl", []byte(src), skipIfCheck)
	if diags.HasErrors() {
		t.Fatalf("errors:\n%s", FormatDiagnostics(diags))
	}
	// The example sets weight next to action = "block": accepted, with a warning that it is ignored.
	const wantDiags = `test.hcl:19:3: warning: Weight ignored: weight only applies to action = "score"; with action = "block" (the default) the feed blocks directly.`
	if got := FormatDiagnostics(diags); got != wantDiags {
		t.Errorf("diagnostics:\n%s\nwant\n%s", got, wantDiags)
	}
	want := defaults().Reputation
	want.Mode = "enforce"
	want.Protect = []netip.Prefix{pfx("198.18.0.1/32")}
	if !reflect.DeepEqual(cfg.Reputation, want) {
		t.Errorf("reputation = %+v, want %+v", cfg.Reputation, want)
	}
	clearRanges(cfg)
	wantFeeds := []Feed{{
		Name: "spamhaus-drop", URL: "https://example.invalid/drop_v4.json", Format: "spamhaus-json",
		Refresh: time.Hour, Action: "block", MaxEntries: 1_000_000, MinConfidence: 75,
	}}
	if !reflect.DeepEqual(cfg.Feeds, wantFeeds) {
		t.Errorf("feeds = %+v, want %+v", cfg.Feeds, wantFeeds)
	}
	wantGeo := GeoIP{
		CountryDatabase: filepath.Join(dir, "GeoLite2-Country-Test.mmdb"),
		ASNDatabase:     filepath.Join(dir, "GeoLite2-ASN-Test.mmdb"),
		CountryWeights:  map[string]float64{"XX": 20},
		ASNWeights:      map[uint32]float64{64496: 30},
	}
	if !reflect.DeepEqual(cfg.GeoIP, wantGeo) {
		t.Errorf("geoip = %+v, want %+v", cfg.GeoIP, wantGeo)
	}
}

func TestDefaults(t *testing.T) {
	cfg := mustParse(t, `interface "eth0" {}`)
	want := defaults()
	want.Interfaces = []Interface{{Name: "eth0", Attach: "auto"}}
	clearRanges(cfg)
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got %+v\nwant %+v", *cfg, *want)
	}
	// The documented defaults, spelled out once more so a change to defaults() is deliberate.
	if cfg.Mode != "enforce" || cfg.Malformed != "drop" || cfg.DetachOnExit || cfg.PinDir != "/sys/fs/bpf/bulwark" ||
		cfg.Limits.IPv6Prefix != 64 || cfg.Limits.ThrottleMultiplier != 0.1 || cfg.Limits.Default != (Limit{}) || cfg.Limits.NewSources != (Limit{PPS: 50000, Burst: 100000}) ||
		cfg.Metrics.Listen != "127.0.0.1:9740" || cfg.Log != (Log{"info", "text", "/var/log/bulwark/audit.jsonl"}) ||
		cfg.Control.Socket != "/run/bulwark/bulwark.sock" ||
		cfg.Maps != (Maps{}) ||
		cfg.Events != (Events{100, 1000, DefaultDropsDir, 16, 8}) || cfg.Reputation.Mode != "off" {
		t.Errorf("defaults changed: %+v", *cfg)
	}
}

// uncommentSettings enables the reference's optional settings: lines whose comment starts with a single "# ".
var uncommentSettings = regexp.MustCompile(`(?m)^(\s*)# `)

func TestReference(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "..", "configs", "bulwark.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	// As written, the reference sets every key to its default: it must equal the defaults.
	cfg, diags := LoadWithOptions(filepath.Join("..", "..", "configs", "bulwark.hcl"), skipIfCheck)
	if len(diags) != 0 {
		t.Fatalf("configs/bulwark.hcl:\n%s", FormatDiagnostics(diags))
	}
	want := mustParse(t, `interface "eth0" {}`)
	clearRanges(cfg)
	clearRanges(want)
	// The reference spells out the map sizes, whose defaults are the compile step's (agent/desired checks them).
	cfg.Maps = Maps{}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("reference.hcl does not document the defaults:\n got %+v\nwant %+v", *cfg, *want)
	}

	// With its optional settings enabled, it must still be valid.
	full := withMMDB(t, uncommentSettings.ReplaceAllString(string(src), "$1"))
	feedFile := writeFile(t, t.TempDir(), "abuseipdb.json", "[]")
	full = strings.ReplaceAll(full, "/var/lib/bulwark/feeds/abuseipdb.json", feedFile)
	for _, f := range []string{"fleet.creds", "fleet-ca.pem", "fleet-cert.pem", "fleet-key.pem", "crowdsec-bouncer.key", "crowdsec-machine.password"} {
		full = strings.ReplaceAll(full, "/etc/bulwark/"+f, writeFile(t, t.TempDir(), f, "x"))
	}
	cfg, diags = ParseWithOptions("reference-full.hcl", []byte(full), skipIfCheck)
	if len(diags) != 0 {
		t.Fatalf("reference.hcl with optional settings enabled:\n%s", FormatDiagnostics(diags))
	}
	if len(cfg.Limits.Rules) != 4 || len(cfg.Limits.Classes) != 1 || len(cfg.Feeds) != 2 ||
		cfg.Limits.Default.PPS != 1000 || len(cfg.GeoIP.CountryWeights) != 1 || cfg.Fleet == nil || len(cfg.Fleet.Servers) != 3 || cfg.Fleet.TLS.KeyFile == "" ||
		cfg.CrowdSec == nil || cfg.CrowdSec.Actions["captcha"] != "throttle" || cfg.CrowdSec.Machine == "" {
		t.Errorf("optional settings not all enabled: %+v", *cfg)
	}
}

func TestValues(t *testing.T) {
	cfg := mustParse(t, `
interface "eth0" { attach = "native" }
interface "eth1" { attach = "generic" }
mode = "monitor"
malformed = "pass"
detach_on_exit = true
pin_dir = "/sys/fs/bpf/b2/"
allow { cidrs = ["::ffff:198.18.0.1", "::ffff:198.18.0.0/120", "2001:db8::1", "0.0.0.0/0"] }
limits {
  ipv6_prefix = 56
  throttle_multiplier = 0.5
  default { bandwidth = "12MB" }
  rule "web" {
    protocol = "tcp"
    ports = ["443", "80", 81, "8000-8999", "8500-9000"]
    bandwidth = "1Gbit"
    bandwidth_burst = "1MiB"
  }
  rule "web-syn" {
    protocol = "tcp"
    tcp_flags = "syn"
    ports = ["80"]
    pps = 2000000000
  }
  rule "ping" {
    protocol = "icmpv6"
    pps = 5
  }
}
metrics { listen = "" }
log {
  level = "debug"
  format = "json"
  audit_file = ""
}
maps {
  sources = 4096
  events_ring_kib = 4
}
events {
  sample_every = 0
  max_per_second = 1
}
reputation {
  mode = "shadow"
  interval = "100ms"
  throttle_score = 60
  block_score = 60
  block_for = "1d12h"
  max_block_for = "7d"
  max_verdicts = 131072
  weights { port_scan = 100 }
}
feed "local" {
  path = "feeds/a.txt"
  format = "abuseipdb-json"
  action = "score"
  weight = 12.5
  min_confidence = 0
  refresh = "1m"
  allow_shrink = true
}
`)
	wd, _ := os.Getwd()
	checks := []struct {
		name      string
		got, want any
	}{
		{"interfaces", []string{cfg.Interfaces[0].Attach, cfg.Interfaces[1].Name, cfg.Interfaces[1].Attach}, []string{"native", "eth1", "generic"}},
		{"mode", cfg.Mode + "/" + cfg.Malformed, "monitor/pass"},
		{"detach", cfg.DetachOnExit, true},
		{"pin_dir", cfg.PinDir, "/sys/fs/bpf/b2"},
		{"allow", cfg.Allow.CIDRs, []netip.Prefix{pfx("198.18.0.1/32"), pfx("198.18.0.0/24"), pfx("2001:db8::1/128"), pfx("0.0.0.0/0")}},
		{"ipv6_prefix", cfg.Limits.IPv6Prefix, 56},
		{"throttle", cfg.Limits.ThrottleMultiplier, 0.5},
		{"default 12MB", cfg.Limits.Default, Limit{BytesPerSec: 12_000_000, ByteBurst: 12_000_000}},
		{"web ports", cfg.Limits.Rules[0].Ports, []PortRange{{80, 81}, {443, 443}, {8000, 9000}}},
		{"web limit", cfg.Limits.Rules[0].Limit, Limit{BytesPerSec: 125_000_000, ByteBurst: 1 << 20}},
		{"syn burst capped", cfg.Limits.Rules[1].Limit, Limit{PPS: 2_000_000_000, Burst: 1_000_000_000}},
		{"icmpv6 ports", cfg.Limits.Rules[2].Ports, []PortRange(nil)},
		{"listen", cfg.Metrics.Listen, ""},
		{"log", cfg.Log, Log{"debug", "json", ""}},
		{"maps", []uint32{cfg.Maps.Sources, cfg.Maps.EventsRingKiB, cfg.Maps.Verdicts}, []uint32{4096, 4, 0}}, // 0: the datapath's default
		{"events", cfg.Events, Events{0, 1, DefaultDropsDir, 16, 8}},
		{"reputation", []any{cfg.Reputation.Mode, cfg.Reputation.Interval, cfg.Reputation.ThrottleScore, cfg.Reputation.BlockScore, cfg.Reputation.BlockFor, cfg.Reputation.MaxBlockFor, cfg.Reputation.MaxVerdicts},
			[]any{"shadow", 100 * time.Millisecond, 60, 60, 36 * time.Hour, 168 * time.Hour, uint32(131072)}},
		{"weights", cfg.Reputation.Weights, Weights{RateAnomaly: 50, SYNRatio: 40, PortScan: 100, RatelimitDrops: 30, Malformed: 30, Repeat: 20,
			PortScanLong: 80, HorizontalScan: 80, UniformFlood: 50}},
		{"feed", []any{cfg.Feeds[0].Path, cfg.Feeds[0].Weight, cfg.Feeds[0].MinConfidence, cfg.Feeds[0].Refresh, cfg.Feeds[0].AllowShrink},
			[]any{filepath.Join(wd, "feeds", "a.txt"), 12.5, 0, time.Minute, true}},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		err  string
	}{
		{in: "100Mbit", want: 12_500_000},
		{in: "1Gbit", want: 125_000_000},
		{in: "500kbit", want: 62_500},
		{in: "12bit", want: 1},
		{in: "1.5Gbit", want: 187_500_000},
		{in: "12MB", want: 12_000_000},
		{in: "500KB", want: 500_000},
		{in: "1GB", want: 1_000_000_000},
		{in: "100B", want: 100},
		{in: "1KiB", want: 1024},
		{in: "2MiB", want: 2 << 20},
		{in: "1GiB", want: 1 << 30},
		{in: "100mbit", err: `unknown unit "mbit"`},
		{in: "100Mbps", err: `unknown unit "Mbps"`},
		{in: "100mb", err: "case-sensitive: b is bits, B is bytes"},
		{in: "100", err: "missing unit"},
		{in: "-1MB", err: "want a number and a unit"},
		{in: "1 MB", err: "want a number and a unit"},
		{in: "", err: "want a number and a unit"},
	} {
		got, err := parseSize(c.in)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("parseSize(%q) error = %v, want containing %q", c.in, err, c.err)
		case c.err == "" && (err != nil || got.Int64() != c.want):
			t.Errorf("parseSize(%q) = %v, %v; want %d", c.in, got, err, c.want)
		}
	}
}

func TestParsePrefix(t *testing.T) {
	for _, c := range []struct{ in, want, err string }{
		{in: "198.18.0.1", want: "198.18.0.1/32"},
		{in: "198.18.0.0/15", want: "198.18.0.0/15"},
		{in: "2001:2::1", want: "2001:2::1/128"},
		{in: "2001:2::/48", want: "2001:2::/48"},
		{in: "::ffff:198.18.0.1", want: "198.18.0.1/32"},
		{in: "::ffff:198.18.0.0/112", want: "198.18.0.0/16"},
		{in: "::ffff:0:0/96", want: "0.0.0.0/0"},
		{in: "::ffff:0:0/95", err: "IPv4-mapped prefix must be at least /96"},
		{in: "198.18.0.1/24", err: `host bits set in "198.18.0.1/24"; did you mean 198.18.0.0/24?`},
		{in: "2001:2::1/48", err: "did you mean 2001:2::/48?"},
		{in: "198.18.0.0/33", err: "prefix length must be 0-32"},
		{in: "198.18.0.0/+8", err: "prefix length must be 0-32"},
		{in: "198.18.0.0/", err: "prefix length must be 0-32"},
		{in: "fe80::1%eth0", err: "bad CIDR"},
		{in: "198.18.0", err: "bad CIDR"},
		{in: " 198.18.0.1", err: "bad CIDR"},
	} {
		got, err := parsePrefix(c.in)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("parsePrefix(%q) error = %v, want containing %q", c.in, err, c.err)
		case c.err == "" && (err != nil || got.String() != c.want):
			t.Errorf("parsePrefix(%q) = %v, %v; want %s", c.in, got, err, c.want)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"1s", time.Second, true},
		{"500ms", 500 * time.Millisecond, true},
		{"7d", 7 * 24 * time.Hour, true},
		{"1d12h", 36 * time.Hour, true},
		{"0d", 0, true},
		{"1.5d", 0, false},
		{"d", 0, false},
		{"1d-1h", 0, false},
		{"-1s", 0, false},
		{"5", 0, false},
		{"5x", 0, false},
		{"99999999999d", 0, false},
	} {
		got, err := ParseDuration(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v, ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
}

func TestLoadRelativeListFile(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir), "allow.txt", "198.18.0.0/30\n::ffff:198.18.1.1 ; mapped\n")
	path := writeFile(t, dir, "bulwark.hcl", "interface \"eth0\" {}\nallow { files = [\"allow.txt\"] }\n")
	cfg, diags := LoadWithOptions(path, skipIfCheck)
	if len(diags) != 0 {
		t.Fatal(FormatDiagnostics(diags))
	}
	want := []ListFile{{Path: filepath.Join(dir, "allow.txt"), Entries: keys("198.18.0.0/30", "198.18.1.1/32")}}
	if r := cfg.Allow.Files[0].Range; r.Filename != path || r.Start.Line != 2 || r.Start.Column != 18 {
		t.Errorf("file range %v, want %s:2:18", r, path)
	}
	clearRanges(cfg)
	if !reflect.DeepEqual(cfg.Allow.Files, want) {
		t.Errorf("files = %+v, want %+v", cfg.Allow.Files, want)
	}
}

func TestLoadMissingConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.hcl")
	cfg, diags := Load(path)
	want := path + ":1:1: Cannot read config file: open " + path + ": no such file or directory"
	if cfg != nil || FormatDiagnostics(diags) != want {
		t.Errorf("got %v, %q; want nil, %q", cfg, FormatDiagnostics(diags), want)
	}
}

func TestListFileTooManyBadLines(t *testing.T) {
	dir := t.TempDir()
	list := writeFile(t, dir, "l.txt", strings.Repeat("nonsense\n", 15))
	_, diags := ParseWithOptions("test.hcl", []byte(`interface "eth0" {}
block { files = ["`+list+`"] }`), skipIfCheck)
	if len(diags) != maxBadLines+1 {
		t.Fatalf("got %d diagnostics, want %d:\n%s", len(diags), maxBadLines+1, FormatDiagnostics(diags))
	}
	if got, want := diags[maxBadLines].Detail, list+": 5 more bad lines not shown."; got != want {
		t.Errorf("last detail = %q, want %q", got, want)
	}
}

// TestListFileEntries: a list file's entries come back sorted (IPv4 first), each once however often its lines
// repeat it, a last line without a newline counts, and a bad line is reported with its line number counted over
// blank and comment lines.
func TestListFileEntries(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "l.txt", "# header\n\n2001:2::/48\n198.18.0.9\n198.18.0.0/24 ; net\n198.18.0.9/32\n"+
		"\r\n::ffff:198.18.0.9\n2001:2::/48 # again\n198.18.0.1")
	cfg, diags := LoadWithOptions(writeFile(t, dir, "b.hcl", `interface "eth0" {}
block { files = ["l.txt"] }`), skipIfCheck)
	if len(diags) != 0 {
		t.Fatal(FormatDiagnostics(diags))
	}
	want := keys("198.18.0.0/24", "198.18.0.1/32", "198.18.0.9/32", "2001:2::/48")
	if got := cfg.Block.Files[0].Entries; !reflect.DeepEqual(got, want) {
		t.Errorf("entries %v, want %v", got, want)
	}

	bad := writeFile(t, dir, "bad.txt", "# header\n\n198.18.0.1\n\n198.18.0.300\n")
	_, diags = ParseWithOptions("test.hcl", []byte(`interface "eth0" {}
block { files = ["`+bad+`"] }`), skipIfCheck)
	if got, want := FormatDiagnostics(diags), "test.hcl:2:18: Bad list file entry: "+bad+":5: bad CIDR"; !strings.HasPrefix(got, want) {
		t.Errorf("got\n%s\nwant it to start with\n%s", got, want)
	}
}

// TestListFileTooManyEntries: the entry past maxListFileEntries is refused at its line; repeats count.
func TestListFileTooManyEntries(t *testing.T) {
	var b strings.Builder
	for range maxListFileEntries {
		b.WriteString("198.18.0.1\n")
	}
	b.WriteString("# one more\n198.18.0.2\n")
	list := writeFile(t, t.TempDir(), "many.txt", b.String())
	_, diags := ParseWithOptions("test.hcl", []byte(`interface "eth0" {}
block { files = ["`+list+`"] }`), skipIfCheck)
	want := fmt.Sprintf("test.hcl:2:18: List file too large: %s:%d: a list file may have at most %d entries.", list, maxListFileEntries+2, maxListFileEntries)
	if got := FormatDiagnostics(diags); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestListFileTooLarge(t *testing.T) {
	list := filepath.Join(t.TempDir(), "big.txt")
	f, err := os.Create(list)
	if err != nil {
		t.Fatal(err)
	}
	// A sparse file: its size is checked before it is read.
	if err := f.Truncate(maxListFileBytes + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, diags := ParseWithOptions("test.hcl", []byte(`interface "eth0" {}
block { files = ["`+list+`"] }`), skipIfCheck)
	want := "test.hcl:2:18: List file too large: " + list + " is 67108865 bytes; a list file may have at most 67108864 bytes (64 MiB)."
	if got := FormatDiagnostics(diags); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// TestTooManyClasses: class ids fit a byte; the number of rules is the compile step's limit (agent/desired).
func TestTooManyClasses(t *testing.T) {
	var b strings.Builder
	b.WriteString("interface \"eth0\" {}\nlimits {\n")
	for i := range maxClasses + 1 {
		fmt.Fprintf(&b, "  class \"c%d\" {\n    cidrs = [\"10.0.%d.%d\"]\n    multiplier = 2\n  }\n", i, i/256, i%256)
	}
	b.WriteString("}\n")
	_, diags := ParseWithOptions("test.hcl", []byte(b.String()), skipIfCheck)
	const want = "test.hcl:1023:3: Too many classes: At most 255 classes are allowed; this is class 256."
	if got := FormatDiagnostics(diags); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestWriteDiagnostics(t *testing.T) {
	src := "interface \"eth0\" {}\nallow {\n\tcidrs = [\"198.18.0.1/24\"]\n}\nmode = \"fast\"\n"
	var l Loader
	l.Options = skipIfCheck
	_, diags := l.Parse("test.hcl", []byte(src))

	var plain bytes.Buffer
	if err := WriteDiagnostics(&plain, nil, diags); err != nil {
		t.Fatal(err)
	}
	const wantPlain = `test.hcl:3:11: error: Invalid CIDR; host bits set in "198.18.0.1/24"; did you mean 198.18.0.0/24?
test.hcl:5:8: error: Invalid mode; "fast" is not a valid mode; use one of: enforce, monitor.
`
	if plain.String() != wantPlain {
		t.Errorf("plain:\n%s\nwant\n%s", plain.String(), wantPlain)
	}

	var withSnippet bytes.Buffer
	if err := WriteDiagnostics(&withSnippet, l.Files(), diags); err != nil {
		t.Fatal(err)
	}
	const wantSnippet = `test.hcl:3:11: error: Invalid CIDR; host bits set in "198.18.0.1/24"; did you mean 198.18.0.0/24?
     3 | 	cidrs = ["198.18.0.1/24"]
       | 	         ^^^^^^^^^^^^^^^
test.hcl:5:8: error: Invalid mode; "fast" is not a valid mode; use one of: enforce, monitor.
     5 | mode = "fast"
       |        ^^^^^^
`
	if withSnippet.String() != wantSnippet {
		t.Errorf("with snippet:\n%s\nwant\n%s", withSnippet.String(), wantSnippet)
	}
}

// TestDiagnostics checks the exact output for each class of error. Each source is preceded by an interface block
// for the loopback interface (which exists in every network namespace) on line 1, so the case's first line is line 2; "$TMP" in a source or an expected output stands for a temporary
// directory holding the case's list files.
func TestDiagnostics(t *testing.T) {
	cases := []struct {
		name  string
		src   string
		files map[string]string // list files to create in $TMP
		check bool              // check interfaces exist
		want  string
	}{{
		name: "unknown key",
		src: `limits {
  ipv6_prefx = 64
}`,
		want: `test.hcl:3:3: Unsupported argument: An argument named "ipv6_prefx" is not expected here. Did you mean "ipv6_prefix"?`,
	}, {
		name: "unknown block",
		src:  `limit {}`,
		want: `test.hcl:2:1: Unsupported block type: Blocks of type "limit" are not expected here. Did you mean "limits"?`,
	}, {
		name: "wrong type",
		src: `detach_on_exit = "maybe"
limits {
  default { pps = "fast" }
  ipv6_prefix = [64]
}
allow { cidrs = "198.18.0.0/15" }
geoip { country_weights = ["DE"] }`,
		want: `test.hcl:2:18: Unsuitable value type: Unsuitable value: a bool is required.
test.hcl:4:19: Unsuitable value type: Unsuitable value: a number is required.
test.hcl:5:17: Unsuitable value type: Unsuitable value: number required, but have tuple.
test.hcl:7:17: Unsuitable value type: cidrs must be a list, as in cidrs = ["a", "b"].
test.hcl:8:9: Missing country_database: country_weights needs country_database to look countries up.
test.hcl:8:27: Unsuitable value type: country_weights must be a map, as in country_weights = { "key" = 1 }.`,
	}, {
		name: "bad CIDR",
		src:  `allow { cidrs = ["198.18.0.0/30", "198.18.300.0/24", "198.18.0.0/33", 7] }`,
		want: `test.hcl:2:35: Invalid CIDR: bad CIDR "198.18.300.0/24": want an address or a prefix, as in "198.51.100.7", "198.51.100.0/24" or "2001:db8::/32".
test.hcl:2:54: Invalid CIDR: bad CIDR "198.18.0.0/33": prefix length must be 0-32.
test.hcl:2:71: Invalid CIDR: bad CIDR "7": want an address or a prefix, as in "198.51.100.7", "198.51.100.0/24" or "2001:db8::/32".`,
	}, {
		name: "host bits set",
		src:  `block { cidrs = ["198.18.0.1/24", "2001:2::1/48"] }`,
		want: `test.hcl:2:18: Invalid CIDR: host bits set in "198.18.0.1/24"; did you mean 198.18.0.0/24?
test.hcl:2:35: Invalid CIDR: host bits set in "2001:2::1/48"; did you mean 2001:2::/48?`,
	}, {
		name: "port out of range",
		src: `limits {
  rule "r" {
    protocol = "udp"
    ports    = ["0", "65536", "1-70000", "http"]
    pps      = 1
  }
}`,
		want: `test.hcl:5:17: Invalid port: port out of range in "0": ports are 1-65535.
test.hcl:5:22: Invalid port: port out of range in "65536": ports are 1-65535.
test.hcl:5:31: Invalid port: port out of range in "1-70000": ports are 1-65535.
test.hcl:5:42: Invalid port: bad port "http": want a port like "53" or a range like "1000-2000".`,
	}, {
		name: "port range reversed",
		src: `limits {
  rule "r" {
    protocol = "tcp"
    ports    = ["2000-1000"]
    pps      = 1
  }
}`,
		want: `test.hcl:5:17: Invalid port: port range "2000-1000" is reversed; write "1000-2000".`,
	}, {
		name: "rate not positive",
		src: `limits {
  default { pps = 0 }
  rule "a" {
    protocol = "icmp"
    pps      = -5
  }
  rule "b" {
    protocol  = "icmpv6"
    bandwidth = "0Mbit"
  }
  rule "c" {
    protocol = "udp"
    pps      = 1.5
  }
}`,
		want: `test.hcl:3:19: Invalid pps: rate must be > 0; got 0.
test.hcl:6:16: Invalid pps: rate must be > 0; got -5.
test.hcl:10:17: Invalid bandwidth: rate must be > 0; got "0Mbit".
test.hcl:14:16: Invalid pps: rate must be a whole number; got 1.5.`,
	}, {
		name: "rate too high",
		src: `limits {
  default {
    pps       = 4294967296
    bandwidth = "35Gbit"
  }
}`,
		want: `test.hcl:4:17: Invalid pps: rate must be at most 4294967295; got 4294967296.
test.hcl:5:17: Invalid bandwidth: bandwidth must be at most 34.3 Gbit/s per source (4294967295 bytes per second); got "35Gbit".`,
	}, {
		name: "burst out of range",
		src: `limits {
  default {
    pps   = 10
    burst = 0
  }
  rule "r" {
    protocol = "udp"
    pps      = 10
    burst    = 1000000001
  }
}`,
		want: `test.hcl:5:13: Invalid burst: burst must be > 0; got 0.
test.hcl:10:16: Invalid burst: burst must be at most 1000000000; got 1000000001.`,
	}, {
		name: "limit needs a rate",
		src: `limits {
  default {
    burst           = 10
    bandwidth_burst = "1B"
  }
}`,
		want: `test.hcl:3:3: Missing rate: A default block needs pps, bandwidth or both.
test.hcl:4:5: Burst without pps: burst is the packet bucket size and needs pps to be set.
test.hcl:5:5: Burst without bandwidth: bandwidth_burst is the byte bucket size and needs bandwidth to be set.
test.hcl:5:23: Invalid bandwidth_burst: bandwidth_burst must be at least 1514 bytes; got "1B".`,
	}, {
		name: "bad bandwidth unit",
		src: `limits {
  default { bandwidth = "100mbit" }
  rule "r" {
    protocol  = "udp"
    bandwidth = "100"
  }
}`,
		want: `test.hcl:3:25: Invalid bandwidth: bad size "100mbit": unknown unit "mbit"; use bit, kbit, Mbit or Gbit for bits, or B, KB, MB, GB, KiB, MiB or GiB for bytes (SI: k = 1000; units are case-sensitive: b is bits, B is bytes).
test.hcl:6:17: Invalid bandwidth: bad size "100": missing unit; use bit, kbit, Mbit or Gbit for bits, or B, KB, MB, GB, KiB, MiB or GiB for bytes (SI: k = 1000; units are case-sensitive: b is bits, B is bytes).`,
	}, {
		name:  "unknown interface",
		src:   `interface "bulwark-no-such-if0" {}`,
		check: true,
		want:  "test.hcl:2:11: Unknown interface: There is no network interface named \"bulwark-no-such-if0\" on this host (list them with `ip link`); interface names are at most 15 bytes long, \"bulwark-no-such-if0\" has 19.",
	}, {
		name: "invalid interface name",
		src: `interface "a/b" {}
interface "" {}`,
		want: `test.hcl:2:11: Invalid interface name: interface name "a/b" contains '/'.
test.hcl:3:11: Invalid interface name: "" is not a valid interface name.`,
	}, {
		name: "duplicate interface",
		src: `interface "lo" {
  attach = "native"
}`,
		want: `test.hcl:2:11: Duplicate interface: Interface "lo" is already configured at test.hcl:1:1.`,
	}, {
		name: "duplicate rule name",
		src: `limits {
  rule "dns" {
    protocol = "udp"
    ports    = ["53"]
    pps      = 50
  }
  rule "dns" {
    protocol = "tcp"
    ports    = ["53"]
    pps      = 50
  }
}`,
		want: `test.hcl:8:8: Duplicate rule name: Rule "dns" is already defined at test.hcl:3:3.`,
	}, {
		name: "bad rule names",
		src: `limits {
  rule "default" {
    protocol = "icmp"
    pps      = 1
  }
  rule "Web" {
    protocol = "icmpv6"
    pps      = 1
  }
  rule "aggregate" {
    protocol = "udp"
    pps      = 1
  }
  rule "new_sources" {
    protocol = "tcp"
    pps      = 1
  }
}`,
		want: `test.hcl:3:8: Reserved rule name: The rule name "default" is reserved for the default limit.
test.hcl:7:8: Invalid rule name: "Web" is not a valid rule name: use 1-32 lowercase letters, digits, '_', '.' or '-', starting with a letter or digit.
test.hcl:11:8: Reserved rule name: The rule name "aggregate" is reserved for the aggregate limit.
test.hcl:15:8: Reserved rule name: The rule name "new_sources" is reserved for the ceiling on new sources.`,
	}, {
		name: "overlapping rules",
		src: `limits {
  rule "web" {
    protocol = "tcp"
    ports    = ["80-90", "443"]
    pps      = 100
  }
  rule "alt" {
    protocol = "tcp"
    ports    = ["8080", "85-100"]
    pps      = 100
  }
  rule "syn" {
    protocol  = "tcp"
    tcp_flags = "syn"
    pps       = 10
  }
  rule "udp-all" {
    protocol = "udp"
    pps      = 100
  }
  rule "dns" {
    protocol = "udp"
    ports    = ["53"]
    pps      = 100
  }
  rule "ping" {
    protocol = "icmp"
    pps      = 1
  }
  rule "ping2" {
    protocol = "icmp"
    pps      = 2
  }
}`,
		want: `test.hcl:8:3: Overlapping rules: rule "alt" overlaps rule "web" (test.hcl:3:3) on tcp ports 85-90.
test.hcl:22:3: Overlapping rules: rule "dns" overlaps rule "udp-all" (test.hcl:18:3) on udp ports 53.
test.hcl:31:3: Overlapping rules: rule "ping2" overlaps rule "ping" (test.hcl:27:3) on icmp: both match every icmp packet.`,
	}, {
		name: "rule options that do not fit the protocol",
		src: `limits {
  rule "a" {
    protocol  = "icmp"
    ports     = ["1"]
    tcp_flags = "syn"
    pps       = 1
  }
  rule "b" {
    protocol  = "tcp"
    tcp_flags = "ack"
    ports     = []
    pps       = 1
  }
  rule "c" {
    protocol = "sctp"
    pps      = 1
  }
  rule "d" {
    pps = 1
  }
}`,
		want: `test.hcl:5:5: Ports not allowed: ports are only valid with protocol tcp or udp, not icmp.
test.hcl:6:5: tcp_flags not allowed: tcp_flags is only valid with protocol tcp, not icmp.
test.hcl:11:17: Invalid tcp_flags: "ack" is not a valid tcp_flags; the only value is "syn" (SYN set, ACK clear).
test.hcl:12:17: Invalid ports: ports must not be empty; leave it out to match every port.
test.hcl:16:16: Invalid protocol: "sctp" is not a valid protocol; use one of: tcp, udp, icmp, icmpv6.
test.hcl:19:12: Missing required argument: The argument "protocol" is required, but no definition was found.`,
	}, {
		name: "classes",
		src: `limits {
  class "a" {
    cidrs      = ["198.18.10.0/24", "198.18.10.0/24"]
    multiplier = 0
  }
  class "b" {
    cidrs      = ["198.18.10.0/24"]
    multiplier = 1001
  }
  class "a" {
    cidrs = []
  }
}`,
		want: `test.hcl:4:37: Duplicate class CIDR: 198.18.10.0/24 is listed twice in class "a".
test.hcl:5:18: Invalid multiplier: multiplier must be > 0; got 0.
test.hcl:8:19: Duplicate class CIDR: 198.18.10.0/24 is already in class "a"; a prefix may belong to one class only.
test.hcl:9:18: Invalid multiplier: multiplier must be at most 1000; got 1001.
test.hcl:11:9: Duplicate class name: Class "a" is already defined at test.hcl:3:3.
test.hcl:11:13: Missing required argument: The argument "multiplier" is required, but no definition was found.
test.hcl:12:13: Invalid cidrs: A class needs at least one CIDR.`,
	}, {
		name:  "list file missing",
		src:   `block { files = ["$TMP/nope.txt"] }`,
		files: map[string]string{},
		want:  `test.hcl:2:18: Missing list file: $TMP/nope.txt does not exist.`,
	}, {
		name:  "list file with bad lines",
		src:   `allow { files = ["$TMP/b.txt", "$TMP/a.txt"] }`,
		files: map[string]string{"a.txt": "# ok\n198.18.0.0/24\n", "b.txt": "# header\n198.18.0.0/24 ; fine\n\n198.18.0.1/24 ; host bits\n198.18.0.300\n"},
		want: `test.hcl:2:18: Bad list file entry: $TMP/b.txt:4: host bits set in "198.18.0.1/24"; did you mean 198.18.0.0/24?
test.hcl:2:18: Bad list file entry: $TMP/b.txt:5: bad CIDR "198.18.0.300": want an address or a prefix, as in "198.51.100.7", "198.51.100.0/24" or "2001:db8::/32".`,
	}, {
		name: "bad mode",
		src: `mode = "block"
malformed = "ignore"
interface "eth1" { attach = "offload" }`,
		want: `test.hcl:2:8: Invalid mode: "block" is not a valid mode; use one of: enforce, monitor.
test.hcl:3:13: Invalid malformed: "ignore" is not a valid malformed; use one of: drop, pass.
test.hcl:4:29: Invalid attach: "offload" is not a valid attach; use one of: auto, native, generic.`,
	}, {
		name: "bad duration",
		src: `reputation {
  interval     = "1 s"
  throttle_for = "5min"
  block_for    = 10
}
feed "f" {
  url     = "https://example.invalid/f.txt"
  format  = "plain"
  refresh = "30s"
}`,
		want: `test.hcl:3:18: Invalid duration: bad duration "1 s": use a number with a unit: ms, s, m, h or d, as in "500ms", "90s", "5m", "1h", "7d" or "1d12h".
test.hcl:4:18: Invalid duration: bad duration "5min": use a number with a unit: ms, s, m, h or d, as in "500ms", "90s", "5m", "1h", "7d" or "1d12h".
test.hcl:5:18: Invalid duration: bad duration "10": use a number with a unit: ms, s, m, h or d, as in "500ms", "90s", "5m", "1h", "7d" or "1d12h".
test.hcl:10:13: Invalid refresh: refresh must be at least 1m0s; got "30s".`,
	}, {
		name: "throttle_score above block_score",
		src: `reputation {
  throttle_score = 90
  block_score    = 80
  block_for      = "2d"
}`,
		want: `test.hcl:3:20: Invalid throttle_score: throttle_score (90) must not exceed block_score (80).
test.hcl:5:20: Invalid block_for: max_block_for (24h0m0s) must be at least block_for (48h0m0s).`,
	}, {
		name: "feed with both url and path",
		src: `feed "a" {
  url    = "https://example.invalid/a.txt"
  path   = "/var/lib/bulwark/a.txt"
  format = "plain"
}
feed "b" {
  format = "netset"
}
feed "c" {
  url    = "ftp://example.invalid/c"
  format = "csv"
  action = "score"
}
feed "c" {
  url            = "https://example.invalid/c.json"
  format         = "plain"
  min_confidence = 80
  max_entries    = 0
}`,
		want: `test.hcl:4:3: Conflicting feed source: A feed has either url or path, not both; url is set at test.hcl:3:3.
test.hcl:7:1: Missing feed source: A feed needs url (http or https) or path.
test.hcl:10:1: Missing weight: A feed with action = "score" needs a weight in (0, 100].
test.hcl:11:12: Invalid url: "ftp://example.invalid/c" must be an http or https URL.
test.hcl:12:12: Invalid format: "csv" is not a valid format; use one of: spamhaus, spamhaus-json, netset, plain, abuseipdb-json.
test.hcl:15:6: Duplicate feed name: Feed "c" is already defined at test.hcl:10:1.
test.hcl:18:3: min_confidence not allowed: min_confidence only applies to format = "abuseipdb-json", not "plain".
test.hcl:19:20: Invalid max_entries: max_entries must be > 0; got 0.`,
	}, {
		name: "unknown weight key",
		src: `reputation {
  weights = {
    rate_anomaly = 10
    syn_flood    = 20
    port_scan    = 101
  }
}`,
		want: `test.hcl:5:5: Unknown weight: "syn_flood" is not a reputation weight; the weights are: rate_anomaly, syn_ratio, port_scan, ratelimit_drops, malformed, repeat, port_scan_long, horizontal_scan, uniform_flood.
test.hcl:6:20: Invalid weight: weight must be at most 100; got 101.`,
	}, {
		name: "unknown weight key in block form",
		src: `reputation {
  weights {
    scan = 20
  }
}`,
		want: `test.hcl:4:5: Unknown weight: "scan" is not a reputation weight; the weights are: rate_anomaly, syn_ratio, port_scan, ratelimit_drops, malformed, repeat, port_scan_long, horizontal_scan, uniform_flood.`,
	}, {
		name: "safety limits",
		src: `safety {
  min_prefix_ipv4 = 0
  min_prefix_ipv6 = 129
  max_growth_ipv4 = 33
  max_growth_ipv6 = -1
}
safety {}`,
		want: `test.hcl:3:21: Invalid min_prefix_ipv4: min_prefix_ipv4 must be > 0; got 0.
test.hcl:4:21: Invalid min_prefix_ipv6: min_prefix_ipv6 must be at most 128; got 129.
test.hcl:5:21: Invalid max_growth_ipv4: max_growth_ipv4 must be at most 32; got 33.
test.hcl:6:21: Invalid max_growth_ipv6: max_growth_ipv6 must be at least 0; got -1.
test.hcl:8:1: Duplicate safety block: Only one safety block is allowed; the first is at test.hcl:2:1.`,
	}, {
		name: "bad country code",
		src: `geoip {
  country_database = "$TMP/missing.mmdb"
  country_weights  = { "uk" = 20, "GBR" = 5, "DE" = -1, "FR" = 1, "FR" = 2 }
  asn_weights      = { "AS64496" = 30, "0" = 1, 4294967296 = 1 }
}`,
		files: map[string]string{},
		want: `test.hcl:3:22: Missing database: $TMP/missing.mmdb does not exist.
test.hcl:4:24: Invalid country code: "uk" is not a country code: use the two-letter uppercase ISO 3166-1 code, as in "DE".
test.hcl:4:35: Invalid country code: "GBR" is not a country code: use the two-letter uppercase ISO 3166-1 code, as in "DE".
test.hcl:4:53: Invalid weight: weight must be at least 0; got -1.
test.hcl:4:67: Duplicate key: "FR" is set twice.
test.hcl:5:3: Missing asn_database: asn_weights needs asn_database to look ASNs up.
test.hcl:5:24: Invalid ASN: "AS64496" is not an AS number: use a decimal number 1-4294967295, as in "64496".
test.hcl:5:40: Invalid ASN: "0" is not an AS number: use a decimal number 1-4294967295, as in "64496".
test.hcl:5:49: Invalid ASN: "4294967296" is not an AS number: use a decimal number 1-4294967295, as in "64496".`,
	}, {
		name: "paths and addresses",
		src: `pin_dir = "bpf/bulwark"
metrics { listen = "127.0.0.1" }
control { socket = "/run/bulwark/` + strings.Repeat("s", 100) + `.sock" }
log { audit_file = "audit.jsonl" }`,
		want: `test.hcl:2:11: Invalid pin_dir: pin_dir must be an absolute path; got "bpf/bulwark".
test.hcl:3:20: Invalid listen: "127.0.0.1" is not a host:port address, as in "127.0.0.1:9740" or "[::1]:9740": address 127.0.0.1: missing port in address.
test.hcl:4:20: Invalid socket: A unix socket path may be at most 107 bytes long; "/run/bulwark/` + strings.Repeat("s", 100) + `.sock" has 118.
test.hcl:5:20: Invalid audit_file: audit_file must be an absolute path; got "audit.jsonl".`,
	}, {
		name: "map sizes",
		src: `maps {
  sources         = 0
  verdicts        = 67108865
  events_ring_kib = 1000
}
events { max_per_second = 0 }`,
		want: `test.hcl:3:21: Invalid sources: sources must be > 0; got 0.
test.hcl:4:21: Invalid verdicts: verdicts must be at most 67108864; got 67108865.
test.hcl:5:21: Invalid events_ring_kib: events_ring_kib must be a power of two (the ring buffer is a power-of-two number of pages); got 1000.
test.hcl:7:27: Invalid max_per_second: max_per_second must be > 0; got 0.`,
	}, {
		name: "duplicate block",
		src: `metrics {}
metrics {}`,
		want: `test.hcl:3:1: Duplicate metrics block: Only one metrics block is allowed; the first is at test.hcl:2:1.`,
	}, {
		name: "syntax error",
		src:  `mode = "enforce`,
		want: `test.hcl:2:16: Unterminated template string: No closing marker was found for the string.`,
	}, {
		name: "fleet servers and names",
		src: `fleet {
  servers = ["http://198.19.0.1:4222", "nats://", "nats://198.19.0.1:99999", "nats://u:p@198.19.0.1", "tls://a.example", "tls://a.example"]
  node    = "edge 1"
  bucket  = "bulwark.verdicts"
  publish = ["scorer", "feeds", "scorer"]
}`,
		want: `test.hcl:3:14: Invalid server: "http://198.19.0.1:4222" must be a nats or tls URL, as in "nats://198.19.0.1:4222".
test.hcl:3:40: Invalid server: "nats://" has no host.
test.hcl:3:51: Invalid server: The port in "nats://198.19.0.1:99999" must be a number 1-65535.
test.hcl:3:78: Invalid server: "nats://u:p@198.19.0.1" has credentials in it; use creds_file or user and password_file, which stay out of the config.
test.hcl:3:122: Duplicate server: "tls://a.example" is listed twice.
test.hcl:4:13: Invalid node: "edge 1" is not a valid node: use 1 to 64 letters, digits, '-' and '_'.
test.hcl:5:13: Invalid bucket: "bulwark.verdicts" is not a valid bucket: use 1 to 64 letters, digits, '-' and '_'.
test.hcl:6:24: Invalid publish: "feeds" is not a kind of verdict to publish; use scorer (the engine's verdicts) or cli (operator actions with --fleet).
test.hcl:6:33: Duplicate publish: "scorer" is listed twice.`,
	}, {
		name: "fleet files and caps",
		src: `fleet {
  servers       = []
  creds_file    = "$TMP/missing.creds"
  user          = "edge"
  replicas      = 7
  max_ttl       = "30s"
  issuer_rate   = 0
  issuer_burst  = 0
  max_active    = 67108865
  buffer        = -1
  tls { cert_file = "$TMP/cert.pem" }
}
fleet { servers = ["nats://198.19.0.1"] }`,
		files: map[string]string{"cert.pem": "x"},
		want: `test.hcl:3:19: Invalid servers: servers must name at least one NATS server, as in ["nats://198.19.0.1:4222"].
test.hcl:4:19: Missing credentials file: $TMP/missing.creds does not exist.
test.hcl:5:3: Conflicting credentials: Give creds_file or user and password_file, not both; creds_file is set at test.hcl:4:3.
test.hcl:6:19: Invalid replicas: replicas must be at most 5; got 7.
test.hcl:7:19: Invalid max_ttl: max_ttl must be at least 1m0s; got "30s".
test.hcl:8:19: Invalid issuer_rate: issuer_rate must be > 0; got 0.
test.hcl:9:19: Invalid issuer_burst: issuer_burst must be > 0; got 0.
test.hcl:10:19: Invalid max_active: max_active must be at most 67108864; got 67108865.
test.hcl:11:19: Invalid buffer: buffer must be > 0; got -1.
test.hcl:12:9: Missing key_file: cert_file needs key_file, the certificate's private key.
test.hcl:14:1: Duplicate fleet block: Only one fleet block is allowed; the first is at test.hcl:2:1.`,
	}, {
		name: "fleet without servers",
		src:  `fleet { password_file = "/etc/bulwark/nats.pw" }`,
		want: `test.hcl:2:9: Missing required argument: The argument "servers" is required, but no definition was found.
test.hcl:2:9: Missing user: password_file needs user.
test.hcl:2:25: Missing password file: /etc/bulwark/nats.pw does not exist.`,
	}, {
		name: "crowdsec",
		src: `crowdsec {
  lapi_url      = "ftp://127.0.0.1:8080"
  api_key_file  = "$TMP/missing.key"
  scopes        = ["ip", "country", "ip"]
  origins       = ["cscli", "bad origin"]
  actions       = { ban = "drop", "x y" = "block" }
  interval      = "10ms"
  max_decisions = 0
  machine       = "edge-1"
  push_queue    = 1000001
  tls { key_file = "$TMP/key.pem" }
}
crowdsec { lapi_url = "http://u:p@127.0.0.1:8080/?a=1" }`,
		files: map[string]string{"key.pem": "x"},
		want: `test.hcl:3:19: Invalid lapi_url: "ftp://127.0.0.1:8080" must be an http or https URL, as in "http://127.0.0.1:8080".
test.hcl:4:19: Missing API key file: $TMP/missing.key does not exist.
test.hcl:5:26: Invalid scopes: "country" is not a scope the bouncer takes; use ip or range.
test.hcl:5:37: Duplicate scopes: "ip" is listed twice.
test.hcl:6:29: Invalid origins: "bad origin" is not an origin; use a name such as cscli, crowdsec or CAPI.
test.hcl:7:27: Invalid actions: "drop" is not an action; use block or throttle.
test.hcl:7:35: Invalid actions: "x y" is not a decision type (as in ban or captcha).
test.hcl:8:19: Invalid interval: interval must be at least 100ms; got "10ms".
test.hcl:9:19: Invalid max_decisions: max_decisions must be > 0; got 0.
test.hcl:10:3: Missing password_file: machine needs password_file, the file holding its password.
test.hcl:11:19: Invalid push_queue: push_queue must be at most 1000000; got 1000001.
test.hcl:12:9: Missing cert_file: key_file needs cert_file, the certificate of the key.
test.hcl:14:1: Duplicate crowdsec block: Only one crowdsec block is allowed; the first is at test.hcl:2:1.`,
	}, {
		name: "crowdsec without a URL or key",
		src:  `crowdsec { actions = {} }`,
		want: `test.hcl:2:12: Missing required argument: The argument "lapi_url" is required, but no definition was found.
test.hcl:2:22: Invalid actions: actions must map at least one decision type, as in { ban = "block" }.`,
	}, {
		name: "variables are not allowed",
		src:  `mode = var.mode`,
		want: `test.hcl:2:8: Variables not allowed: Variables may not be used here.`,
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := `interface "lo" {}` + "\n" + c.src
			var tmp string
			if c.files != nil {
				tmp = t.TempDir()
				for name, content := range c.files {
					writeFile(t, tmp, name, content)
				}
				src = strings.ReplaceAll(src, "$TMP", tmp)
			}
			cfg, diags := ParseWithOptions("test.hcl", []byte(src), Options{SkipInterfaceCheck: !c.check})
			if cfg != nil || !diags.HasErrors() {
				t.Errorf("config accepted")
			}
			got := FormatDiagnostics(diags)
			if tmp != "" {
				got = strings.ReplaceAll(got, tmp, "$TMP")
			}
			if got != c.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, c.want)
			}
		})
	}
}

// TestSafetyValues: the safety keys reach the Config; a growth limit that
// one accepted entry can exceed is a warning, not an error.
func TestSafetyValues(t *testing.T) {
	cfg, diags := ParseWithOptions("test.hcl", []byte(`interface "eth0" {}
safety {
  min_prefix_ipv4 = 3
  min_prefix_ipv6 = 48
  max_growth_ipv4 = 0
  max_growth_ipv6 = 56
}`), Options{SkipInterfaceCheck: true})
	if diags.HasErrors() {
		t.Fatal(FormatDiagnostics(diags))
	}
	if want := (Safety{MinPrefixIPv4: 3, MinPrefixIPv6: 48, MaxGrowthIPv4: 0, MaxGrowthIPv6: 56}); cfg.Safety != want {
		t.Errorf("safety %+v, want %+v", cfg.Safety, want)
	}
	const wantDiags = `test.hcl:6:21: warning: Growth limit below the prefix limit: max_growth_ipv6 = 56 allows less growth than one entry of min_prefix_ipv6 = 48 covers: a feed update that adds a /48 is held back whole.`
	if got := FormatDiagnostics(diags); got != wantDiags {
		t.Errorf("diagnostics:\n%s\nwant\n%s", got, wantDiags)
	}
}

func ExampleFormatDiagnostics() {
	_, diags := ParseWithOptions("bulwark.hcl", []byte(`interface "eth0" {}
limits {
  default { pps = 0 }
}`), Options{SkipInterfaceCheck: true})
	fmt.Println(FormatDiagnostics(diags))
	// Output: bulwark.hcl:3:19: Invalid pps: rate must be > 0; got 0.
}
