// Package geoip looks up the country and the autonomous system of an address in optional MaxMind DB (.mmdb)
// files, for the reputation engine's location score components.
//
// A DB opens at most one country database (GeoLite2-Country, GeoIP2-Country, GeoIP2-City or any other
// database whose type names a country or city database) and at most one ASN database (GeoLite2-ASN or any
// other database whose type contains "ASN"). Lookups decode only the few fields they need, never fail and
// are safe for concurrent use.
package geoip

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"strings"
	"sync"

	"github.com/oschwald/maxminddb-golang/v2"
)

// Location is what the databases say about one address. Fields whose database is not configured, or that
// the database does not know for the address, are zero.
type Location struct {
	// Country is the ISO 3166-1 alpha-2 code (uppercase, e.g. "GB") of the country the address is in, or, if
	// the database does not say, of the country it is registered in; "" if unknown.
	Country string
	// ASN is the autonomous system number, or 0 if unknown.
	ASN uint32
	// ASOrg is the name of the organisation that holds the autonomous system, or "" if unknown.
	ASOrg string
}

// DB holds the opened databases. Its methods are safe for concurrent use; after Close, Lookup returns the
// zero Location.
type DB struct {
	mu      sync.RWMutex // read-held by Lookup, write-held by Close, so unmapping never races a lookup
	country *maxminddb.Reader
	asn     *maxminddb.Reader
}

// countryRecord is the part of a GeoIP2/GeoLite2 Country or City record that Lookup needs; the decoder skips
// everything else.
type countryRecord struct {
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	RegisteredCountry struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"registered_country"`
}

// iso returns the country's code, or the registered country's if the record has no country.
func (r *countryRecord) iso() string {
	if r.Country.ISOCode != "" {
		return r.Country.ISOCode
	}
	return r.RegisteredCountry.ISOCode
}

// asnRecord is a GeoLite2-ASN record.
type asnRecord struct {
	Number       uint32 `maxminddb:"autonomous_system_number"`
	Organization string `maxminddb:"autonomous_system_organization"`
}

// Open opens the country database at countryPath and the ASN database at asnPath. Either path may be "" to
// do without that database. The error names the file and says what is wrong with it: missing, unreadable,
// not a MaxMind DB file, or a database of the wrong type (a country database must have "Country" or "City"
// in its metadata database_type, an ASN database "ASN").
func Open(countryPath, asnPath string) (*DB, error) {
	d := &DB{}
	var err error
	if countryPath != "" {
		d.country, err = openReader("country", countryPath, isCountryType)
		if err != nil {
			return nil, err
		}
	}
	if asnPath != "" {
		d.asn, err = openReader("ASN", asnPath, isASNType)
		if err != nil {
			if d.country != nil {
				_ = d.country.Close()
			}
			return nil, err
		}
	}
	return d, nil
}

func isCountryType(t string) bool {
	return strings.Contains(t, "Country") || strings.Contains(t, "City")
}

func isASNType(t string) bool {
	return strings.Contains(t, "ASN")
}

// openReader opens one database and checks its type. kind is "country" or "ASN", for messages.
func openReader(kind, path string, typeOK func(string) bool) (*maxminddb.Reader, error) {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("geoip: %s database %q does not exist", kind, path)
	case err != nil:
		return nil, fmt.Errorf("geoip: %s database %q: %w", kind, path, err)
	case st.IsDir():
		return nil, fmt.Errorf("geoip: %s database %q is a directory, not a MaxMind DB (.mmdb) file", kind, path)
	case st.Size() == 0:
		return nil, fmt.Errorf("geoip: %s database %q is empty, not a MaxMind DB (.mmdb) file", kind, path)
	}
	r, err := maxminddb.Open(path)
	if err != nil {
		var invalid maxminddb.InvalidDatabaseError
		if errors.As(err, &invalid) {
			return nil, fmt.Errorf("geoip: %s database %q is not a valid MaxMind DB (.mmdb) file: %w", kind, path, err)
		}
		return nil, fmt.Errorf("geoip: %s database %q: %w", kind, path, err)
	}
	if t := r.Metadata.DatabaseType; !typeOK(t) {
		_ = r.Close()
		want := `"Country" or "City"`
		if kind == "ASN" {
			want = `"ASN"`
		}
		return nil, fmt.Errorf("geoip: %s database %q has database type %q, want a type containing %s",
			kind, path, t, want)
	}
	return r, nil
}

// Close releases the databases. Lookups that are running finish first; later lookups return the zero
// Location. Calling Close again does nothing.
func (d *DB) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	if d.country != nil {
		errs = append(errs, d.country.Close())
		d.country = nil
	}
	if d.asn != nil {
		errs = append(errs, d.asn.Close())
		d.asn = nil
	}
	return errors.Join(errs...)
}

// Lookup returns what the databases know about a. An address that no database knows, an invalid address, a
// closed DB or a damaged record give zero fields rather than an error. IPv4-mapped IPv6 addresses
// (::ffff:a.b.c.d) are looked up as the IPv4 address, and zones are ignored.
func (d *DB) Lookup(a netip.Addr) Location {
	var loc Location
	if !a.IsValid() {
		return loc
	}
	a = a.Unmap().WithZone("")
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.country != nil {
		var rec countryRecord
		if d.country.Lookup(a).Decode(&rec) == nil {
			loc.Country = rec.iso()
		}
	}
	if d.asn != nil {
		var rec asnRecord
		if d.asn.Lookup(a).Decode(&rec) == nil {
			loc.ASN = rec.Number
			loc.ASOrg = rec.Organization
		}
	}
	return loc
}
