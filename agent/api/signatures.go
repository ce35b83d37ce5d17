package api

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// Signature is one attack signature as the API shows it (GET /v1/signatures).
type Signature struct {
	Name    string     `json:"name"`
	Origin  string     `json:"origin"` // config, cli or detect
	Match   string     `json:"match"`  // key=value words (agent/sigspec)
	Action  string     `json:"action"` // drop, limit or count
	PPS     uint64     `json:"pps,omitempty"`
	Burst   uint64     `json:"burst,omitempty"`
	Added   time.Time  `json:"added"`
	Expires *time.Time `json:"expires,omitempty"`
	// Packets matched and dropped (or would drop) since the signature was written, every interface summed.
	Matched uint64 `json:"matched"`
	Dropped uint64 `json:"dropped"`
	// Detection's estimates: the share of the attack sample it matches and of the pre-attack sample.
	Coverage   *float64 `json:"coverage,omitempty"`
	Collateral *float64 `json:"collateral,omitempty"`
	Why        string   `json:"why,omitempty"`
}

// SignatureRequest adds a signature (POST /v1/signatures).
type SignatureRequest struct {
	Name   string `json:"name"`
	Match  string `json:"match"`
	Action string `json:"action"` // drop (default), limit or count
	PPS    uint64 `json:"pps,omitempty"`
	Burst  uint64 `json:"burst,omitempty"`
	TTL    string `json:"ttl,omitempty"` // e.g. "10m"; empty: never expires
}

// Signatures lists the signature table; raw is the reply as received.
func (c *Client) Signatures(ctx context.Context) (ss []Signature, raw []byte, err error) {
	raw, err = c.Do(ctx, http.MethodGet, "/v1/signatures", nil, &ss)
	return ss, raw, err
}

// AddSignature adds (or, for a name it added before, replaces) a signature.
func (c *Client) AddSignature(ctx context.Context, req SignatureRequest) (Signature, error) {
	var out Signature
	_, err := c.Do(ctx, http.MethodPost, "/v1/signatures", req, &out)
	return out, err
}

// DeleteSignature deletes the signature name.
func (c *Client) DeleteSignature(ctx context.Context, name string) (Deleted, error) {
	var out Deleted
	_, err := c.Do(ctx, http.MethodDelete, "/v1/signatures/"+url.PathEscape(name), nil, &out)
	return out, err
}
