package importfmt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// jsonErr is a JSON decoding error with its line and column in data.
func jsonErr(data []byte, err error, what string) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	var off int64 = -1
	switch {
	case errors.As(err, &se):
		off = se.Offset
	case errors.As(err, &te):
		off = te.Offset
	}
	if off < 0 || off > int64(len(data)) {
		return fmt.Errorf("%s: %w", what, err)
	}
	before := data[:off]
	line := bytes.Count(before, []byte("\n")) + 1
	col := len(before) - bytes.LastIndexByte(before, '\n') - 1 // the offset is just after the bad byte
	return &Error{Line: line, Col: col, Err: fmt.Errorf("%s: %w", what, err)}
}

// nftSet is a set object of nft's JSON.
type nftSet struct {
	Family string            `json:"family"`
	Table  string            `json:"table"`
	Name   string            `json:"name"`
	Type   json.RawMessage   `json:"type"`
	Elem   []json.RawMessage `json:"elem"`
}

// parseNFT reads `nft -j list set`, `list sets` or `list ruleset` output:
// the elements of every set (or of the sets named) of type ipv4_addr or
// ipv6_addr.
func parseNFT(data []byte, b *builder, want []string) error {
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return jsonErr(data, err, "nft JSON")
	}
	if doc.Nftables == nil {
		return errors.New(`nft JSON: no "nftables" array (want the output of nft -j list set|sets|ruleset)`)
	}
	found := map[string]bool{}
	for _, obj := range doc.Nftables {
		raw, ok := obj["set"]
		if !ok {
			continue // metainfo, tables, chains, rules, maps
		}
		var s nftSet
		if err := json.Unmarshal(raw, &s); err != nil {
			return fmt.Errorf("nft JSON: a set: %w", err)
		}
		at := fmt.Sprintf("set %s %s %s", s.Family, s.Table, s.Name)
		if !selected(want, s.Name) {
			continue
		}
		var typ string
		if json.Unmarshal(s.Type, &typ) != nil || (typ != "ipv4_addr" && typ != "ipv6_addr") {
			if len(want) > 0 {
				return fmt.Errorf("%s is of type %s: its elements are not addresses", at, s.Type)
			}
			b.notef("%s skipped: type %s holds no plain addresses", at, s.Type)
			continue
		}
		found[s.Name] = true
		for i, e := range s.Elem {
			ps, err := nftElem(e, 0)
			if err != nil {
				return &Error{At: fmt.Sprintf("%s, element %d", at, i+1), Err: err}
			}
			for _, p := range ps {
				if (typ == "ipv4_addr") != p.Addr().Is4() {
					return &Error{At: fmt.Sprintf("%s, element %d", at, i+1), Err: fmt.Errorf("%s in a set of type %s", p, typ)}
				}
				if err := b.add(p); err != nil {
					return err
				}
			}
		}
	}
	return missingSets(want, found)
}

// nftElem is the prefixes of one set element: an address, {"prefix":
// {"addr", "len"}}, {"range": [lo, hi]} or {"elem": {"val": ...}} (an
// element with a timeout or a comment).
func nftElem(raw json.RawMessage, depth int) ([]netip.Prefix, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if strings.ContainsAny(s, "/-") {
			return nil, fmt.Errorf("%q is not an IP address", s)
		}
		return parseEntry(s)
	}
	var o struct {
		Prefix *struct {
			Addr string `json:"addr"`
			Len  *int   `json:"len"`
		} `json:"prefix"`
		Range []string `json:"range"`
		Elem  *struct {
			Val json.RawMessage `json:"val"`
		} `json:"elem"`
	}
	if err := json.Unmarshal(raw, &o); err != nil {
		return nil, fmt.Errorf("element %s: want an address, a prefix, a range or an elem", short(raw))
	}
	switch {
	case o.Prefix != nil && o.Prefix.Len != nil:
		return parseEntry(fmt.Sprintf("%s/%d", o.Prefix.Addr, *o.Prefix.Len))
	case len(o.Range) == 2:
		return parseEntry(o.Range[0] + "-" + o.Range[1])
	case o.Elem != nil && depth == 0:
		return nftElem(o.Elem.Val, depth+1)
	}
	return nil, fmt.Errorf("element %s: want an address, a prefix, a range or an elem", short(raw))
}

// short is raw cut to a length fit for an error message.
func short(raw []byte) string {
	if len(raw) > 80 {
		return string(raw[:77]) + "..."
	}
	return string(raw)
}

// csDecision is one decision of `cscli decisions list -o json`.
type csDecision struct {
	Type     string `json:"type"`
	Scope    string `json:"scope"`
	Value    string `json:"value"`
	Origin   string `json:"origin"`
	Scenario string `json:"scenario"`
}

// parseCrowdSec reads `cscli decisions list -o json`: alerts, each with its
// decisions; it takes the ban decisions of scope Ip or Range.
func parseCrowdSec(data []byte, b *builder) error {
	var alerts []struct {
		ID        int64        `json:"id"`
		Decisions []csDecision `json:"decisions"`
	}
	if err := json.Unmarshal(data, &alerts); err != nil {
		return jsonErr(data, err, "cscli decisions JSON")
	}
	skipped := map[string]int{}
	for i, a := range alerts {
		for j, d := range a.Decisions {
			at := fmt.Sprintf("alert %d (id %d), decision %d", i+1, a.ID, j+1)
			scope := strings.ToLower(d.Scope)
			if scope != "ip" && scope != "range" {
				skipped["scope "+d.Scope]++
				continue
			}
			if !strings.EqualFold(d.Type, "ban") {
				skipped["type "+d.Type]++
				continue
			}
			ps, err := parseEntry(d.Value)
			if err != nil {
				return &Error{At: at, Err: err}
			}
			for _, p := range ps {
				if p.Masked() != p {
					return &Error{At: at, Err: fmt.Errorf("%s has host bits set", d.Value)}
				}
				if err := b.add(p); err != nil {
					return err
				}
			}
		}
	}
	whys := make([]string, 0, len(skipped))
	for why := range skipped {
		whys = append(whys, why)
	}
	slices.Sort(whys)
	for _, why := range whys {
		n := skipped[why]
		b.notef("%d decisions of %s skipped (only ban decisions on an Ip or Range are imported)", n, why)
	}
	return nil
}
