package geoip

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// testdata is MaxMind's test databases (fake data); NETWORKS.md there lists which network maps where.
const testdata = "../../test/testdata/mmdb"

var (
	liteCountry = filepath.Join(testdata, "GeoLite2-Country-Test.mmdb")
	geoCountry  = filepath.Join(testdata, "GeoIP2-Country-Test.mmdb")
	geoCity     = filepath.Join(testdata, "GeoIP2-City-Test.mmdb")
	liteASN     = filepath.Join(testdata, "GeoLite2-ASN-Test.mmdb")
)

func open(t testing.TB, country, asn string) *DB {
	t.Helper()
	d, err := Open(country, asn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	return d
}

func TestLookup(t *testing.T) {
	d := open(t, liteCountry, liteASN)
	tests := []struct {
		name string
		addr string
		want Location
	}{
		// GeoLite2-Country 81.2.69.160/27: country GB, registered_country US -> country wins. No ASN record.
		{"v4 first of network, country over registered", "81.2.69.160", Location{Country: "GB"}},
		{"v4 last of network", "81.2.69.191", Location{Country: "GB"}},
		// 89.160.20.112/28 is SE (registered DE) and in ASN 89.160.0.0/17 AS29518 "Bredband2 AB": both databases.
		{"v4 in both databases", "89.160.20.120", Location{Country: "SE", ASN: 29518, ASOrg: "Bredband2 AB"}},
		// 216.160.83.56/29: US; the ASN record has a number but no organisation.
		{"v4 ASN without organisation", "216.160.83.56", Location{Country: "US", ASN: 209}},
		{"v4 country only", "67.43.156.255", Location{Country: "BT", ASN: 35908}},
		// GeoLite2-ASN IPv4 rows.
		{"v4 ASN only, first", "1.128.0.0", Location{ASN: 1221, ASOrg: "Telstra Pty Ltd"}},
		{"v4 ASN only, last, ampersand", "12.81.95.255", Location{ASN: 7018, ASOrg: "AT&T Services"}},
		// IPv6 rows.
		{"v6 country", "2001:218::1", Location{Country: "JP"}},
		{"v6 country, last of /29", "2a02:d187:ffff:ffff:ffff:ffff:ffff:ffff", Location{Country: "DE"}},
		{"v6 ASN", "2003::1", Location{ASN: 3320, ASOrg: "Deutsche Telekom AG"}},
		{"v6 ASN, last of /24", "240e:ff:ffff:ffff:ffff:ffff:ffff:ffff", Location{ASN: 4134, ASOrg: "Chinanet"}},
		// IPv4-mapped IPv6 is looked up as IPv4.
		{"v4-mapped both", "::ffff:89.160.20.112", Location{Country: "SE", ASN: 29518, ASOrg: "Bredband2 AB"}},
		{"v4-mapped ASN", "::ffff:1.128.0.0", Location{ASN: 1221, ASOrg: "Telstra Pty Ltd"}},
		{"v6 zone ignored", "2003::1%eth0", Location{ASN: 3320, ASOrg: "Deutsche Telekom AG"}},
		// Misses (NETWORKS.md "Not-found lookups"): zero Location, no error.
		{"v4 miss", "1.1.1.1", Location{}},
		{"v4 private miss", "10.0.0.1", Location{}},
		{"v4 loopback miss", "127.0.0.1", Location{}},
		{"v6 loopback miss", "::1", Location{}},
		{"v6 documentation miss", "2001:db8::1", Location{}},
		{"v4-mapped miss", "::ffff:8.8.8.8", Location{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := d.Lookup(netip.MustParseAddr(tt.addr)); got != tt.want {
				t.Errorf("Lookup(%s) = %+v, want %+v", tt.addr, got, tt.want)
			}
		})
	}
	if got := d.Lookup(netip.Addr{}); got != (Location{}) {
		t.Errorf("Lookup(invalid) = %+v, want zero", got)
	}
}

func TestLookupOtherCountryDatabases(t *testing.T) {
	tests := []struct {
		db, addr, want string
	}{
		{geoCountry, "175.16.199.7", "CN"},
		{geoCountry, "149.101.100.15", "US"}, // registered GB
		{geoCountry, "2001:238::1", "TW"},
		{geoCountry, "214.1.1.1", ""}, // anycast record without country or registered_country
		{geoCity, "81.2.69.170", "GB"},
		{geoCity, "214.0.1.1", "AU"},
		{geoCity, "2a02:d3c0::1", "GB"},
		{geoCity, "214.1.1.1", ""},
		{geoCity, "::ffff:175.16.199.0", "CN"},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.db)+"/"+tt.addr, func(t *testing.T) {
			d := open(t, tt.db, "")
			want := Location{Country: tt.want}
			if got := d.Lookup(netip.MustParseAddr(tt.addr)); got != want {
				t.Errorf("Lookup(%s) = %+v, want %+v", tt.addr, got, want)
			}
		})
	}
}

// No test database has a record with only registered_country, so the fallback is tested on the record type.
func TestCountryFallback(t *testing.T) {
	var r countryRecord
	if got := r.iso(); got != "" {
		t.Errorf("empty record: got %q", got)
	}
	r.RegisteredCountry.ISOCode = "FR"
	if got := r.iso(); got != "FR" {
		t.Errorf("registered only: got %q, want FR", got)
	}
	r.Country.ISOCode = "GB"
	if got := r.iso(); got != "GB" {
		t.Errorf("both: got %q, want GB", got)
	}
}

func TestOnlyOneOrNoDatabase(t *testing.T) {
	a := netip.MustParseAddr("89.160.20.112")
	if got, want := open(t, liteCountry, "").Lookup(a), (Location{Country: "SE"}); got != want {
		t.Errorf("country only: got %+v, want %+v", got, want)
	}
	if got, want := open(t, "", liteASN).Lookup(a), (Location{ASN: 29518, ASOrg: "Bredband2 AB"}); got != want {
		t.Errorf("ASN only: got %+v, want %+v", got, want)
	}
	if got := open(t, "", "").Lookup(a); got != (Location{}) {
		t.Errorf("no databases: got %+v, want zero", got)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.mmdb")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("this is not a MaxMind DB\n", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.mmdb")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.mmdb")
	tests := []struct {
		name         string
		country, asn string
		want         []string // substrings of the error
	}{
		{"missing country", missing, "", []string{"country database", missing, "does not exist"}},
		{"missing ASN", "", missing, []string{"ASN database", missing, "does not exist"}},
		{"garbage country", garbage, "", []string{"country database", garbage, "not a valid MaxMind DB"}},
		{"garbage ASN", liteCountry, garbage, []string{"ASN database", garbage, "not a valid MaxMind DB"}},
		{"empty", empty, "", []string{empty, "is empty"}},
		{"directory", dir, "", []string{dir, "is a directory"}},
		{"ASN as country", liteASN, "", []string{"country database", liteASN, `"GeoLite2-ASN"`}},
		{"country as ASN", "", liteCountry, []string{"ASN database", liteCountry, `"GeoLite2-Country"`}},
		{"city as ASN", liteCountry, geoCity, []string{"ASN database", geoCity, `"GeoIP2-City"`}},
		{"swapped", liteASN, liteCountry, []string{"country database", `"GeoLite2-ASN"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Open(tt.country, tt.asn)
			if err == nil {
				_ = d.Close()
				t.Fatalf("Open(%q, %q) succeeded, want error", tt.country, tt.asn)
			}
			for _, s := range tt.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

func TestCloseAndConcurrency(t *testing.T) {
	d, err := Open(liteCountry, liteASN)
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr("89.160.20.112")
	want := Location{Country: "SE", ASN: 29518, ASOrg: "Bredband2 AB"}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				if got := d.Lookup(a); got != want && got != (Location{}) {
					t.Errorf("concurrent Lookup = %+v", got)
					return
				}
			}
		})
	}
	// Close while lookups may still run: they finish or see a closed DB, never a torn mapping.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if got := d.Lookup(a); got != (Location{}) {
		t.Errorf("Lookup after Close = %+v, want zero", got)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func BenchmarkLookup(b *testing.B) {
	d := open(b, liteCountry, liteASN)
	addrs := []netip.Addr{
		netip.MustParseAddr("89.160.20.112"), // both databases
		netip.MustParseAddr("81.2.69.170"),   // country only
		netip.MustParseAddr("1.128.0.1"),     // ASN only
		netip.MustParseAddr("2003::1"),       // IPv6 ASN
		netip.MustParseAddr("1.1.1.1"),       // miss
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		_ = d.Lookup(addrs[i%len(addrs)])
		i++
	}
}
