package reputation

import (
	"net/netip"

	"github.com/bulwark-filter/bulwark/maps"
)

// VerdictMap is a datapath's verdict map as a MapSink writes it (a
// *maps.Set is one).
type VerdictMap interface {
	PutVerdict(addr netip.Addr, action maps.VerdictAction, expiresNS uint64, origin maps.Origin, score uint16) error
	DeleteVerdict(addr netip.Addr) error
}

// MapSink writes an engine's verdicts into one datapath's verdict map, as
// the scorer's.
type MapSink struct{ Maps VerdictMap }

// PutVerdict writes a verdict on src that expires at expires (monotonic).
func (s MapSink) PutVerdict(src netip.Addr, action maps.VerdictAction, expires uint64, score uint16) error {
	return s.Maps.PutVerdict(src, action, expires, maps.OriginScorer, score)
}

// DeleteVerdict removes the verdict on src.
func (s MapSink) DeleteVerdict(src netip.Addr) error { return s.Maps.DeleteVerdict(src) }
