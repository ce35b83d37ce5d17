package fleet

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"
)

// Bounds of one value in the bucket.
const (
	MaxValueSize = 4096 // bytes of a value (binary, or legacy JSON)
	MaxReasonLen = 256  // bytes of Verdict.Reason
	MaxOriginLen = 32
	// ttlSlack is how far beyond MaxTTL a received verdict's life may
	// reach (clock differences between hosts) before it is refused.
	ttlSlack = time.Minute
)

// The binary value, version 1, big-endian, fixed layout then three
// length-prefixed strings:
//
//	0      version (1)
//	1      action: 1 throttle, 2 block, 3 revoke
//	2      family: 4 or 6
//	3      prefix length
//	4..    address: 4 or 16 bytes (A)
//	4+A    score, uint16
//	6+A    issued_at, int64 unix ns
//	14+A   expires, int64 unix ns
//	22+A   issuer: length byte, then the bytes
//	       origin: length byte, then the bytes
//	       reason: uint16 length, then the bytes
//
// Nothing may follow. A value whose first byte is '{' is the JSON of
// Verdict that the first releases wrote; it is still read.
const (
	valueV1      = 1
	valueFixedV1 = 22 // bytes of a v1 value's fixed part, the address excluded
)

// Action codes of the binary value.
var (
	actionCode = map[Action]byte{ActionThrottle: 1, ActionBlock: 2, ActionRevoke: 3}
	codeAction = [...]Action{1: ActionThrottle, 2: ActionBlock, 3: ActionRevoke}
)

// check validates a verdict as Publish takes it and as it is read from the
// bucket: it returns one of the Refused* reasons and the error, or "".
func check(v Verdict, maxTTL time.Duration) (string, error) {
	switch v.Action {
	case ActionBlock, ActionThrottle, ActionRevoke:
	default:
		return RefusedInvalid, fmt.Errorf("action %q: want block, throttle or revoke", v.Action)
	}
	if !v.Target.IsValid() || v.Target.Masked() != v.Target {
		return RefusedInvalid, fmt.Errorf("target %v: want a valid masked prefix", v.Target)
	}
	if err := ValidNode(v.Issuer); err != nil {
		return RefusedInvalid, fmt.Errorf("issuer: %w", err)
	}
	if len(v.Reason) > MaxReasonLen || len(v.Origin) > MaxOriginLen {
		return RefusedInvalid, fmt.Errorf("reason or origin longer than %d or %d bytes", MaxReasonLen, MaxOriginLen)
	}
	if v.IssuedAt.Before(time.Unix(0, 0)) || v.Expires.After(time.Unix(0, math.MaxInt64)) {
		return RefusedInvalid, fmt.Errorf("issued_at %s or expires %s out of range", v.IssuedAt, v.Expires)
	}
	if !v.Expires.After(v.IssuedAt) {
		return RefusedTTL, fmt.Errorf("expires %s is not after issued_at %s", v.Expires, v.IssuedAt)
	}
	if life := v.Expires.Sub(v.IssuedAt); life > maxTTL+ttlSlack {
		return RefusedTTL, fmt.Errorf("life %s is beyond max_ttl %s", life, maxTTL)
	}
	return "", nil
}

// EncodeValue is a verdict's value in the bucket (binary, version 1). It
// fails on what the format cannot hold: an unknown action, an invalid
// target, strings over their bounds.
func EncodeValue(v Verdict) ([]byte, error) {
	code, ok := actionCode[v.Action]
	if !ok {
		return nil, fmt.Errorf("encode verdict: action %q", v.Action)
	}
	if !v.Target.IsValid() {
		return nil, errors.New("encode verdict: no target")
	}
	if len(v.Issuer) > MaxNodeLen || len(v.Origin) > MaxOriginLen || len(v.Reason) > MaxReasonLen {
		return nil, fmt.Errorf("encode verdict: issuer, origin or reason over %d, %d or %d bytes",
			MaxNodeLen, MaxOriginLen, MaxReasonLen)
	}
	addr := v.Target.Addr()
	fam := byte(4)
	if addr.Is6() {
		fam = 6
	}
	b := make([]byte, 0, valueFixedV1+16+4+len(v.Issuer)+len(v.Origin)+len(v.Reason))
	b = append(b, valueV1, code, fam, byte(v.Target.Bits()))
	b = append(b, addr.AsSlice()...)
	b = binary.BigEndian.AppendUint16(b, v.Score)
	b = binary.BigEndian.AppendUint64(b, uint64(v.IssuedAt.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(v.Expires.UnixNano()))
	b = append(b, byte(len(v.Issuer)))
	b = append(b, v.Issuer...)
	b = append(b, byte(len(v.Origin)))
	b = append(b, v.Origin...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(v.Reason)))
	b = append(b, v.Reason...)
	return b, nil
}

// encode is EncodeValue within MaxValueSize, as Publish and send use it.
func encode(v Verdict) ([]byte, error) {
	b, err := EncodeValue(v)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxValueSize {
		return nil, fmt.Errorf("encoded verdict is %d bytes, over %d", len(b), MaxValueSize)
	}
	return b, nil
}

// DecodeValue reads a value of the bucket, binary or legacy JSON, without
// checking it against its key or the bounds of check. It never panics.
func DecodeValue(data []byte) (Verdict, error) {
	if len(data) > MaxValueSize {
		return Verdict{}, fmt.Errorf("value is %d bytes, over %d", len(data), MaxValueSize)
	}
	if len(data) > 0 && data[0] == '{' {
		var v Verdict
		if err := json.Unmarshal(data, &v); err != nil {
			return Verdict{}, fmt.Errorf("legacy JSON value: %w", err)
		}
		return v, nil
	}
	return decodeV1(data, "")
}

// errShort is a binary value that ends before its layout does.
var errShort = errors.New("binary value truncated")

// decodeV1 reads a binary value of version 1; an issuer equal to issuer
// (the key's) is that string, not a copy.
func decodeV1(b []byte, issuer string) (Verdict, error) {
	var v Verdict
	if len(b) < 4 {
		return v, errShort
	}
	if b[0] != valueV1 {
		return v, fmt.Errorf("value format version %d: want %d", b[0], valueV1)
	}
	if int(b[1]) >= len(codeAction) || codeAction[b[1]] == "" {
		return v, fmt.Errorf("action code %d", b[1])
	}
	v.Action = codeAction[b[1]]
	var n int
	switch b[2] {
	case 4:
		n = 4
	case 6:
		n = 16
	default:
		return v, fmt.Errorf("address family %d: want 4 or 6", b[2])
	}
	bits := int(b[3])
	if bits > 8*n {
		return v, fmt.Errorf("prefix length %d over %d", bits, 8*n)
	}
	if len(b) < valueFixedV1+n+4 { // with the three string lengths
		return v, errShort
	}
	addr, _ := netip.AddrFromSlice(b[4 : 4+n])
	v.Target = netip.PrefixFrom(addr, bits)
	b = b[4+n:]
	v.Score = binary.BigEndian.Uint16(b)
	v.IssuedAt = time.Unix(0, int64(binary.BigEndian.Uint64(b[2:]))).UTC()
	v.Expires = time.Unix(0, int64(binary.BigEndian.Uint64(b[10:]))).UTC()
	b = b[18:]
	var name, origin, reason []byte
	var ok bool
	if name, b, ok = cutString(b, int(b[0]), 1); !ok {
		return v, errShort
	}
	if len(b) < 1 {
		return v, errShort
	}
	if origin, b, ok = cutString(b, int(b[0]), 1); !ok {
		return v, errShort
	}
	if len(b) < 2 {
		return v, errShort
	}
	if reason, b, ok = cutString(b, int(binary.BigEndian.Uint16(b)), 2); !ok {
		return v, errShort
	}
	if len(b) != 0 {
		return v, fmt.Errorf("%d bytes after the value", len(b))
	}
	if len(name) > MaxNodeLen || len(origin) > MaxOriginLen || len(reason) > MaxReasonLen {
		return v, fmt.Errorf("issuer, origin or reason over %d, %d or %d bytes", MaxNodeLen, MaxOriginLen, MaxReasonLen)
	}
	v.Issuer = issuer
	if string(name) != issuer {
		v.Issuer = string(name)
	}
	v.Origin, v.Reason = internOrigin(origin), string(reason)
	return v, nil
}

// cutString splits the n bytes after a length prefix of size bytes off b.
func cutString(b []byte, n, size int) (s, rest []byte, ok bool) {
	if len(b) < size+n {
		return nil, nil, false
	}
	return b[size : size+n], b[size+n:], true
}

// internOrigin returns the usual origins without allocating.
func internOrigin(b []byte) string {
	for _, o := range [...]string{"scorer", "cli", "aggregate"} {
		if string(b) == o {
			return o
		}
	}
	return string(b)
}

// decode reads the value stored under key: the verdict, or the refusal
// reason and error when it is oversized, undecodable, inconsistent with its
// key or out of bounds. It never panics on any input.
func decode(key string, data []byte, maxTTL time.Duration) (Verdict, string, error) {
	issuer, target, err := ParseKey(key)
	if err != nil {
		return Verdict{}, RefusedInvalid, err
	}
	var v Verdict
	if len(data) > 0 && data[0] == valueV1 && len(data) <= MaxValueSize {
		v, err = decodeV1(data, issuer)
	} else {
		v, err = DecodeValue(data)
	}
	if err != nil {
		return v, RefusedInvalid, fmt.Errorf("value of %s: %w", key, err)
	}
	if v.Issuer != issuer || v.Target != target {
		return v, RefusedInvalid, fmt.Errorf("value of %s names issuer %q and target %v", key, v.Issuer, v.Target)
	}
	if reason, err := check(v, maxTTL); err != nil {
		return v, reason, fmt.Errorf("value of %s: %w", key, err)
	}
	return v, "", nil
}
