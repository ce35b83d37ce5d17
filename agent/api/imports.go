package api

import (
	"context"
	"net/http"
	"net/url"
)

// Bounds of an import (POST /v1/lists/{list}/import): one request, all or
// nothing, so its bounds are those of a whole list rather than
// MaxCIDRsPerReq and MaxBodyBytes. A CIDR is at most 43 bytes of JSON
// with its quotes and comma, so MaxImportCIDRs fit in MaxImportBytes.
const (
	MaxImportCIDRs = 1 << 20
	MaxImportBytes = 64 << 20
)

// ImportRequest adds the entries of an import that are not in the list yet
// (POST /v1/lists/{list}/import). With DryRun nothing is written and the
// reply's Changes say what would be.
type ImportRequest struct {
	CIDRs  []string `json:"cidrs"`
	TTL    string   `json:"ttl,omitempty"`
	Reason string   `json:"reason,omitempty"`
	DryRun bool     `json:"dry_run,omitempty"`
}

// Import actions of an ImportChange.
const (
	ImportAdd     = "add"     // the entry is new: added (or would be)
	ImportPresent = "present" // the list holds the prefix already: left as it is
)

// ImportChange is what an import does to one of its entries.
type ImportChange struct {
	CIDR   string `json:"cidr"`
	Action string `json:"action"`           // ImportAdd or ImportPresent
	Origin string `json:"origin,omitempty"` // of the entry present: config, runtime, feed
}

// ImportReply is the reply of an import: how many entries were added (or,
// with DryRun, would be) and how many the list held already; Changes, one
// per entry in request order, only for a dry run.
type ImportReply struct {
	Added   int            `json:"added"`
	Present int            `json:"present"`
	DryRun  bool           `json:"dry_run,omitempty"`
	Changes []ImportChange `json:"changes,omitempty"`
}

// Import adds the new entries of req to list ("allow" or "block") in one
// all-or-nothing write (or, with req.DryRun, says what it would add).
func (c *Client) Import(ctx context.Context, list string, req ImportRequest) (ImportReply, error) {
	var out ImportReply
	_, err := c.Do(ctx, http.MethodPost, "/v1/lists/"+url.PathEscape(list)+"/import", req, &out)
	return out, err
}
