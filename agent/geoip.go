package agent

import (
	"net/netip"
	"sync"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/geoip"
	"github.com/bulwark-filter/bulwark/agent/reputation"
)

// geoSource answers the scorer's location questions from the configured
// MaxMind databases and weights; with no database configured it finds
// nothing.
type geoSource struct {
	mu      sync.Mutex
	db      *geoip.DB // nil: no database configured
	paths   [2]string
	country map[string]float64
	asn     map[uint32]float64
}

// update applies a config: the weights, and the databases when their paths
// changed. A database that fails to open changes nothing.
func (g *geoSource) update(c config.GeoIP) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if p := [2]string{c.CountryDatabase, c.ASNDatabase}; p != g.paths {
		var db *geoip.DB
		if p != [2]string{} {
			var err error
			if db, err = geoip.Open(c.CountryDatabase, c.ASNDatabase); err != nil {
				return err
			}
		}
		if g.db != nil {
			g.db.Close()
		}
		g.db, g.paths = db, p
	}
	g.country, g.asn = c.CountryWeights, c.ASNWeights
	return nil
}

func (g *geoSource) locate(a netip.Addr) reputation.Location {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.db == nil {
		return reputation.Location{}
	}
	l := g.db.Lookup(a)
	return reputation.Location{Country: l.Country, ASN: l.ASN, ASOrg: l.ASOrg}
}

func (g *geoSource) countryWeight(cc string) float64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.country[cc]
}

func (g *geoSource) asnWeight(asn uint32) float64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.asn[asn]
}

func (g *geoSource) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.db != nil {
		g.db.Close()
		g.db = nil
	}
}
