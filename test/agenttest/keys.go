package agenttest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclwrite"
)

// Setting sets one attribute in a config: Value is raw HCL, written at the attribute Attr of the block reached by
// Block (the first block of each type, made when missing; none: the top level). "$DIR" and "$MMDB" in Value
// stand for the config's directory and MaxMind's test databases (see Edit).
type Setting struct {
	Block []string
	Attr  string
	Value string
}

// NewBlock is a labelled block added to the block reached by In, with raw HCL attributes Attrs (in order).
type NewBlock struct {
	In     []string
	Type   string
	Labels []string
	Attrs  [][2]string
}

// KeyChange changes one config key (as named by config.Keys) away from the value KeysBase gives it.
type KeyChange struct {
	Set   []Setting
	Add   []NewBlock
	Files map[string]string // files to write in the config's directory first, name -> content
	// Restart is what the issue asks of a reload that changes the key: it is refused with
	// "restart needed: <key>" (true) or it takes effect (false).
	Restart bool
}

// KeysBase gives every key a value, so that each KeyChange changes exactly its key: blocks whose keys need
// others set (burst needs pps, country_weights a database) have them, and nothing is left to defaults that a
// change would have to spell out.
var KeysBase = []Setting{
	{[]string{"limits", "default"}, "pps", "100000"},
	{[]string{"limits", "default"}, "burst", "100000"},
	{[]string{"limits", "default"}, "bandwidth", `"1GB"`},
	{[]string{"limits", "default"}, "bandwidth_burst", `"2MB"`},
	{[]string{"limits", "aggregate"}, "pps", "1000000"},
	{[]string{"limits", "aggregate"}, "burst", "1000000"},
	{[]string{"limits", "aggregate"}, "bandwidth", `"2GB"`},
	{[]string{"limits", "aggregate"}, "bandwidth_burst", `"4MB"`},
	{[]string{"limits", "new_sources"}, "pps", "50000"},
	{[]string{"limits", "new_sources"}, "burst", "100000"},
	{[]string{"events"}, "sample_every", "1"},
	{[]string{"events"}, "dir", `"$DIR/drops"`},
	{[]string{"reputation"}, "mode", `"shadow"`},
	{[]string{"signatures"}, "limit_pps", "1000"},
	{[]string{"signatures"}, "limit_burst", "2000"},
	{[]string{"reputation"}, "max_verdicts", "500"},
	{[]string{"geoip"}, "country_database", `"$MMDB/GeoLite2-Country-Test.mmdb"`},
	{[]string{"geoip"}, "asn_database", `"$MMDB/GeoLite2-ASN-Test.mmdb"`},
	{[]string{"geoip"}, "country_weights", `{ "GB" = 10 }`},
	{[]string{"geoip"}, "asn_weights", `{ "64496" = 10 }`},
}

// set is a KeyChange of single attributes.
func set(block []string, attr, value string, restart bool) KeyChange {
	return KeyChange{Set: []Setting{{block, attr, value}}, Restart: restart}
}

var (
	top        = []string(nil)
	limits     = []string{"limits"}
	defaultLim = []string{"limits", "default"}
	aggregate  = []string{"limits", "aggregate"}
	newSources = []string{"limits", "new_sources"}
	mapsBlock  = []string{"maps"}
	events     = []string{"events"}
	reputation = []string{"reputation"}
	safety     = []string{"safety"}
	weights    = []string{"reputation", "weights"}
	geoip      = []string{"geoip"}
)

// KeyChanges holds a change of every key of the config schema; a test fails for a key that is missing here.
var KeyChanges = map[string]KeyChange{
	"mode":           set(top, "mode", `"monitor"`, false),
	"malformed":      set(top, "malformed", `"pass"`, false),
	"detach_on_exit": set(top, "detach_on_exit", "true", false),
	"watch_config":   set(top, "watch_config", "true", false),
	"pin_dir":        set(top, "pin_dir", `"/sys/fs/bpf/bulwark-keytest"`, true),
	"interface":      set([]string{"interface"}, "attach", `"generic"`, true),
	"allow.cidrs":    set([]string{"allow"}, "cidrs", `["198.18.99.0/24"]`, false),
	"allow.files": {Set: []Setting{{[]string{"allow"}, "files", `["keytest-allow.txt"]`}},
		Files: map[string]string{"keytest-allow.txt": "198.18.98.1\n"}},
	"block.cidrs": set([]string{"block"}, "cidrs", `["198.18.97.0/24"]`, false),
	"block.files": {Set: []Setting{{[]string{"block"}, "files", `["keytest-block.txt"]`}},
		Files: map[string]string{"keytest-block.txt": "198.18.96.1\n"}},
	"limits.ipv6_prefix":                 set(limits, "ipv6_prefix", "56", false),
	"limits.default.pps":                 set(defaultLim, "pps", "90000", false),
	"limits.default.burst":               set(defaultLim, "burst", "90000", false),
	"limits.default.bandwidth":           set(defaultLim, "bandwidth", `"900MB"`, false),
	"limits.default.bandwidth_burst":     set(defaultLim, "bandwidth_burst", `"3MB"`, false),
	"limits.rule":                        {Add: []NewBlock{{limits, "rule", []string{"keytest"}, [][2]string{{"protocol", `"udp"`}, {"ports", `["9"]`}, {"pps", "5"}}}}},
	"limits.class":                       {Add: []NewBlock{{limits, "class", []string{"keytest"}, [][2]string{{"cidrs", `["198.18.95.0/24"]`}, {"multiplier", "2"}}}}},
	"limits.throttle_multiplier":         set(limits, "throttle_multiplier", "0.5", false),
	"limits.aggregate.pps":               set(aggregate, "pps", "900000", false),
	"limits.aggregate.burst":             set(aggregate, "burst", "900000", false),
	"limits.aggregate.bandwidth":         set(aggregate, "bandwidth", `"1GB"`, false),
	"limits.aggregate.bandwidth_burst":   set(aggregate, "bandwidth_burst", `"3MB"`, false),
	"limits.aggregate.ipv4_prefix":       set(aggregate, "ipv4_prefix", "16", false),
	"limits.aggregate.ipv6_prefix":       set(aggregate, "ipv6_prefix", "40", false),
	"limits.new_sources.pps":             set(newSources, "pps", "40000", false),
	"limits.new_sources.burst":           set(newSources, "burst", "80000", false),
	"metrics.listen":                     set([]string{"metrics"}, "listen", `"127.0.0.1:19741"`, true),
	"log.level":                          set([]string{"log"}, "level", `"warn"`, false),
	"log.format":                         set([]string{"log"}, "format", `"json"`, true),
	"log.audit_file":                     set([]string{"log"}, "audit_file", `"$DIR/keytest-audit.jsonl"`, true),
	"control.socket":                     set([]string{"control"}, "socket", `"$DIR/keytest.sock"`, true),
	"maps.sources":                       set(mapsBlock, "sources", "2048", true),
	"maps.rule_buckets":                  set(mapsBlock, "rule_buckets", "2048", true),
	"maps.verdicts":                      set(mapsBlock, "verdicts", "2048", true),
	"maps.allow_hosts":                   set(mapsBlock, "allow_hosts", "2048", true),
	"maps.allow_prefixes":                set(mapsBlock, "allow_prefixes", "2048", true),
	"maps.block_hosts":                   set(mapsBlock, "block_hosts", "2048", true),
	"maps.block_prefixes":                set(mapsBlock, "block_prefixes", "2048", true),
	"maps.classes":                       set(mapsBlock, "classes", "2048", true),
	"maps.aggregates":                    set(mapsBlock, "aggregates", "2048", true),
	"maps.events_ring_kib":               set(mapsBlock, "events_ring_kib", "128", true),
	"events.sample_every":                set(events, "sample_every", "7", false),
	"events.max_per_second":              set(events, "max_per_second", "77", false),
	"events.dir":                         set(events, "dir", `"$DIR/keytest-drops"`, false),
	"events.max_file_mib":                set(events, "max_file_mib", "2", false),
	"events.max_files":                   set(events, "max_files", "3", false),
	"reputation.mode":                    set(reputation, "mode", `"enforce"`, false),
	"reputation.interval":                set(reputation, "interval", `"2s"`, false),
	"reputation.throttle_score":          set(reputation, "throttle_score", "40", false),
	"reputation.block_score":             set(reputation, "block_score", "90", false),
	"reputation.throttle_for":            set(reputation, "throttle_for", `"6m"`, false),
	"reputation.block_for":               set(reputation, "block_for", `"11m"`, false),
	"reputation.max_block_for":           set(reputation, "max_block_for", `"25h"`, false),
	"reputation.max_verdicts":            set(reputation, "max_verdicts", "400", false),
	"reputation.protect":                 set(reputation, "protect", `["198.18.94.0/24"]`, false),
	"reputation.weights.rate_anomaly":    set(weights, "rate_anomaly", "11", false),
	"reputation.weights.syn_ratio":       set(weights, "syn_ratio", "12", false),
	"reputation.weights.port_scan":       set(weights, "port_scan", "13", false),
	"reputation.weights.ratelimit_drops": set(weights, "ratelimit_drops", "14", false),
	"reputation.weights.malformed":       set(weights, "malformed", "15", false),
	"reputation.weights.repeat":          set(weights, "repeat", "16", false),
	"reputation.weights.port_scan_long":  set(weights, "port_scan_long", "17", false),
	"reputation.weights.horizontal_scan": set(weights, "horizontal_scan", "18", false),
	"reputation.scan_window":             set(reputation, "scan_window", `"5m"`, false),
	"reputation.weights.uniform_flood":   set(weights, "uniform_flood", "17", false),
	"feed": {Add: []NewBlock{{top, "feed", []string{"keytest"}, [][2]string{{"path", `"keytest-feed.txt"`}, {"format", `"plain"`}}}},
		Files: map[string]string{"keytest-feed.txt": "198.18.93.0/24\n"}},
	"safety.min_prefix_ipv4":     set(safety, "min_prefix_ipv4", "9", false),
	"safety.min_prefix_ipv6":     set(safety, "min_prefix_ipv6", "33", false),
	"safety.max_growth_ipv4":     set(safety, "max_growth_ipv4", "6", false),
	"safety.max_growth_ipv6":     set(safety, "max_growth_ipv6", "25", false),
	"geoip.country_database":     set(geoip, "country_database", `"$MMDB/GeoIP2-City-Test.mmdb"`, false),
	"geoip.asn_database":         {Set: []Setting{{geoip, "asn_database", `"$DIR/keytest-asn.mmdb"`}}, Files: map[string]string{"keytest-asn.mmdb": "$COPY:GeoLite2-ASN-Test.mmdb"}},
	"geoip.country_weights":      set(geoip, "country_weights", `{ "GB" = 20 }`, false),
	"geoip.asn_weights":          set(geoip, "asn_weights", `{ "64496" = 20 }`, false),
	"signature":                  {Add: []NewBlock{{top, "signature", []string{"keytest"}, [][2]string{{"match", `"protocol=udp dst_port=9"`}}}}},
	"signatures.detect":          set([]string{"signatures"}, "detect", `"shadow"`, false),
	"signatures.ttl":             set([]string{"signatures"}, "ttl", `"2m"`, false),
	"signatures.limit_pps":       set([]string{"signatures"}, "limit_pps", `3000`, false),
	"signatures.limit_burst":     set([]string{"signatures"}, "limit_burst", `3000`, false),
	"signatures.min_pps":         set([]string{"signatures"}, "min_pps", `2000`, false),
	"signatures.factor":          set([]string{"signatures"}, "factor", `4`, false),
	"signatures.min_new_sources": set([]string{"signatures"}, "min_new_sources", `50`, false),
	"signatures.sample_every":    set([]string{"signatures"}, "sample_every", `8`, false),
	"signatures.sample_budget":   set([]string{"signatures"}, "sample_budget", `2048`, false),
	"fleet":                      {Add: []NewBlock{{top, "fleet", nil, [][2]string{{"servers", `["nats://127.0.0.1:4222"]`}, {"node", `"keytest"`}}}}, Restart: true},
	"crowdsec": {Add: []NewBlock{{top, "crowdsec", nil, [][2]string{{"lapi_url", `"http://127.0.0.1:8080"`}, {"api_key_file", `"$DIR/keytest-cs.key"`}}}},
		Files: map[string]string{"keytest-cs.key": "0123456789abcdef\n"}, Restart: true},
}

// Edit applies settings and new blocks to the config src. vars replaces "$DIR", "$MMDB" and the like in the
// values.
func Edit(src []byte, sets []Setting, add []NewBlock, vars map[string]string) ([]byte, error) {
	f, diags := hclwrite.ParseConfig(src, "config.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		return nil, fmt.Errorf("parse: %s", diags.Error())
	}
	expand := func(s string) string {
		for k, v := range vars {
			s = strings.ReplaceAll(s, k, v)
		}
		return s
	}
	for _, s := range sets {
		toks, err := rawTokens(expand(s.Value))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.Attr, err)
		}
		bodyAt(f.Body(), s.Block).SetAttributeRaw(s.Attr, toks)
	}
	for _, b := range add {
		nb := bodyAt(f.Body(), b.In).AppendNewBlock(b.Type, b.Labels).Body()
		for _, a := range b.Attrs {
			toks, err := rawTokens(expand(a[1]))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", a[0], err)
			}
			nb.SetAttributeRaw(a[0], toks)
		}
	}
	return f.Bytes(), nil
}

// bodyAt returns the body of the block reached by path from body, making the blocks that are missing.
func bodyAt(body *hclwrite.Body, path []string) *hclwrite.Body {
	for _, typ := range path {
		var found *hclwrite.Block
		for _, b := range body.Blocks() {
			if b.Type() == typ {
				found = b
				break
			}
		}
		if found == nil {
			found = body.AppendNewBlock(typ, nil)
		}
		body = found.Body()
	}
	return body
}

// rawTokens returns the tokens of the HCL expression value.
func rawTokens(value string) (hclwrite.Tokens, error) {
	f, diags := hclwrite.ParseConfig([]byte("x = "+value+"\n"), "value.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		return nil, fmt.Errorf("bad value %q: %s", value, diags.Error())
	}
	return f.Body().GetAttribute("x").Expr().BuildTokens(nil), nil
}

// copyPrefix marks a KeyChange file that is a copy of one of MaxMind's test databases.
const copyPrefix = "$COPY:"

// WriteKeyFiles writes the files of a KeyChange into dir; a content "$COPY:<name>" copies <name> from mmdbDir.
func WriteKeyFiles(dir, mmdbDir string, files map[string]string) error {
	for name, content := range files {
		data := []byte(content)
		if src, ok := strings.CutPrefix(content, copyPrefix); ok {
			var err error
			if data, err = os.ReadFile(filepath.Join(mmdbDir, src)); err != nil {
				return err
			}
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}
