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
}

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
	c := d.content(b.Body, &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "detect"}, {Name: "ttl"}}})
	d.enumAttr(c.Attributes["detect"], &s.Detect, "off", "shadow", "enforce")
	d.durationAttr(c.Attributes["ttl"], &s.TTL, 10*time.Second, time.Hour)
}
