package geoip

import (
	"net/netip"
	"sync"

	"github.com/bulwark-filter/bulwark/agent/reputation"
)

// Source answers the scorer's location questions from the configured
// MaxMind databases and weights; with no database configured it finds
// nothing. Its zero value is ready to use; it is safe for concurrent use.
type Source struct {
	mu      sync.Mutex
	db      *DB // nil: no database configured
	paths   [2]string
	country map[string]float64
	asn     map[uint32]float64
}

// Update applies the configured databases (opened again only when their
// paths changed; "" for none) and weights. A database that fails to open
// changes nothing.
func (g *Source) Update(countryDB, asnDB string, country map[string]float64, asn map[uint32]float64) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if p := [2]string{countryDB, asnDB}; p != g.paths {
		var db *DB
		if p != [2]string{} {
			var err error
			if db, err = Open(countryDB, asnDB); err != nil {
				return err
			}
		}
		if g.db != nil {
			g.db.Close()
		}
		g.db, g.paths = db, p
	}
	g.country, g.asn = country, asn
	return nil
}

// Locate is where a is, as the scorer wants it.
func (g *Source) Locate(a netip.Addr) reputation.Location {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.db == nil {
		return reputation.Location{}
	}
	l := g.db.Lookup(a)
	return reputation.Location{Country: l.Country, ASN: l.ASN, ASOrg: l.ASOrg}
}

// CountryWeight is the configured weight of country cc.
func (g *Source) CountryWeight(cc string) float64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.country[cc]
}

// ASNWeight is the configured weight of autonomous system asn.
func (g *Source) ASNWeight(asn uint32) float64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.asn[asn]
}

// Close closes the databases.
func (g *Source) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.db != nil {
		g.db.Close()
		g.db = nil
	}
}
