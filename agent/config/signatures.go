package config

import (
	"math"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// maxSignatures is how many signature blocks a config may hold: the datapath's table has 16 slots, and detection
// and the CLI need some.
const maxSignatures = 8

// Signature is an attack signature written by hand: a masked-header rule of the datapath's signature table.
type Signature struct {
	// Name is unique and matches ^[a-z0-9][a-z0-9_.-]{0,31}$.
	Name string
	// Match is the signature's fields as key=value words (agent/sigspec reads them; desired checks them).
	Match string
	// Action is "drop" (default), "limit" (PPS and Burst, one bucket for all matching packets) or "count".
	Action string
	// PPS and Burst are the limit of action "limit"; Burst defaults to PPS.
	PPS, Burst uint64
	// Range is the block's header; MatchRange the match attribute's value.
	Range, MatchRange hcl.Range
}

// Signatures configures attack signatures found by detection.
type Signatures struct {
	// Detect is "off" (default), "shadow" (signatures computed, counted and shown, not enforced) or "enforce".
	Detect string `hcl:"detect"`
	// TTL is how long a detected signature lives after the attack was last seen, 10s..1h (default 60s).
	TTL time.Duration `hcl:"ttl"`
	// LimitPPS, when above 0, makes an enforced detected signature hold what it matches to LimitPPS packets per
	// second (one bucket, LimitBurst deep; default LimitPPS) instead of dropping it.
	LimitPPS   uint64 `hcl:"limit_pps"`
	LimitBurst uint64 `hcl:"limit_burst"`
	// MinPPS: a destination below this many packets per second is never anomalous (default 1000).
	MinPPS uint64 `hcl:"min_pps"`
	// Factor: a destination is anomalous above Factor times its learnt rate, calm again below half that (default 8).
	Factor float64 `hcl:"factor"`
	// MinNewSources: ... and with at least this many new sources per second, or half its packets from new
	// sources (default 100).
	MinNewSources uint64 `hcl:"min_new_sources"`
	// SampleEvery: the datapath samples 1 in SampleEvery packets per destination and CPU for detection (default 16).
	SampleEvery uint32 `hcl:"sample_every"`
	// SampleBudget: at most this many samples per CPU per second (default 4096).
	SampleBudget uint32 `hcl:"sample_budget"`
}

// Defaults of the signatures block's detection knobs.
const (
	DefaultSigMinPPS        = 1000
	DefaultSigFactor        = 8
	DefaultSigMinNewSources = 100
	DefaultSigSampleEvery   = 16
	DefaultSigSampleBudget  = 4096
)

// signatures decodes the signature blocks.
func (d *decoder) signatures(blocks hcl.Blocks, cfg *Config) {
	seen := map[string]hcl.Range{}
	for i, b := range blocks {
		if i == maxSignatures {
			d.errorf(b.DefRange, "Too many signatures", "At most %d signature blocks are allowed; this is signature %d.", maxSignatures, i+1)
		}
		name := b.Labels[0]
		errs := d.errors()
		d.checkName(b, "signature")
		if first, dup := seen[name]; dup {
			d.errorf(b.LabelRanges[0], "Duplicate signature name", "Signature %q is already defined at %s.", name, at(first))
		} else {
			seen[name] = b.DefRange
		}
		c := d.content(b.Body, &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
			{Name: "match", Required: true}, {Name: "action"}, {Name: "pps"}, {Name: "burst"},
		}})
		s := Signature{Name: name, Action: "drop", Range: b.DefRange}
		if a := c.Attributes["match"]; a != nil {
			d.stringAttr(a, &s.Match)
			s.MatchRange = a.Expr.Range()
		}
		d.enumAttr(c.Attributes["action"], &s.Action, "drop", "limit", "count")
		uintAttr(d, c.Attributes["pps"], &s.PPS, "pps", 1, math.MaxUint32)
		uintAttr(d, c.Attributes["burst"], &s.Burst, "burst", 1, 1_000_000_000)
		if s.Action == "limit" && s.PPS == 0 {
			d.errorf(b.DefRange, "Missing pps", "Signature %q has action \"limit\": it needs pps.", name)
		}
		if s.Action != "limit" && (s.PPS != 0 || s.Burst != 0) {
			d.errorf(b.DefRange, "Unexpected pps", "pps and burst are for action \"limit\"; signature %q has action %q.", name, s.Action)
		}
		if d.errors() == errs {
			cfg.Signatures = append(cfg.Signatures, s)
		}
	}
}

// signatureDetection decodes the signatures block.
func (d *decoder) signatureDetection(b *hcl.Block, s *Signatures) {
	c := d.content(b.Body, &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "detect"}, {Name: "ttl"},
		{Name: "limit_pps"}, {Name: "limit_burst"}, {Name: "min_pps"}, {Name: "factor"},
		{Name: "min_new_sources"}, {Name: "sample_every"}, {Name: "sample_budget"}}})
	d.enumAttr(c.Attributes["detect"], &s.Detect, "off", "shadow", "enforce")
	d.durationAttr(c.Attributes["ttl"], &s.TTL, 10*time.Second, time.Hour)
	uintAttr(d, c.Attributes["limit_pps"], &s.LimitPPS, "limit_pps", 1, math.MaxUint32)
	uintAttr(d, c.Attributes["limit_burst"], &s.LimitBurst, "limit_burst", 1, 1_000_000_000)
	uintAttr(d, c.Attributes["min_pps"], &s.MinPPS, "min_pps", 1, 1_000_000_000)
	d.floatAttr(c.Attributes["factor"], &s.Factor, 1, 1000, true)
	uintAttr(d, c.Attributes["min_new_sources"], &s.MinNewSources, "min_new_sources", 1, 1_000_000_000)
	uintAttr(d, c.Attributes["sample_every"], &s.SampleEvery, "sample_every", 1, 65536)
	uintAttr(d, c.Attributes["sample_budget"], &s.SampleBudget, "sample_budget", 1, 1_000_000)
	if s.LimitBurst != 0 && s.LimitPPS == 0 {
		d.errorf(b.DefRange, "Missing limit_pps", "The signatures block sets limit_burst: it needs limit_pps.")
	}
	if s.LimitPPS != 0 && s.LimitBurst == 0 {
		s.LimitBurst = s.LimitPPS
	}
}
