package config

import (
	"fmt"
	"math"
	"math/big"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// decoder turns HCL bodies into Config values, collecting diagnostics.
type decoder struct {
	opts  Options
	dir   string // directory of the config file, for relative paths
	diags hcl.Diagnostics
}

// errorf records an error diagnostic about subject. The detail is made a sentence: a full stop is added unless it
// already ends in one or in a question mark.
func (d *decoder) errorf(subject hcl.Range, summary, format string, args ...any) {
	detail := fmt.Sprintf(format, args...)
	if !strings.HasSuffix(detail, ".") && !strings.HasSuffix(detail, "?") {
		detail += "."
	}
	d.diags = append(d.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   detail,
		Subject:  subject.Ptr(),
	})
}

// warnf records a warning diagnostic about subject, worded as errorf words errors.
func (d *decoder) warnf(subject hcl.Range, summary, format string, args ...any) {
	d.errorf(subject, summary, format, args...)
	d.diags[len(d.diags)-1].Severity = hcl.DiagWarning
}

// errors counts the errors recorded so far; comparing counts tells whether a step found a problem.
func (d *decoder) errors() int {
	n := 0
	for _, diag := range d.diags {
		if diag.Severity == hcl.DiagError {
			n++
		}
	}
	return n
}

// content decodes body against schema; unknown attributes and blocks are reported by HCL.
func (d *decoder) content(body hcl.Body, schema *hcl.BodySchema) *hcl.BodyContent {
	c, diags := body.Content(schema)
	d.diags = append(d.diags, diags...)
	return c
}

// value evaluates expr (no variables are available; the function env is) and converts it to ty.
func (d *decoder) value(expr hcl.Expression, ty cty.Type) (cty.Value, bool) {
	v, diags := expr.Value(evalContext)
	d.diags = append(d.diags, diags...)
	if diags.HasErrors() {
		return cty.NilVal, false
	}
	if v.IsNull() {
		d.errorf(expr.Range(), "Unsuitable value type", "Unsuitable value: a %s is required, not null.", ty.FriendlyName())
		return cty.NilVal, false
	}
	v, err := convert.Convert(v, ty)
	if err != nil {
		d.errorf(expr.Range(), "Unsuitable value type", "Unsuitable value: %s", err)
		return cty.NilVal, false
	}
	return v, true
}

// str evaluates expr as a string.
func (d *decoder) str(expr hcl.Expression) (string, bool) {
	v, ok := d.value(expr, cty.String)
	if !ok {
		return "", false
	}
	return v.AsString(), true
}

// stringAttr stores attribute a, if present and a string, in dst.
func (d *decoder) stringAttr(a *hcl.Attribute, dst *string) bool {
	if a == nil {
		return false
	}
	s, ok := d.str(a.Expr)
	if ok {
		*dst = s
	}
	return ok
}

// boolAttr stores attribute a, if present and a bool, in dst.
func (d *decoder) boolAttr(a *hcl.Attribute, dst *bool) {
	if a == nil {
		return
	}
	if v, ok := d.value(a.Expr, cty.Bool); ok {
		*dst = v.True()
	}
}

// enumAttr stores attribute a, if present and one of allowed, in dst.
func (d *decoder) enumAttr(a *hcl.Attribute, dst *string, allowed ...string) bool {
	var s string
	if !d.stringAttr(a, &s) {
		return false
	}
	for _, v := range allowed {
		if s == v {
			*dst = s
			return true
		}
	}
	d.errorf(a.Expr.Range(), "Invalid "+a.Name, "%q is not a valid %s; use one of: %s.", s, a.Name, strings.Join(allowed, ", "))
	return false
}

// uintAttr stores attribute a, if present and a whole number in [lo, hi], in dst. what names the value in messages.
func uintAttr[T ~int | ~uint32 | ~uint64](d *decoder, a *hcl.Attribute, dst *T, what string, lo, hi uint64) bool {
	if a == nil {
		return false
	}
	v, ok := d.value(a.Expr, cty.Number)
	if !ok {
		return false
	}
	f := v.AsBigFloat()
	summary := "Invalid " + a.Name
	if !f.IsInt() {
		d.errorf(a.Expr.Range(), summary, "%s must be a whole number; got %s.", what, formatNumber(f))
		return false
	}
	n, acc := f.Uint64()
	switch {
	case f.Sign() < 0 || n < lo:
		if lo == 1 {
			d.errorf(a.Expr.Range(), summary, "%s must be > 0; got %s.", what, formatNumber(f))
		} else {
			d.errorf(a.Expr.Range(), summary, "%s must be at least %d; got %s.", what, lo, formatNumber(f))
		}
		return false
	case acc != big.Exact || n > hi:
		d.errorf(a.Expr.Range(), summary, "%s must be at most %d; got %s.", what, hi, formatNumber(f))
		return false
	}
	*dst = T(n)
	return true
}

// floatAttr stores attribute a, if present and a number in [lo, hi] (or (lo, hi] when loOpen), in dst.
func (d *decoder) floatAttr(a *hcl.Attribute, dst *float64, lo, hi float64, loOpen bool) bool {
	if a == nil {
		return false
	}
	v, ok := d.value(a.Expr, cty.Number)
	if !ok {
		return false
	}
	return d.checkFloat(a.Expr.Range(), a.Name, v.AsBigFloat(), dst, lo, hi, loOpen)
}

// checkFloat stores f in dst if it is in [lo, hi] (or (lo, hi] when loOpen); name names the value in messages.
func (d *decoder) checkFloat(rng hcl.Range, name string, f *big.Float, dst *float64, lo, hi float64, loOpen bool) bool {
	x, _ := f.Float64()
	switch {
	case loOpen && x <= lo:
		d.errorf(rng, "Invalid "+name, "%s must be > %g; got %s.", name, lo, formatNumber(f))
	case x < lo:
		d.errorf(rng, "Invalid "+name, "%s must be at least %g; got %s.", name, lo, formatNumber(f))
	case x > hi:
		d.errorf(rng, "Invalid "+name, "%s must be at most %g; got %s.", name, hi, formatNumber(f))
	default:
		*dst = x
		return true
	}
	return false
}

// formatNumber renders f for messages: whole numbers in decimal, others in the shortest exact form.
func formatNumber(f *big.Float) string {
	if f.IsInt() && f.MantExp(nil) <= 64 {
		return f.Text('f', 0)
	}
	return f.Text('g', -1)
}

// durationAttr stores attribute a, if present and a duration in [lo, hi], in dst.
func (d *decoder) durationAttr(a *hcl.Attribute, dst *time.Duration, lo, hi time.Duration) bool {
	var s string
	if !d.stringAttr(a, &s) {
		return false
	}
	v, err := ParseDuration(s)
	switch {
	case err != nil:
		d.errorf(a.Expr.Range(), "Invalid duration", "%s", err)
	case v < lo:
		d.errorf(a.Expr.Range(), "Invalid "+a.Name, "%s must be at least %s; got %q.", a.Name, lo, s)
	case v > hi:
		d.errorf(a.Expr.Range(), "Invalid "+a.Name, "%s must be at most %s; got %q.", a.Name, hi, s)
	default:
		*dst = v
		return true
	}
	return false
}

// maxDays is the largest day count whose duration fits in a time.Duration.
const maxDays = math.MaxInt64 / int64(24*time.Hour)

// ParseDuration is time.ParseDuration plus a leading whole number of days, as in "7d" or "1d12h": the
// durations of the config, also taken by the CLI (block add --ttl).
func ParseDuration(s string) (time.Duration, error) {
	bad := fmt.Errorf("bad duration %q: use a number with a unit: ms, s, m, h or d, as in \"500ms\", \"90s\", \"5m\", \"1h\", \"7d\" or \"1d12h\"", s)
	var days time.Duration
	rest := s
	if ds, r, ok := strings.Cut(s, "d"); ok {
		n, err := strconv.ParseInt(ds, 10, 64)
		if err != nil || !isDigits(ds) || n > maxDays {
			return 0, bad
		}
		days, rest = time.Duration(n)*24*time.Hour, r
		if rest == "" {
			return days, nil
		}
	}
	v, err := time.ParseDuration(rest)
	if err != nil || v < 0 || v > math.MaxInt64-days {
		return 0, bad
	}
	return days + v, nil
}

// isDigits reports whether s is a non-empty run of ASCII digits.
func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// pathAttr stores attribute a, if present, as an absolute path in dst; "" is stored as is when emptyOK.
// Relative paths are rejected: these are paths of the running agent, not files next to the config.
func (d *decoder) pathAttr(a *hcl.Attribute, dst *string, emptyOK bool) bool {
	var s string
	if !d.stringAttr(a, &s) {
		return false
	}
	switch {
	case s == "" && emptyOK:
	case s == "":
		d.errorf(a.Expr.Range(), "Invalid "+a.Name, "%s must not be empty.", a.Name)
		return false
	case !filepath.IsAbs(s):
		d.errorf(a.Expr.Range(), "Invalid "+a.Name, "%s must be an absolute path; got %q.", a.Name, s)
		return false
	default:
		s = filepath.Clean(s)
	}
	*dst = s
	return true
}

// fileAttr stores attribute a, if present and a non-empty path, in dst, made absolute against the config file's
// directory.
func (d *decoder) fileAttr(a *hcl.Attribute, dst *string) bool {
	var s string
	if !d.stringAttr(a, &s) {
		return false
	}
	if s == "" {
		d.errorf(a.Expr.Range(), "Invalid "+a.Name, "%s must not be empty.", a.Name)
		return false
	}
	*dst = d.resolve(s)
	return true
}

// resolve makes p absolute, relative to the config file's directory.
func (d *decoder) resolve(p string) string {
	if !filepath.IsAbs(p) {
		p = filepath.Join(d.dir, p)
	}
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return filepath.Clean(p)
}

// list returns the element expressions of attribute a, which must be a list written out in the config.
func (d *decoder) list(a *hcl.Attribute) []hcl.Expression {
	exprs, diags := hcl.ExprList(a.Expr)
	if diags.HasErrors() {
		d.errorf(a.Expr.Range(), "Unsuitable value type", `%s must be a list, as in %s = ["a", "b"].`, a.Name, a.Name)
	}
	return exprs
}

// prefixesAttr returns the CIDRs of list attribute a, if present, each normalised by parsePrefix.
func (d *decoder) prefixesAttr(a *hcl.Attribute) []netip.Prefix {
	if a == nil {
		return nil
	}
	out, _ := d.prefixList(a)
	return out
}

// prefixList returns the valid CIDRs of list attribute a and the range of each in the config.
func (d *decoder) prefixList(a *hcl.Attribute) ([]netip.Prefix, []hcl.Range) {
	var out []netip.Prefix
	var ranges []hcl.Range
	for _, e := range d.list(a) {
		s, ok := d.str(e)
		if !ok {
			continue
		}
		p, err := parsePrefix(s)
		if err != nil {
			d.errorf(e.Range(), "Invalid CIDR", "%s", err)
			continue
		}
		out, ranges = append(out, p), append(ranges, e.Range())
	}
	return out, ranges
}

// parsePrefix parses an address ("198.51.100.7", a host: /32 or /128) or a prefix ("198.51.100.0/24"). IPv4-mapped
// IPv6 addresses and prefixes are unmapped to IPv4. A prefix with host bits set is an error.
func parsePrefix(s string) (netip.Prefix, error) {
	addrPart, bitsPart, hasBits := strings.Cut(s, "/")
	addr, err := netip.ParseAddr(addrPart)
	if err != nil || addr.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("bad CIDR %q: want an address or a prefix, as in \"198.51.100.7\", \"198.51.100.0/24\" or \"2001:db8::/32\"", s)
	}
	bits := addr.BitLen()
	if hasBits {
		n, err := strconv.Atoi(bitsPart)
		if err != nil || !isDigits(bitsPart) || n > addr.BitLen() {
			return netip.Prefix{}, fmt.Errorf("bad CIDR %q: prefix length must be 0-%d", s, addr.BitLen())
		}
		bits = n
	}
	if addr.Is4In6() {
		if bits < 96 {
			return netip.Prefix{}, fmt.Errorf("bad CIDR %q: an IPv4-mapped prefix must be at least /96", s)
		}
		addr, bits = addr.Unmap(), bits-96
	}
	p := netip.PrefixFrom(addr, bits)
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("host bits set in %q; did you mean %s?", s, m)
	}
	return p, nil
}

// parsePorts parses "53" or "1000-2000".
func parsePorts(s string) (PortRange, error) {
	loStr, hiStr, isRange := strings.Cut(s, "-")
	if !isRange {
		hiStr = loStr
	}
	if !isDigits(loStr) || !isDigits(hiStr) {
		return PortRange{}, fmt.Errorf("bad port %q: want a port like \"53\" or a range like \"1000-2000\"", s)
	}
	lo, errLo := strconv.ParseUint(loStr, 10, 32)
	hi, errHi := strconv.ParseUint(hiStr, 10, 32)
	switch {
	case errLo != nil || errHi != nil || lo == 0 || hi == 0 || lo > math.MaxUint16 || hi > math.MaxUint16:
		return PortRange{}, fmt.Errorf("port out of range in %q: ports are 1-65535", s)
	case lo > hi:
		return PortRange{}, fmt.Errorf("port range %q is reversed; write \"%d-%d\"", s, hi, lo)
	}
	return PortRange{Lo: uint16(lo), Hi: uint16(hi)}, nil
}

// String renders r as "80" or "80-90".
func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return fmt.Sprintf("%d-%d", r.Lo, r.Hi)
}

// units maps each size or rate unit to its size in bits: bit units count bits, byte units count bytes (8 bits).
var units = map[string]int64{
	"bit": 1, "kbit": 1e3, "Mbit": 1e6, "Gbit": 1e9,
	"B": 8, "KB": 8e3, "MB": 8e6, "GB": 8e9,
	"KiB": 8 << 10, "MiB": 8 << 20, "GiB": 8 << 30,
}

const unitHelp = "use bit, kbit, Mbit or Gbit for bits, or B, KB, MB, GB, KiB, MiB or GiB for bytes " +
	"(SI: k = 1000; units are case-sensitive: b is bits, B is bytes)"

var sizeRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)([A-Za-z]*)$`)

// parseSize parses a number with a unit, as in "100Mbit", "12MB" or "1.5GiB", into whole bytes (rounded down).
func parseSize(s string) (*big.Int, error) {
	m := sizeRE.FindStringSubmatch(s)
	if m == nil {
		return nil, fmt.Errorf("bad size %q: want a number and a unit, as in \"100Mbit\" or \"12MB\"; %s", s, unitHelp)
	}
	if m[2] == "" {
		return nil, fmt.Errorf("bad size %q: missing unit; %s", s, unitHelp)
	}
	bitsPerUnit, ok := units[m[2]]
	if !ok {
		return nil, fmt.Errorf("bad size %q: unknown unit %q; %s", s, m[2], unitHelp)
	}
	r, ok := new(big.Rat).SetString(m[1])
	if !ok {
		return nil, fmt.Errorf("bad size %q: bad number %q", s, m[1])
	}
	r.Mul(r, new(big.Rat).SetFrac64(bitsPerUnit, 8))
	return new(big.Int).Quo(r.Num(), r.Denom()), nil
}

// minByteBurst is one full-size Ethernet frame (1500-byte MTU plus the 14-byte header): a smaller byte bucket
// could never pass such a frame.
const minByteBurst = 1514

// sizeAttr stores attribute a, if present, parsed by parseSize, in dst, in bytes within [lo, math.MaxUint32].
// perSecond selects the wording for a rate.
func (d *decoder) sizeAttr(a *hcl.Attribute, dst *uint64, lo uint64, perSecond bool) bool {
	var s string
	if !d.stringAttr(a, &s) {
		return false
	}
	n, err := parseSize(s)
	rng, summary := a.Expr.Range(), "Invalid "+a.Name
	switch {
	case err != nil:
		d.errorf(rng, summary, "%s", err)
	case n.Sign() == 0 && perSecond:
		d.errorf(rng, summary, "rate must be > 0; got %q.", s)
	case n.Cmp(new(big.Int).SetUint64(lo)) < 0:
		d.errorf(rng, summary, "%s must be at least %d bytes; got %q.", a.Name, lo, s)
	case !n.IsUint64() || n.Uint64() > math.MaxUint32:
		if perSecond {
			d.errorf(rng, summary, "%s must be at most 34.3 Gbit/s per source (4294967295 bytes per second); got %q.", a.Name, s)
		} else {
			d.errorf(rng, summary, "%s must be at most 4294967295 bytes; got %q.", a.Name, s)
		}
	default:
		*dst = n.Uint64()
		return true
	}
	return false
}

// nameRE is the syntax of rule, class and feed names: they become metric label values and CLI arguments.
var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,31}$`)

// checkName reports a block label that is not a valid name.
func (d *decoder) checkName(b *hcl.Block, kind string) bool {
	if !nameRE.MatchString(b.Labels[0]) {
		d.errorf(b.LabelRanges[0], "Invalid "+kind+" name",
			"%q is not a valid %s name: use 1-32 lowercase letters, digits, '_', '.' or '-', starting with a letter or digit.", b.Labels[0], kind)
		return false
	}
	return true
}

// at renders the start of rng as "file:line:col" for messages that point at a second place.
func at(rng hcl.Range) string {
	return fmt.Sprintf("%s:%d:%d", rng.Filename, rng.Start.Line, rng.Start.Column)
}
