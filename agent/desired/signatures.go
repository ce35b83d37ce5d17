package desired

import (
	"github.com/hashicorp/hcl/v2"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/sigspec"
	"github.com/bulwark-filter/bulwark/maps"
)

// NamedSignature is a signature block of the config, compiled.
type NamedSignature struct {
	Name string
	Sig  maps.Signature
}

// compileSignatures reads each signature block's match and action, with an
// error at the match's position for what sigspec refuses.
func compileSignatures(c *config.Config) ([]NamedSignature, hcl.Diagnostics) {
	var out []NamedSignature
	var diags hcl.Diagnostics
	for _, s := range c.Signatures {
		sig, err := sigspec.Parse(s.Match)
		if err == nil {
			err = sigspec.ParseAction(s.Action, s.PPS, s.Burst, &sig)
		}
		if err != nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid signature",
				Detail: "Signature " + s.Name + ": " + err.Error() + ".", Subject: s.MatchRange.Ptr()})
			continue
		}
		out = append(out, NamedSignature{Name: s.Name, Sig: sig})
	}
	return out, diags
}
