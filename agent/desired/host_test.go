package desired

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulwark-filter/bulwark/agent/config"
)

// TestCheckHost: a GeoIP database that is not a MaxMind database of its kind is refused at its path in the file,
// as the agent would refuse it; the test databases of their kind pass.
func TestCheckHost(t *testing.T) {
	dir := t.TempDir()
	notDB := writeFile(t, dir, "x.mmdb", "not a database")
	mmdb, err := filepath.Abs(filepath.Join("..", "..", "test", "testdata", "mmdb"))
	if err != nil {
		t.Fatal(err)
	}
	country, asn := filepath.Join(mmdb, "GeoLite2-Country-Test.mmdb"), filepath.Join(mmdb, "GeoLite2-ASN-Test.mmdb")
	parse := func(src string) *config.Config {
		t.Helper()
		cfg, diags := config.ParseWithOptions("test.hcl", []byte(src), config.Options{SkipInterfaceCheck: true})
		if diags.HasErrors() {
			t.Fatal(config.FormatDiagnostics(diags))
		}
		return cfg
	}
	diags := CheckHost(parse(`interface "eth0" {}
geoip {
  country_database = "` + notDB + `"
  asn_database     = "` + country + `"
}`))
	got := config.FormatDiagnostics(diags)
	if !strings.Contains(got, "test.hcl:3:22: Cannot read database: country database \""+notDB+"\" is not a valid MaxMind DB") ||
		!strings.Contains(got, "test.hcl:4:22: Cannot read database: ASN database") || len(diags) != 2 {
		t.Errorf("got\n%s", got)
	}
	if diags := CheckHost(parse(`interface "eth0" {}
geoip {
  country_database = "` + country + `"
  asn_database = "` + asn + `"
}`)); len(diags) != 0 {
		t.Errorf("the test databases: %s", config.FormatDiagnostics(diags))
	}
	// Offline, the file is not looked at by config.Load; the host check is what opens it.
	cfg, diags := config.ParseWithOptions("test.hcl", []byte(`interface "eth0" {}
geoip { asn_database = "`+notDB+`" }`), config.Options{Offline: true})
	if diags.HasErrors() {
		t.Fatal(config.FormatDiagnostics(diags))
	}
	if got := config.FormatDiagnostics(CheckHost(cfg)); !strings.HasPrefix(got, "test.hcl:2:24: Cannot read database: ASN database") {
		t.Errorf("offline config, host check: %s", got)
	}
}
