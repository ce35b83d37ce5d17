package desired

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/fleet"
	"github.com/bulwark-filter/bulwark/agent/fleet/detect"
)

// Fleet is what the fleet block asks of the agent.
type Fleet struct {
	// Options are the fleet client's, every default filled in; the
	// password (when password_file is set) is read by the agent at start.
	Options fleet.Options
	// PasswordFile is the file holding the password of Options.User, or "".
	PasswordFile string
	// PublishScorer and PublishCLI say which local verdicts are published:
	// the engine's enforced verdicts, and operator actions with --fleet.
	PublishScorer, PublishCLI bool
	// Detection is the detection sub-block, defaults filled in.
	Detection detect.Config
}

// hostname is the host's name, for the node's default (a variable so
// tests can set it).
var hostname = os.Hostname

// compileFleet compiles the fleet block of c (nil without one), refusing
// a node name the host's name cannot give and more active fleet verdicts
// than the verdict map holds.
func compileFleet(c *config.Config, verdicts uint32) (*Fleet, hcl.Diagnostics) {
	f := c.Fleet
	if f == nil {
		return nil, nil
	}
	var diags hcl.Diagnostics
	errorf := func(key, summary, format string, args ...any) {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary,
			Detail: fmt.Sprintf(format, args...), Subject: c.Set[key].Value.Ptr()})
	}
	o := fleet.DefaultOptions()
	o.Servers = slices.Clone(f.Servers)
	o.TLS = fleet.TLS{CAFile: f.TLS.CAFile, CertFile: f.TLS.CertFile, KeyFile: f.TLS.KeyFile}
	o.CredsFile, o.User = f.CredsFile, f.User
	o.Node = f.Node
	if o.Node == "" {
		name, err := hostname()
		name, _, _ = strings.Cut(name, ".")
		switch {
		case err != nil:
			errorf("fleet", "Missing node", "The node name defaults to the host's name, which cannot be read (%s); set node.", err)
		case fleet.ValidNode(name) != nil:
			errorf("fleet", "Missing node", "The node name defaults to the host's short name, %q, which is not a valid node name (1 to 64 letters, digits, '-' and '_'); set node.", name)
		}
		o.Node = name
	}
	setIf(&o.Bucket, f.Bucket)
	setIf(&o.Replicas, f.Replicas)
	setIf(&o.MaxTTL, f.MaxTTL)
	setIf(&o.IssuerRate, f.IssuerRate)
	setIf(&o.IssuerBurst, f.IssuerBurst)
	setIf(&o.MaxActive, f.MaxActive)
	setIf(&o.Buffer, f.Buffer)
	if uint64(o.MaxActive) > uint64(verdicts) {
		key := "fleet.max_active"
		if _, ok := c.Set[key]; !ok {
			key = "fleet"
		}
		errorf(key, "Verdict map too small", "fleet max_active (%d) must not exceed the verdict map's size, maps verdicts (%d).", o.MaxActive, verdicts)
	}
	publish := f.Publish
	if publish == nil {
		publish = config.FleetPublish
	}
	det := compileDetection(f.Detection)
	if err := det.Validate(); err == nil && det.TTL > o.MaxTTL {
		errorf("fleet", "Invalid detection", "fleet detection ttl (%s) must not exceed max_ttl (%s): every host would refuse the verdicts.", det.TTL, o.MaxTTL)
	} else if err != nil {
		key := "fleet.detection"
		if _, ok := c.Set[key]; !ok {
			key = "fleet"
		}
		errorf(key, "Invalid detection", "fleet detection: %s.", err)
	}
	if diags.HasErrors() {
		return nil, diags
	}
	return &Fleet{Options: o, PasswordFile: f.PasswordFile,
		PublishScorer: slices.Contains(publish, "scorer"), PublishCLI: slices.Contains(publish, "cli"), Detection: det}, nil
}

// setIf sets *dst to v unless v is zero (left out of the config).
func setIf[T comparable](dst *T, v T) {
	var zero T
	if v != zero {
		*dst = v
	}
}

// compileDetection fills in the detection sub-block's defaults
// (detect.DefaultConfig); the grace defaults to a quarter of the window.
func compileDetection(d config.FleetDetection) detect.Config {
	c := detect.DefaultConfig()
	setIf(&c.Role, detect.Role(d.Role))
	setIf(&c.Window, d.Window)
	c.Grace = detect.DefaultGrace(c.Window)
	setIf(&c.Grace, d.Grace)
	setIf(&c.Rule.MinHosts, d.MinHosts)
	setIf(&c.Rule.MinPorts, d.MinPorts)
	setIf(&c.Action, fleet.Action(d.Action))
	setIf(&c.TTL, d.TTL)
	setIf(&c.MaxSources, d.MaxSources)
	return c
}
