package fleet

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// MaxNodeLen bounds a node (issuer) name.
const MaxNodeLen = 64

// ValidNode reports whether name can be an issuer: 1 to MaxNodeLen of
// [A-Za-z0-9_-], so that it is one subject token and subject permissions
// `$KV.<bucket>.<node>.>` let a host publish only as itself.
func ValidNode(name string) error {
	if name == "" || len(name) > MaxNodeLen {
		return fmt.Errorf("node name %q: want 1 to %d characters", name, MaxNodeLen)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return fmt.Errorf("node name %q: only letters, digits, '_' and '-'", name)
		}
	}
	return nil
}

// Key is the bucket key of issuer's verdict on target: `<issuer>.<token>`,
// the token `4-<8 hex>-<bits>` or `6-<32 hex>-<bits>` of the masked
// prefix.
func Key(issuer string, target netip.Prefix) string {
	target = target.Masked()
	fam := "4"
	if target.Addr().Is6() {
		fam = "6"
	}
	b := target.Addr().AsSlice()
	return issuer + "." + fam + "-" + hex.EncodeToString(b) + "-" + strconv.Itoa(target.Bits())
}

// ParseKey splits a bucket key into its issuer and target; it refuses a
// key that Key would not have written.
func ParseKey(key string) (string, netip.Prefix, error) {
	issuer, tok, ok := strings.Cut(key, ".")
	if !ok {
		return "", netip.Prefix{}, fmt.Errorf("key %q: no issuer", key)
	}
	if err := ValidNode(issuer); err != nil {
		return "", netip.Prefix{}, fmt.Errorf("key %q: %w", key, err)
	}
	fam, rest, ok1 := strings.Cut(tok, "-")
	hexAddr, bitsTok, ok2 := strings.Cut(rest, "-")
	if !ok1 || !ok2 || strings.Contains(bitsTok, "-") {
		return "", netip.Prefix{}, fmt.Errorf("key %q: target token %q is not FAMILY-HEX-BITS", key, tok)
	}
	want := 0
	switch fam {
	case "4":
		want = 4
	case "6":
		want = 16
	}
	var buf [16]byte
	raw := buf[:want]
	if want == 0 || len(hexAddr) != 2*want || !lowerHex(hexAddr) {
		return "", netip.Prefix{}, fmt.Errorf("key %q: bad address in target token %q", key, tok)
	}
	if _, err := hex.Decode(raw, []byte(hexAddr)); err != nil {
		return "", netip.Prefix{}, fmt.Errorf("key %q: bad address in target token %q", key, tok)
	}
	bits, err := strconv.Atoi(bitsTok)
	if err != nil || bits < 0 || bits > 8*want || strconv.Itoa(bits) != bitsTok {
		return "", netip.Prefix{}, fmt.Errorf("key %q: bad prefix length in target token %q", key, tok)
	}
	addr, _ := netip.AddrFromSlice(raw)
	p := netip.PrefixFrom(addr, bits)
	if p.Masked() != p {
		return "", netip.Prefix{}, errors.New("key " + strconv.Quote(key) + ": target has host bits set")
	}
	return issuer, p, nil
}

// lowerHex reports whether s has no upper-case hex digits (Key writes
// lower case only, so each target has one key).
func lowerHex(s string) bool {
	for i := range len(s) {
		if s[i] >= 'A' && s[i] <= 'F' {
			return false
		}
	}
	return true
}
