package fleet

import (
	"encoding/json"
	"fmt"
	"time"
)

// Bounds of one value in the bucket.
const (
	MaxValueSize = 4096 // bytes of JSON
	MaxReasonLen = 256  // characters of Verdict.Reason
	MaxOriginLen = 32
	// ttlSlack is how far beyond MaxTTL a received verdict's life may
	// reach (clock differences between hosts) before it is refused.
	ttlSlack = time.Minute
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
	if v.IssuedAt.IsZero() || !v.Expires.After(v.IssuedAt) {
		return RefusedTTL, fmt.Errorf("expires %s is not after issued_at %s", v.Expires, v.IssuedAt)
	}
	if life := v.Expires.Sub(v.IssuedAt); life > maxTTL+ttlSlack {
		return RefusedTTL, fmt.Errorf("life %s is beyond max_ttl %s", life, maxTTL)
	}
	return "", nil
}

// encode is a verdict's value in the bucket.
func encode(v Verdict) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode verdict: %w", err)
	}
	if len(b) > MaxValueSize {
		return nil, fmt.Errorf("encoded verdict is %d bytes, over %d", len(b), MaxValueSize)
	}
	return b, nil
}

// decode reads the value stored under key: the verdict, or the refusal
// reason and error when it is oversized, undecodable, inconsistent with its
// key or out of bounds. It never panics on any input.
func decode(key string, data []byte, maxTTL time.Duration) (Verdict, string, error) {
	var v Verdict
	if len(data) > MaxValueSize {
		return v, RefusedInvalid, fmt.Errorf("value of %s is %d bytes, over %d", key, len(data), MaxValueSize)
	}
	issuer, target, err := ParseKey(key)
	if err != nil {
		return v, RefusedInvalid, err
	}
	if err := json.Unmarshal(data, &v); err != nil {
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
