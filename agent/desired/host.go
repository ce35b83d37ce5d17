package desired

import (
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/geoip"
)

// CheckHost checks the facts of this host that the agent needs and config.Load does not check: each GeoIP
// database of a valid config opens as the agent opens it. Errors are at the database's path in the file.
func CheckHost(c *config.Config) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, db := range []struct{ key, country, asn string }{
		{"geoip.country_database", c.GeoIP.CountryDatabase, ""},
		{"geoip.asn_database", "", c.GeoIP.ASNDatabase},
	} {
		if db.country == "" && db.asn == "" {
			continue
		}
		d, err := geoip.Open(db.country, db.asn)
		if err != nil {
			detail := strings.TrimPrefix(err.Error(), "geoip: ")
			if !strings.HasSuffix(detail, ".") {
				detail += "."
			}
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Cannot read database",
				Detail: detail, Subject: c.Set[db.key].Value.Ptr()})
			continue
		}
		_ = d.Close()
	}
	return diags
}
