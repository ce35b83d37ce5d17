package config

import (
	"math"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Bounds of the fleet block's keys.
const (
	maxFleetServers  = 32
	maxFleetReplicas = 5 // JetStream's largest replica count
	maxIssuerRate    = 1_000_000
	minFleetTTL      = time.Minute
	maxFleetTTL      = 365 * 24 * time.Hour
)

// FleetNameRE is the syntax of a fleet node name and of a bucket name: a NATS subject token and key-value bucket
// name that needs no escaping.
var FleetNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// FleetPublish are the values of fleet.publish: which local verdicts are published.
var FleetPublish = []string{"scorer", "cli"}

// natsSchemes are the URL schemes a NATS client connects with.
var natsSchemes = []string{"nats", "tls"}

// fleet decodes the fleet block. Keys left out stay zero: their defaults are the compile step's. Where each key
// is written is recorded in cfg.Set ("fleet" is the block's header) for the compile step's messages.
func (d *decoder) fleet(b *hcl.Block, cfg *Config) {
	f := &Fleet{}
	cfg.Fleet = f
	c := d.content(b.Body, &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{
			{Name: "servers", Required: true}, {Name: "node"}, {Name: "creds_file"}, {Name: "user"}, {Name: "password_file"},
			{Name: "bucket"}, {Name: "replicas"}, {Name: "publish"}, {Name: "max_ttl"}, {Name: "issuer_rate"},
			{Name: "issuer_burst"}, {Name: "max_active"}, {Name: "buffer"},
		},
		Blocks: []hcl.BlockHeaderSchema{{Type: "tls"}, {Type: "detection"}},
	})
	attrs := c.Attributes
	if a := attrs["servers"]; a != nil {
		f.Servers = d.fleetServers(a)
	}
	d.fleetName(attrs["node"], &f.Node)
	d.fleetName(attrs["bucket"], &f.Bucket)
	creds, user, pw := attrs["creds_file"], attrs["user"], attrs["password_file"]
	d.existingFile(creds, &f.CredsFile, "credentials file")
	if user != nil && d.stringAttr(user, &f.User) && f.User == "" {
		d.errorf(user.Expr.Range(), "Invalid user", "user must not be empty; leave it out to connect without one.")
	}
	d.existingFile(pw, &f.PasswordFile, "password file")
	switch {
	case creds != nil && user != nil:
		d.errorf(user.Range, "Conflicting credentials", "Give creds_file or user and password_file, not both; creds_file is set at %s.", at(creds.Range))
	case user != nil && pw == nil:
		d.errorf(user.Range, "Missing password_file", "user needs password_file, the file holding its password.")
	case pw != nil && user == nil:
		d.errorf(pw.Range, "Missing user", "password_file needs user.")
	}
	uintAttr(d, attrs["replicas"], &f.Replicas, "replicas", 1, maxFleetReplicas)
	if a := attrs["publish"]; a != nil {
		f.Publish = d.fleetPublish(a)
	}
	d.durationAttr(attrs["max_ttl"], &f.MaxTTL, minFleetTTL, maxFleetTTL)
	d.floatAttr(attrs["issuer_rate"], &f.IssuerRate, 0, maxIssuerRate, true)
	uintAttr(d, attrs["issuer_burst"], &f.IssuerBurst, "issuer_burst", 1, maxBurst)
	uintAttr(d, attrs["max_active"], &f.MaxActive, "max_active", 1, maxMapEntries)
	uintAttr(d, attrs["buffer"], &f.Buffer, "buffer", 1, maxMapEntries)
	if tb := d.single(c.Blocks, "tls"); tb != nil {
		d.tls(tb, &f.TLS)
	}
	if cfg.Set == nil {
		cfg.Set = map[string]Setting{}
	}
	cfg.Set["fleet"] = Setting{Range: b.DefRange, Value: b.DefRange}
	for name, a := range attrs {
		record(cfg, "fleet."+name, a)
	}
	if db := d.single(c.Blocks, "detection"); db != nil {
		d.fleetDetection(db, cfg, &f.Detection)
	}
}

// fleetServers decodes the list of NATS server URLs.
func (d *decoder) fleetServers(a *hcl.Attribute) []string {
	exprs := d.list(a)
	switch {
	case exprs == nil:
		return nil
	case len(exprs) == 0:
		d.errorf(a.Expr.Range(), "Invalid servers", "servers must name at least one NATS server, as in [\"nats://198.19.0.1:4222\"].")
	case len(exprs) > maxFleetServers:
		d.errorf(exprs[maxFleetServers].Range(), "Invalid servers", "At most %d servers are allowed; this is server %d.", maxFleetServers, maxFleetServers+1)
		return nil
	}
	var out []string
	for _, e := range exprs {
		s, ok := d.str(e)
		if !ok {
			continue
		}
		u, err := url.Parse(s)
		switch {
		case err != nil:
			d.errorf(e.Range(), "Invalid server", "%q is not a URL: %s", s, err)
		case !slices.Contains(natsSchemes, u.Scheme):
			d.errorf(e.Range(), "Invalid server", "%q must be a nats or tls URL, as in \"nats://198.19.0.1:4222\".", s)
		case u.Hostname() == "":
			d.errorf(e.Range(), "Invalid server", "%q has no host.", s)
		case u.Port() != "" && !validPort(u.Port()):
			d.errorf(e.Range(), "Invalid server", "The port in %q must be a number 1-65535.", s)
		case u.User != nil:
			d.errorf(e.Range(), "Invalid server", "%q has credentials in it; use creds_file or user and password_file, which stay out of the config.", s)
		case slices.Contains(out, s):
			d.errorf(e.Range(), "Duplicate server", "%q is listed twice.", s)
		default:
			out = append(out, s)
		}
	}
	return out
}

// validPort reports whether s is a port number 1-65535.
func validPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && isDigits(s) && n >= 1 && n <= math.MaxUint16
}

// fleetName stores attribute a, if present and a valid node or bucket name, in dst.
func (d *decoder) fleetName(a *hcl.Attribute, dst *string) {
	var s string
	if !d.stringAttr(a, &s) {
		return
	}
	if !FleetNameRE.MatchString(s) {
		d.errorf(a.Expr.Range(), "Invalid "+a.Name, "%q is not a valid %s: use 1 to 64 letters, digits, '-' and '_'.", s, a.Name)
		return
	}
	*dst = s
}

// fleetPublish decodes fleet.publish: distinct values of FleetPublish.
func (d *decoder) fleetPublish(a *hcl.Attribute) []string {
	out := []string{}
	for _, e := range d.list(a) {
		s, ok := d.str(e)
		switch {
		case !ok:
		case !slices.Contains(FleetPublish, s):
			d.errorf(e.Range(), "Invalid publish", "%q is not a kind of verdict to publish; use scorer (the engine's verdicts) or cli (operator actions with --fleet).", s)
		case slices.Contains(out, s):
			d.errorf(e.Range(), "Duplicate publish", "%q is listed twice.", s)
		default:
			out = append(out, s)
		}
	}
	return out
}
