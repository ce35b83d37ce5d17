package config

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// Bounds shared by several keys.
const (
	maxClasses = 255 // class ids 1..255 fit a byte next to "no class"
	// overlapCheckedRules bounds the rules checked for overlaps (the check is quadratic), so a generated file
	// fails fast; the compile step refuses far fewer rules (maps.MaxRules).
	overlapCheckedRules = 4096
	// maxMapEntries bounds every map size and entry cap: 2^26 entries is already gigabytes of kernel memory.
	maxMapEntries = 1 << 26
	maxBurst      = 1_000_000_000
	maxWeight     = 100
)

// defaults returns the configuration with every default filled in and nothing configured. The map sizes stay
// zero: their defaults are the datapath's, given by the compile step (agent/desired).
func defaults() *Config {
	return &Config{
		Mode:      "enforce",
		Malformed: "drop",
		PinDir:    DefaultPinDir,
		Limits: Limits{IPv6Prefix: 64, ThrottleMultiplier: 0.1,
			Aggregate:  Aggregate{IPv4Prefix: 24, IPv6Prefix: 48},
			NewSources: Limit{PPS: 50_000, Burst: 100_000}},
		Metrics: Metrics{Listen: DefaultMetricsListen},
		Log:     Log{Level: "info", Format: "text", AuditFile: DefaultAuditFile},
		Control: Control{Socket: DefaultControlSocket},
		Safety:  Safety{MinPrefixIPv4: 8, MinPrefixIPv6: 32, MaxGrowthIPv4: 5, MaxGrowthIPv6: 24},
		SignatureDetection: Signatures{Detect: "off", TTL: time.Minute, MinPPS: DefaultSigMinPPS,
			Factor: DefaultSigFactor, MinNewSources: DefaultSigMinNewSources, SampleEvery: DefaultSigSampleEvery,
			SampleBudget: DefaultSigSampleBudget},
		Events: Events{SampleEvery: 100, MaxPerSecond: 1000, Dir: DefaultDropsDir, MaxFileMiB: 16, MaxFiles: 8},
		Reputation: Reputation{
			Mode:          "off",
			Interval:      time.Second,
			ThrottleScore: 50,
			BlockScore:    80,
			ThrottleFor:   5 * time.Minute,
			BlockFor:      10 * time.Minute,
			MaxBlockFor:   24 * time.Hour,
			MaxVerdicts:   100_000,
			ScanWindow:    10 * time.Minute,
			Weights: Weights{
				RateAnomaly:    50,
				SYNRatio:       40,
				PortScan:       60,
				RatelimitDrops: 30,
				Malformed:      30,
				Repeat:         20,
				PortScanLong:   80,
				HorizontalScan: 80,
				UniformFlood:   50,
			},
		},
	}
}

var rootSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "mode"}, {Name: "malformed"}, {Name: "detach_on_exit"}, {Name: "pin_dir"},
		{Name: "watch_config"}},
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "interface", LabelNames: []string{"name"}},
		{Type: "allow"}, {Type: "block"}, {Type: "limits"}, {Type: "metrics"}, {Type: "log"}, {Type: "control"},
		{Type: "maps"}, {Type: "events"}, {Type: "reputation"},
		{Type: "feed", LabelNames: []string{"name"}},
		{Type: "geoip"}, {Type: "safety"}, {Type: "fleet"}, {Type: "crowdsec"},
		{Type: "signature", LabelNames: []string{"name"}}, {Type: "signatures"},
	},
}

// root decodes the whole file.
func (d *decoder) root(body hcl.Body) *Config {
	cfg := defaults()
	c := d.content(body, rootSchema)
	d.enumAttr(c.Attributes["mode"], &cfg.Mode, "enforce", "monitor")
	d.enumAttr(c.Attributes["malformed"], &cfg.Malformed, "drop", "pass")
	d.boolAttr(c.Attributes["detach_on_exit"], &cfg.DetachOnExit)
	d.pathAttr(c.Attributes["pin_dir"], &cfg.PinDir, false)
	d.boolAttr(c.Attributes["watch_config"], &cfg.WatchConfig)

	d.interfaces(c.Blocks.OfType("interface"), c.MissingItemRange, cfg)
	var blockAt listSources
	if b := d.single(c.Blocks, "allow"); b != nil {
		cfg.Allow, _ = d.listBlock(b)
	}
	if b := d.single(c.Blocks, "block"); b != nil {
		cfg.Block, blockAt = d.listBlock(b)
	}
	d.warnAllowedBlocks(cfg.Allow, cfg.Block, blockAt)
	if b := d.single(c.Blocks, "limits"); b != nil {
		d.limits(b, &cfg.Limits)
	}
	if b := d.single(c.Blocks, "metrics"); b != nil {
		d.metrics(b, &cfg.Metrics)
	}
	if b := d.single(c.Blocks, "log"); b != nil {
		lc := d.content(b.Body, &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "level"}, {Name: "format"}, {Name: "audit_file"}}})
		d.enumAttr(lc.Attributes["level"], &cfg.Log.Level, "trace", "debug", "info", "warn", "error")
		d.enumAttr(lc.Attributes["format"], &cfg.Log.Format, "text", "json")
		d.pathAttr(lc.Attributes["audit_file"], &cfg.Log.AuditFile, true)
	}
	if b := d.single(c.Blocks, "control"); b != nil {
		d.control(b, &cfg.Control)
	}
	if b := d.single(c.Blocks, "maps"); b != nil {
		d.maps(b, cfg)
	}
	if b := d.single(c.Blocks, "events"); b != nil {
		ec := d.content(b.Body, &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "sample_every"}, {Name: "max_per_second"},
			{Name: "dir"}, {Name: "max_file_mib"}, {Name: "max_files"}}})
		uintAttr(d, ec.Attributes["sample_every"], &cfg.Events.SampleEvery, "sample_every", 0, math.MaxUint32)
		uintAttr(d, ec.Attributes["max_per_second"], &cfg.Events.MaxPerSecond, "max_per_second", 1, math.MaxUint32)
		uintAttr(d, ec.Attributes["max_file_mib"], &cfg.Events.MaxFileMiB, "max_file_mib", 1, 4096)
		uintAttr(d, ec.Attributes["max_files"], &cfg.Events.MaxFiles, "max_files", 1, 10000)
		d.pathAttr(ec.Attributes["dir"], &cfg.Events.Dir, true)
	}
	if b := d.single(c.Blocks, "reputation"); b != nil {
		record(cfg, "reputation.max_verdicts", d.reputation(b, &cfg.Reputation))
	}
	d.feeds(c.Blocks.OfType("feed"), cfg)
	if b := d.single(c.Blocks, "safety"); b != nil {
		sc := d.content(b.Body, &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "min_prefix_ipv4"}, {Name: "min_prefix_ipv6"},
			{Name: "max_growth_ipv4"}, {Name: "max_growth_ipv6"}}})
		uintAttr(d, sc.Attributes["min_prefix_ipv4"], &cfg.Safety.MinPrefixIPv4, "min_prefix_ipv4", 1, 32)
		uintAttr(d, sc.Attributes["min_prefix_ipv6"], &cfg.Safety.MinPrefixIPv6, "min_prefix_ipv6", 1, 128)
		uintAttr(d, sc.Attributes["max_growth_ipv4"], &cfg.Safety.MaxGrowthIPv4, "max_growth_ipv4", 0, 32)
		uintAttr(d, sc.Attributes["max_growth_ipv6"], &cfg.Safety.MaxGrowthIPv6, "max_growth_ipv6", 0, 128)
		s := cfg.Safety
		for _, f := range []struct {
			fam                  string
			minPrefix, maxGrowth int
		}{{"ipv4", s.MinPrefixIPv4, s.MaxGrowthIPv4}, {"ipv6", s.MinPrefixIPv6, s.MaxGrowthIPv6}} {
			if a := sc.Attributes["max_growth_"+f.fam]; a != nil && f.maxGrowth > f.minPrefix {
				d.diags = append(d.diags, &hcl.Diagnostic{
					Severity: hcl.DiagWarning,
					Summary:  "Growth limit below the prefix limit",
					Detail: fmt.Sprintf("max_growth_%s = %d allows less growth than one entry of min_prefix_%s = %d covers: a feed update that adds a /%d is held back whole.",
						f.fam, f.maxGrowth, f.fam, f.minPrefix, f.minPrefix),
					Subject: a.Expr.Range().Ptr(),
				})
			}
		}
	}
	if b := d.single(c.Blocks, "geoip"); b != nil {
		d.geoip(b, cfg)
	}
	if b := d.single(c.Blocks, "fleet"); b != nil {
		d.fleet(b, cfg)
	}
	d.signatures(c.Blocks.OfType("signature"), cfg)
	if b := d.single(c.Blocks, "signatures"); b != nil {
		d.signatureDetection(b, &cfg.SignatureDetection)
	}
	if b := d.single(c.Blocks, "crowdsec"); b != nil {
		d.crowdSec(b, cfg)
	}
	return cfg
}

// single returns the first block of type typ, reporting any further ones.
func (d *decoder) single(blocks hcl.Blocks, typ string) *hcl.Block {
	var first *hcl.Block
	for _, b := range blocks.OfType(typ) {
		if first != nil {
			d.errorf(b.DefRange, "Duplicate "+typ+" block", "Only one %s block is allowed; the first is at %s.", typ, at(first.DefRange))
			continue
		}
		first = b
	}
	return first
}

// interfaces decodes the interface blocks; missing is where to report that there are none.
func (d *decoder) interfaces(blocks hcl.Blocks, missing hcl.Range, cfg *Config) {
	if len(blocks) == 0 {
		d.errorf(missing, "Missing interface block", `At least one interface block is required, as in: interface "eth0" {}.`)
	}
	seen := map[string]hcl.Range{}
	for _, b := range blocks {
		name := b.Labels[0]
		c := d.content(b.Body, &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "attach"}}})
		iface := Interface{Name: name, Attach: "auto", Range: b.DefRange}
		d.enumAttr(c.Attributes["attach"], &iface.Attach, "auto", "native", "generic")
		if first, dup := seen[name]; dup {
			d.errorf(b.LabelRanges[0], "Duplicate interface", "Interface %q is already configured at %s.", name, at(first))
			continue
		}
		seen[name] = b.DefRange
		if name == InterfaceAuto || IsInterfacePattern(name) {
			d.interfaceSpec(b, name)
			cfg.Interfaces = append(cfg.Interfaces, iface)
			continue
		}
		nameErr := interfaceNameError(name)
		switch {
		case !d.opts.SkipInterfaceCheck && !d.opts.Offline:
			if _, err := net.InterfaceByName(name); err != nil {
				detail := fmt.Sprintf("There is no network interface named %q on this host (list them with `ip link`)", name)
				if nameErr != nil {
					detail += "; " + nameErr.Error()
				}
				d.errorf(b.LabelRanges[0], "Unknown interface", "%s", detail)
			}
		case nameErr != nil:
			d.errorf(b.LabelRanges[0], "Invalid interface name", "%s", nameErr)
		}
		cfg.Interfaces = append(cfg.Interfaces, iface)
	}
}

// interfaceSpec checks an interface block named "auto" or a pattern: its
// syntax, and, on the host, that it names an interface now; none is a
// warning, since the agent waits for one to appear.
func (d *decoder) interfaceSpec(b *hcl.Block, name string) {
	if err := interfacePatternError(name); err != nil {
		d.errorf(b.LabelRanges[0], "Invalid interface pattern", "%s", err)
		return
	}
	if d.opts.SkipInterfaceCheck || d.opts.Offline {
		return
	}
	if _, err := ResolveInterface(name); err != nil {
		d.warnf(b.LabelRanges[0], "No interface matches", "%s on this host now: the agent will wait for one, reporting it in its status and in bulwark_interface_missing.", err)
	}
}

// interfaceNameError checks name as the Linux kernel does (dev_valid_name).
func interfaceNameError(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("%q is not a valid interface name", name)
	case len(name) > 15:
		return fmt.Errorf("interface names are at most 15 bytes long, %q has %d", name, len(name))
	}
	for _, c := range name {
		if c == '/' || c == ':' || c == ' ' || (c >= '\t' && c <= '\r') || c == 0 {
			return fmt.Errorf("interface name %q contains %q", name, c)
		}
	}
	return nil
}

// limitAttrs are the attributes of a limit, in a default or rule block.
var limitAttrs = []hcl.AttributeSchema{{Name: "pps"}, {Name: "burst"}, {Name: "bandwidth"}, {Name: "bandwidth_burst"}}

// limits decodes the limits block.
func (d *decoder) limits(b *hcl.Block, l *Limits) {
	c := d.content(b.Body, &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "ipv6_prefix"}, {Name: "throttle_multiplier"}},
		Blocks: []hcl.BlockHeaderSchema{
			{Type: "default"},
			{Type: "rule", LabelNames: []string{"name"}},
			{Type: "class", LabelNames: []string{"name"}},
			{Type: "aggregate"},
			{Type: "new_sources"},
		},
	})
	uintAttr(d, c.Attributes["ipv6_prefix"], &l.IPv6Prefix, "ipv6_prefix", 1, 128)
	d.floatAttr(c.Attributes["throttle_multiplier"], &l.ThrottleMultiplier, 0, 1000, true)
	if db := d.single(c.Blocks, "default"); db != nil {
		dc := d.content(db.Body, &hcl.BodySchema{Attributes: limitAttrs})
		l.Default = d.limit(dc.Attributes, db)
	}
	if ab := d.single(c.Blocks, "aggregate"); ab != nil {
		attrs := append([]hcl.AttributeSchema{{Name: "ipv4_prefix"}, {Name: "ipv6_prefix"}}, limitAttrs...)
		ac := d.content(ab.Body, &hcl.BodySchema{Attributes: attrs})
		l.Aggregate.Limit = d.limit(ac.Attributes, ab)
		uintAttr(d, ac.Attributes["ipv4_prefix"], &l.Aggregate.IPv4Prefix, "ipv4_prefix", 1, 32)
		uintAttr(d, ac.Attributes["ipv6_prefix"], &l.Aggregate.IPv6Prefix, "ipv6_prefix", 1, 128)
	}
	if nb := d.single(c.Blocks, "new_sources"); nb != nil {
		nc := d.content(nb.Body, &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "pps"}, {Name: "burst"}}})
		l.NewSources = d.limit(nc.Attributes, nb)
	}
	d.rules(c.Blocks.OfType("rule"), l)
	d.classes(c.Blocks.OfType("class"), l)
}

// limit decodes the limit attributes of block b.
func (d *decoder) limit(attrs hcl.Attributes, b *hcl.Block) Limit {
	var l Limit
	pps, bw := attrs["pps"], attrs["bandwidth"]
	if pps == nil && bw == nil {
		d.errorf(b.DefRange, "Missing rate", "A %s block needs pps, bandwidth or both.", b.Type)
	}
	if uintAttr(d, pps, &l.PPS, "rate", 1, math.MaxUint32) {
		l.Burst = min(l.PPS, maxBurst)
	}
	if burst := attrs["burst"]; burst != nil {
		if pps == nil {
			d.errorf(burst.Range, "Burst without pps", "burst is the packet bucket size and needs pps to be set.")
		}
		uintAttr(d, burst, &l.Burst, "burst", 1, maxBurst)
	}
	if d.sizeAttr(bw, &l.BytesPerSec, 1, true) {
		l.ByteBurst = max(l.BytesPerSec, 65536)
	}
	if bb := attrs["bandwidth_burst"]; bb != nil {
		if bw == nil {
			d.errorf(bb.Range, "Burst without bandwidth", "bandwidth_burst is the byte bucket size and needs bandwidth to be set.")
		}
		d.sizeAttr(bb, &l.ByteBurst, minByteBurst, false)
	}
	return l
}

// reservedRuleNames are the names the metrics and drop events give the
// limits that are not rules; a rule may not take them.
var reservedRuleNames = map[string]string{
	"default":     "the default limit",
	"aggregate":   "the aggregate limit",
	"new_sources": "the ceiling on new sources",
}

// rules decodes the rule blocks and checks that no two rules match the same packets.
func (d *decoder) rules(blocks hcl.Blocks, l *Limits) {
	seen := map[string]hcl.Range{}
	for _, b := range blocks {
		name := b.Labels[0]
		nameOK := d.checkName(b, "rule")
		if what, ok := reservedRuleNames[name]; ok {
			d.errorf(b.LabelRanges[0], "Reserved rule name", "The rule name %q is reserved for %s.", name, what)
			nameOK = false
		}
		if first, dup := seen[name]; dup {
			d.errorf(b.LabelRanges[0], "Duplicate rule name", "Rule %q is already defined at %s.", name, at(first))
			nameOK = false
		} else {
			seen[name] = b.DefRange
		}
		if r, ok := d.rule(b); ok && nameOK {
			l.Rules = append(l.Rules, r)
		}
	}
	d.checkOverlaps(l.Rules[:min(len(l.Rules), overlapCheckedRules)])
}

// rule decodes one rule block.
func (d *decoder) rule(b *hcl.Block) (Rule, bool) {
	errs := d.errors()
	c := d.content(b.Body, &hcl.BodySchema{Attributes: append([]hcl.AttributeSchema{
		{Name: "protocol", Required: true}, {Name: "ports"}, {Name: "tcp_flags"},
	}, limitAttrs...)})
	r := Rule{Name: b.Labels[0], Range: b.DefRange}
	protoOK := d.enumAttr(c.Attributes["protocol"], &r.Protocol, "tcp", "udp", "icmp", "icmpv6")
	if a := c.Attributes["ports"]; a != nil {
		if protoOK && r.Protocol != "tcp" && r.Protocol != "udp" {
			d.errorf(a.Range, "Ports not allowed", "ports are only valid with protocol tcp or udp, not %s.", r.Protocol)
		}
		r.Ports = d.ports(a)
	}
	if a := c.Attributes["tcp_flags"]; a != nil {
		var flags string
		if d.stringAttr(a, &flags) {
			switch {
			case flags != "syn":
				d.errorf(a.Expr.Range(), "Invalid tcp_flags", `%q is not a valid tcp_flags; the only value is "syn" (SYN set, ACK clear).`, flags)
			case protoOK && r.Protocol != "tcp":
				d.errorf(a.Range, "tcp_flags not allowed", "tcp_flags is only valid with protocol tcp, not %s.", r.Protocol)
			default:
				r.SYN = true
			}
		}
	}
	if (r.Protocol == "tcp" || r.Protocol == "udp") && c.Attributes["ports"] == nil {
		r.Ports = []PortRange{{Lo: 0, Hi: math.MaxUint16}}
	}
	r.Limit = d.limit(c.Attributes, b)
	return r, d.errors() == errs
}

// ports decodes a list of ports and port ranges, sorted and merged.
func (d *decoder) ports(a *hcl.Attribute) []PortRange {
	exprs := d.list(a)
	if exprs != nil && len(exprs) == 0 {
		d.errorf(a.Expr.Range(), "Invalid ports", "ports must not be empty; leave it out to match every port.")
	}
	var out []PortRange
	for _, e := range exprs {
		s, ok := d.str(e)
		if !ok {
			continue
		}
		pr, err := parsePorts(s)
		if err != nil {
			d.errorf(e.Range(), "Invalid port", "%s", err)
			continue
		}
		out = append(out, pr)
	}
	slices.SortFunc(out, func(a, b PortRange) int { return int(a.Lo) - int(b.Lo) })
	var merged []PortRange
	for _, pr := range out {
		if n := len(merged); n > 0 && int(pr.Lo) <= int(merged[n-1].Hi)+1 {
			merged[n-1].Hi = max(merged[n-1].Hi, pr.Hi)
			continue
		}
		merged = append(merged, pr)
	}
	return merged
}

// matchTable names the datapath table a rule lives in; rules in different tables never match the same packet.
func matchTable(r Rule) string {
	switch {
	case r.Protocol == "tcp" && r.SYN:
		return "tcp SYN ports"
	case r.Protocol == "tcp" || r.Protocol == "udp":
		return r.Protocol + " ports"
	default:
		return r.Protocol
	}
}

// checkOverlaps reports each pair of rules in one table whose ports overlap, at the later rule.
func (d *decoder) checkOverlaps(rules []Rule) {
	for j, b := range rules {
		for _, a := range rules[:j] {
			table := matchTable(a)
			if table != matchTable(b) {
				continue
			}
			if a.Ports == nil {
				d.errorf(b.Range, "Overlapping rules", "rule %q overlaps rule %q (%s) on %s: both match every %s packet.",
					b.Name, a.Name, at(a.Range), table, table)
				continue
			}
			if pr, ok := firstOverlap(a.Ports, b.Ports); ok {
				d.errorf(b.Range, "Overlapping rules", "rule %q overlaps rule %q (%s) on %s %s.", b.Name, a.Name, at(a.Range), table, pr)
			}
		}
	}
}

// firstOverlap returns the first common range of two sorted, merged port lists.
func firstOverlap(a, b []PortRange) (PortRange, bool) {
	for _, x := range a {
		for _, y := range b {
			if lo, hi := max(x.Lo, y.Lo), min(x.Hi, y.Hi); lo <= hi {
				return PortRange{Lo: lo, Hi: hi}, true
			}
		}
	}
	return PortRange{}, false
}

// classes decodes the class blocks.
func (d *decoder) classes(blocks hcl.Blocks, l *Limits) {
	seen := map[string]hcl.Range{}
	classOf := map[netip.Prefix]string{}
	for i, b := range blocks {
		if i == maxClasses {
			d.errorf(b.DefRange, "Too many classes", "At most %d classes are allowed; this is class %d.", maxClasses, i+1)
		}
		name := b.Labels[0]
		errs := d.errors()
		d.checkName(b, "class")
		if first, dup := seen[name]; dup {
			d.errorf(b.LabelRanges[0], "Duplicate class name", "Class %q is already defined at %s.", name, at(first))
		} else {
			seen[name] = b.DefRange
		}
		c := d.content(b.Body, &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
			{Name: "cidrs", Required: true}, {Name: "multiplier", Required: true},
		}})
		cl := Class{Name: name, Range: b.DefRange}
		if a := c.Attributes["cidrs"]; a != nil {
			var ranges []hcl.Range
			cidrErrs := d.errors()
			cl.CIDRs, ranges = d.prefixList(a)
			if len(cl.CIDRs) == 0 && d.errors() == cidrErrs {
				d.errorf(a.Expr.Range(), "Invalid cidrs", "A class needs at least one CIDR.")
			}
			for i, p := range cl.CIDRs {
				switch other, dup := classOf[p]; {
				case dup && other == name:
					d.errorf(ranges[i], "Duplicate class CIDR", "%s is listed twice in class %q.", p, name)
				case dup:
					d.errorf(ranges[i], "Duplicate class CIDR", "%s is already in class %q; a prefix may belong to one class only.", p, other)
				default:
					classOf[p] = name
				}
			}
		}
		d.floatAttr(c.Attributes["multiplier"], &cl.Multiplier, 0, 1000, true)
		if d.errors() == errs {
			l.Classes = append(l.Classes, cl)
		}
	}
}

// metrics decodes the metrics block.
func (d *decoder) metrics(b *hcl.Block, m *Metrics) {
	c := d.content(b.Body, &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "listen"}}})
	a := c.Attributes["listen"]
	var s string
	if !d.stringAttr(a, &s) {
		return
	}
	if s != "" {
		_, port, err := net.SplitHostPort(s)
		if err != nil {
			d.errorf(a.Expr.Range(), "Invalid listen", "%q is not a host:port address, as in \"127.0.0.1:9740\" or \"[::1]:9740\": %s", s, err)
			return
		}
		if !validPort(port) {
			d.errorf(a.Expr.Range(), "Invalid listen", "The port in %q must be a number 1-65535.", s)
			return
		}
	}
	m.Listen = s
}

// maxSocketPath is the longest unix socket path the kernel accepts (sun_path holds 108 bytes with the NUL).
const maxSocketPath = 107

// control decodes the control block.
func (d *decoder) control(b *hcl.Block, ctl *Control) {
	c := d.content(b.Body, &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "socket"}}})
	a := c.Attributes["socket"]
	var s string
	if d.pathAttr(a, &s, false) {
		if len(s) > maxSocketPath {
			d.errorf(a.Expr.Range(), "Invalid socket", "A unix socket path may be at most %d bytes long; %q has %d.", maxSocketPath, s, len(s))
			return
		}
		ctl.Socket = s
	}
}

// maps decodes the maps block into cfg.Maps and records where its keys are set, for the compile step's checks of
// what the maps must hold.
func (d *decoder) maps(b *hcl.Block, cfg *Config) {
	m := &cfg.Maps
	sizes := []struct {
		name string
		dst  *uint32
	}{
		{"sources", &m.Sources}, {"rule_buckets", &m.RuleBuckets}, {"verdicts", &m.Verdicts},
		{"allow_hosts", &m.AllowHosts}, {"allow_prefixes", &m.AllowPrefixes},
		{"block_hosts", &m.BlockHosts}, {"block_prefixes", &m.BlockPrefixes}, {"classes", &m.Classes},
		{"aggregates", &m.Aggregates},
	}
	schema := &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "events_ring_kib"}}}
	for _, s := range sizes {
		schema.Attributes = append(schema.Attributes, hcl.AttributeSchema{Name: s.name})
	}
	c := d.content(b.Body, schema)
	for _, s := range sizes {
		uintAttr(d, c.Attributes[s.name], s.dst, s.name, 1, maxMapEntries)
	}
	if a := c.Attributes["events_ring_kib"]; a != nil {
		var kib uint32
		if uintAttr(d, a, &kib, "events_ring_kib", 4, 262144) {
			if kib&(kib-1) != 0 {
				d.errorf(a.Expr.Range(), "Invalid events_ring_kib", "events_ring_kib must be a power of two (the ring buffer is a power-of-two number of pages); got %d.", kib)
			} else {
				m.EventsRingKiB = kib
			}
		}
	}
	for name, a := range c.Attributes {
		record(cfg, "maps."+name, a)
	}
}

// record notes in cfg.Set where attribute a (if present) sets key.
func record(cfg *Config, key string, a *hcl.Attribute) {
	if a == nil {
		return
	}
	if cfg.Set == nil {
		cfg.Set = map[string]Setting{}
	}
	cfg.Set[key] = Setting{Range: a.Range, Value: a.Expr.Range()}
}

// weightField is a reputation weight's key and its field.
type weightField struct {
	key string
	dst *float64
}

// weightFields lists the reputation weights of w in documentation order.
func weightFields(w *Weights) []weightField {
	return []weightField{
		{"rate_anomaly", &w.RateAnomaly},
		{"syn_ratio", &w.SYNRatio},
		{"port_scan", &w.PortScan},
		{"ratelimit_drops", &w.RatelimitDrops},
		{"malformed", &w.Malformed},
		{"repeat", &w.Repeat},
		{"port_scan_long", &w.PortScanLong},
		{"horizontal_scan", &w.HorizontalScan},
		{"uniform_flood", &w.UniformFlood},
	}
}

// reputation decodes the reputation block; it returns the max_verdicts attribute, if set.
func (d *decoder) reputation(b *hcl.Block, r *Reputation) *hcl.Attribute {
	c := d.content(b.Body, &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{
			{Name: "mode"}, {Name: "interval"}, {Name: "throttle_score"}, {Name: "block_score"},
			{Name: "throttle_for"}, {Name: "block_for"}, {Name: "max_block_for"}, {Name: "max_verdicts"},
			{Name: "protect"}, {Name: "weights"}, {Name: "scan_window"},
		},
		Blocks: []hcl.BlockHeaderSchema{{Type: "weights"}},
	})
	attrs := c.Attributes
	d.enumAttr(attrs["mode"], &r.Mode, "enforce", "shadow", "off")
	d.durationAttr(attrs["interval"], &r.Interval, 100*time.Millisecond, time.Hour)
	d.durationAttr(attrs["scan_window"], &r.ScanWindow, time.Second, time.Hour)
	// Each pair is checked only when both values are valid, so one mistake gives one error.
	ts, bs := attrs["throttle_score"], attrs["block_score"]
	tsOK := ts == nil || uintAttr(d, ts, &r.ThrottleScore, "throttle_score", 1, 100)
	bsOK := bs == nil || uintAttr(d, bs, &r.BlockScore, "block_score", 1, 100)
	if tsOK && bsOK && r.ThrottleScore > r.BlockScore {
		a := ts
		if a == nil {
			a = bs
		}
		d.errorf(a.Expr.Range(), "Invalid "+a.Name, "throttle_score (%d) must not exceed block_score (%d).", r.ThrottleScore, r.BlockScore)
	}
	d.durationAttr(attrs["throttle_for"], &r.ThrottleFor, time.Second, math.MaxInt64)
	bf, mbf := attrs["block_for"], attrs["max_block_for"]
	bfOK := bf == nil || d.durationAttr(bf, &r.BlockFor, time.Second, math.MaxInt64)
	mbfOK := mbf == nil || d.durationAttr(mbf, &r.MaxBlockFor, time.Second, math.MaxInt64)
	if bfOK && mbfOK && r.MaxBlockFor < r.BlockFor {
		a := mbf
		if a == nil {
			a = bf
		}
		d.errorf(a.Expr.Range(), "Invalid "+a.Name, "max_block_for (%s) must be at least block_for (%s).", r.MaxBlockFor, r.BlockFor)
	}
	uintAttr(d, attrs["max_verdicts"], &r.MaxVerdicts, "max_verdicts", 1, maxMapEntries)
	r.Protect = d.prefixesAttr(attrs["protect"])

	// weights is accepted both as a map attribute (weights = { ... }) and as a block (weights { ... }).
	var pairs []hcl.KeyValuePair
	if a := attrs["weights"]; a != nil {
		pairs = d.mapPairs(a)
	}
	for i, wb := range c.Blocks {
		if i > 0 || attrs["weights"] != nil {
			d.errorf(wb.DefRange, "Duplicate weights", "weights is already set in this reputation block.")
			continue
		}
		wattrs, diags := wb.Body.JustAttributes()
		d.diags = append(d.diags, diags...)
		for _, a := range sortedAttrs(wattrs) {
			pairs = append(pairs, hcl.KeyValuePair{Key: hcl.StaticExpr(cty.StringVal(a.Name), a.NameRange), Value: a.Expr})
		}
	}
	fields := weightFields(&r.Weights)
	weights := weightMap(d, pairs, "Unknown weight", func(key string) (*float64, error) {
		keys := make([]string, len(fields))
		for i, f := range fields {
			if f.key == key {
				return f.dst, nil
			}
			keys[i] = f.key
		}
		return nil, fmt.Errorf("%q is not a reputation weight; the weights are: %s", key, strings.Join(keys, ", "))
	})
	for dst, w := range weights {
		*dst = w
	}
	return attrs["max_verdicts"]
}

// sortedAttrs returns attrs in source order.
func sortedAttrs(attrs hcl.Attributes) []*hcl.Attribute {
	out := make([]*hcl.Attribute, 0, len(attrs))
	for _, a := range attrs {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b *hcl.Attribute) int { return a.Range.Start.Byte - b.Range.Start.Byte })
	return out
}

// feedFormats are the supported feed formats.
var feedFormats = []string{"spamhaus", "spamhaus-json", "netset", "plain", "abuseipdb-json"}

// feeds decodes the feed blocks.
func (d *decoder) feeds(blocks hcl.Blocks, cfg *Config) {
	seen := map[string]hcl.Range{}
	for _, b := range blocks {
		errs := d.errors()
		name := b.Labels[0]
		d.checkName(b, "feed")
		if first, dup := seen[name]; dup {
			d.errorf(b.LabelRanges[0], "Duplicate feed name", "Feed %q is already defined at %s.", name, at(first))
		} else {
			seen[name] = b.DefRange
		}
		f := d.feed(b)
		if d.errors() == errs {
			cfg.Feeds = append(cfg.Feeds, f)
		}
	}
}

// feed decodes one feed block.
func (d *decoder) feed(b *hcl.Block) Feed {
	c := d.content(b.Body, &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "url"}, {Name: "path"}, {Name: "format", Required: true}, {Name: "refresh"}, {Name: "action"},
		{Name: "weight"}, {Name: "max_entries"}, {Name: "min_confidence"}, {Name: "allow_shrink"},
	}})
	attrs := c.Attributes
	f := Feed{Name: b.Labels[0], Refresh: time.Hour, Action: "block", MaxEntries: 1_000_000, MinConfidence: 75, Range: b.DefRange}
	switch u, p := attrs["url"], attrs["path"]; {
	case u != nil && p != nil:
		d.errorf(p.Range, "Conflicting feed source", "A feed has either url or path, not both; url is set at %s.", at(u.Range))
	case u == nil && p == nil:
		d.errorf(b.DefRange, "Missing feed source", "A feed needs url (http or https) or path.")
	case u != nil:
		d.feedURL(u, &f.URL)
	default:
		if d.fileAttr(p, &f.Path) {
			d.checkFeedFile(p, f.Path)
		}
	}
	d.enumAttr(attrs["format"], &f.Format, feedFormats...)
	d.durationAttr(attrs["refresh"], &f.Refresh, time.Minute, math.MaxInt64)
	actionOK := attrs["action"] == nil || d.enumAttr(attrs["action"], &f.Action, "block", "score")
	switch w := attrs["weight"]; {
	case !actionOK:
	case f.Action == "score" && w == nil:
		d.errorf(b.DefRange, "Missing weight", `A feed with action = "score" needs a weight in (0, 100].`)
	case f.Action == "score":
		d.floatAttr(w, &f.Weight, 0, maxWeight, true)
	case w != nil:
		// A warning, not an error: the example config in the reputation issue sets weight next to action = "block".
		d.warnf(w.Range, "Weight ignored", `weight only applies to action = "score"; with action = "block" (the default) the feed blocks directly.`)
	}
	uintAttr(d, attrs["max_entries"], &f.MaxEntries, "max_entries", 1, maxMapEntries)
	if a := attrs["min_confidence"]; a != nil {
		if attrs["format"] != nil && f.Format != "" && f.Format != "abuseipdb-json" {
			d.errorf(a.Range, "min_confidence not allowed", `min_confidence only applies to format = "abuseipdb-json", not %q.`, f.Format)
		}
		uintAttr(d, a, &f.MinConfidence, "min_confidence", 0, 100)
	}
	d.boolAttr(attrs["allow_shrink"], &f.AllowShrink)
	return f
}

// feedURL stores attribute a in dst if it is an absolute http or https URL.
func (d *decoder) feedURL(a *hcl.Attribute, dst *string) {
	var s string
	if !d.stringAttr(a, &s) {
		return
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		d.errorf(a.Expr.Range(), "Invalid url", "%q is not a URL: %s", s, err)
	case u.Scheme != "http" && u.Scheme != "https":
		d.errorf(a.Expr.Range(), "Invalid url", "%q must be an http or https URL.", s)
	case u.Host == "":
		d.errorf(a.Expr.Range(), "Invalid url", "%q has no host.", s)
	default:
		*dst = s
	}
}

var countryRE = regexp.MustCompile(`^[A-Z]{2}$`)

// geoip decodes the geoip block.
func (d *decoder) geoip(b *hcl.Block, cfg *Config) {
	g := &cfg.GeoIP
	c := d.content(b.Body, &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "country_database"}, {Name: "asn_database"}, {Name: "country_weights"}, {Name: "asn_weights"},
	}})
	attrs := c.Attributes
	d.database(attrs["country_database"], &g.CountryDatabase)
	d.database(attrs["asn_database"], &g.ASNDatabase)
	record(cfg, "geoip.country_database", attrs["country_database"])
	record(cfg, "geoip.asn_database", attrs["asn_database"])
	if a := attrs["country_weights"]; a != nil {
		if attrs["country_database"] == nil {
			d.errorf(a.Range, "Missing country_database", "country_weights needs country_database to look countries up.")
		}
		g.CountryWeights = weightMap(d, d.mapPairs(a), "Invalid country code", func(key string) (string, error) {
			if !countryRE.MatchString(key) {
				return "", fmt.Errorf("%q is not a country code: use the two-letter uppercase ISO 3166-1 code, as in \"DE\"", key)
			}
			return key, nil
		})
	}
	if a := attrs["asn_weights"]; a != nil {
		if attrs["asn_database"] == nil {
			d.errorf(a.Range, "Missing asn_database", "asn_weights needs asn_database to look ASNs up.")
		}
		g.ASNWeights = weightMap(d, d.mapPairs(a), "Invalid ASN", func(key string) (uint32, error) {
			n, err := strconv.ParseUint(key, 10, 32)
			if err != nil || !isDigits(key) || n == 0 {
				return 0, fmt.Errorf("%q is not an AS number: use a decimal number 1-4294967295, as in \"64496\"", key)
			}
			return uint32(n), nil
		})
	}
}

// mapPairs returns the key/value expressions of map attribute a, which must be written out in the config.
func (d *decoder) mapPairs(a *hcl.Attribute) []hcl.KeyValuePair {
	pairs, diags := hcl.ExprMap(a.Expr)
	if diags.HasErrors() {
		d.errorf(a.Expr.Range(), "Unsuitable value type", `%s must be a map, as in %s = { "key" = 1 }.`, a.Name, a.Name)
	}
	return pairs
}

// weightMap decodes key/value pairs into weights in 0..100. parseKey validates and normalises a key; its error is
// reported under summary at the key. A key given twice (after normalisation) is an error.
func weightMap[K comparable](d *decoder, pairs []hcl.KeyValuePair, summary string, parseKey func(string) (K, error)) map[K]float64 {
	out := map[K]float64{}
	seen := map[K]bool{}
	for _, p := range pairs {
		s, ok := d.str(p.Key)
		if !ok {
			continue
		}
		key, err := parseKey(s)
		if err != nil {
			d.errorf(p.Key.Range(), summary, "%s", err)
			continue
		}
		if seen[key] {
			d.errorf(p.Key.Range(), "Duplicate key", "%q is set twice.", s)
			continue
		}
		seen[key] = true
		var w float64
		if v, ok := d.value(p.Value, cty.Number); ok && d.checkFloat(p.Value.Range(), "weight", v.AsBigFloat(), &w, 0, maxWeight, false) {
			out[key] = w
		}
	}
	return out
}

// database stores attribute a, if present, as the absolute path of an existing regular file (a MaxMind
// database: the host checks of agent/desired open it as the agent does), in dst. Offline, the file is not looked at.
func (d *decoder) database(a *hcl.Attribute, dst *string) {
	d.existingFile(a, dst, "database")
}

// existingFile stores attribute a, if present, as the absolute path of an existing regular file in dst; what
// names the file in messages. Offline, the file is not looked at.
func (d *decoder) existingFile(a *hcl.Attribute, dst *string, what string) bool {
	var p string
	if !d.fileAttr(a, &p) {
		return false
	}
	if d.opts.Offline {
		*dst = p
		return true
	}
	st, err := os.Stat(p)
	switch {
	case os.IsNotExist(err):
		d.errorf(a.Expr.Range(), "Missing "+what, "%s does not exist.", p)
		return false
	case err != nil:
		d.errorf(a.Expr.Range(), "Cannot read "+what, "%s", err)
		return false
	case !st.Mode().IsRegular():
		d.errorf(a.Expr.Range(), "Cannot read "+what, "%s is not a regular file.", p)
		return false
	}
	*dst = p
	return true
}

// checkFeedFile warns when a feed's file cannot be read on this host (not offline): the agent starts anyway and
// keeps the feed empty until the file can be read, but it is most likely a mistake.
func (d *decoder) checkFeedFile(a *hcl.Attribute, path string) {
	if d.opts.Offline {
		return
	}
	f, err := os.Open(path)
	if err == nil {
		var st os.FileInfo
		if st, err = f.Stat(); err == nil && !st.Mode().IsRegular() {
			err = fmt.Errorf("%s is not a regular file", path)
		}
		f.Close()
	}
	if err != nil {
		d.warnf(a.Expr.Range(), "Cannot read feed file", "%s; the feed stays empty until the file can be read.", err)
	}
}
