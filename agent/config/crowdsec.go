package config

import (
	"net/url"
	"regexp"
	"slices"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Bounds of the crowdsec block's keys.
const (
	minCrowdSecInterval = 100 * time.Millisecond
	maxCrowdSecInterval = time.Hour
	maxCrowdSecQueue    = 1_000_000
	minCrowdSecResync   = time.Second
	maxCrowdSecResync   = 24 * time.Hour
)

// CrowdSecScopes are the decision scopes the bouncer can take.
var CrowdSecScopes = []string{"ip", "range"}

// CrowdSecActions are what a decision type can map to.
var CrowdSecActions = []string{"block", "throttle"}

// crowdSecWordRE is the syntax of a decision type and of an origin.
var crowdSecWordRE = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,64}$`)

// crowdSec decodes the crowdsec block. Keys left out stay zero: their defaults are the compile step's. Where each
// key is written is recorded in cfg.Set ("crowdsec" is the block's header).
func (d *decoder) crowdSec(b *hcl.Block, cfg *Config) {
	cs := &CrowdSec{}
	cfg.CrowdSec = cs
	c := d.content(b.Body, &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{
			{Name: "lapi_url", Required: true}, {Name: "api_key_file"}, {Name: "scopes"}, {Name: "origins"},
			{Name: "actions"}, {Name: "interval"}, {Name: "resync"}, {Name: "max_decisions"}, {Name: "machine"}, {Name: "password_file"},
			{Name: "push_queue"},
		},
		Blocks: []hcl.BlockHeaderSchema{{Type: "tls"}},
	})
	attrs := c.Attributes
	if a := attrs["lapi_url"]; a != nil && d.stringAttr(a, &cs.LAPIURL) {
		u, err := url.Parse(cs.LAPIURL)
		switch {
		case err != nil:
			d.errorf(a.Expr.Range(), "Invalid lapi_url", "%q is not a URL: %s", cs.LAPIURL, err)
		case u.Scheme != "http" && u.Scheme != "https":
			d.errorf(a.Expr.Range(), "Invalid lapi_url", "%q must be an http or https URL, as in \"http://127.0.0.1:8080\".", cs.LAPIURL)
		case u.Hostname() == "":
			d.errorf(a.Expr.Range(), "Invalid lapi_url", "%q has no host.", cs.LAPIURL)
		case u.Port() != "" && !validPort(u.Port()):
			d.errorf(a.Expr.Range(), "Invalid lapi_url", "The port in %q must be a number 1-65535.", cs.LAPIURL)
		case u.User != nil || u.RawQuery != "" || u.Fragment != "":
			d.errorf(a.Expr.Range(), "Invalid lapi_url", "%q must have no credentials, query or fragment; the API key goes in api_key_file.", cs.LAPIURL)
		}
	}
	d.existingFile(attrs["api_key_file"], &cs.APIKeyFile, "API key file")
	if a := attrs["scopes"]; a != nil {
		cs.Scopes = d.wordList(a, func(s string) bool { return slices.Contains(CrowdSecScopes, s) }, "a scope the bouncer takes; use ip or range")
		if cs.Scopes != nil && len(cs.Scopes) == 0 {
			d.errorf(a.Expr.Range(), "Invalid scopes", "scopes must name at least one of ip, range.")
		}
	}
	if a := attrs["origins"]; a != nil {
		cs.Origins = d.wordList(a, crowdSecWordRE.MatchString, "an origin; use a name such as cscli, crowdsec or CAPI")
	}
	if a := attrs["actions"]; a != nil {
		cs.Actions = d.crowdSecActions(a)
	}
	d.durationAttr(attrs["interval"], &cs.Interval, minCrowdSecInterval, maxCrowdSecInterval)
	d.durationAttr(attrs["resync"], &cs.Resync, minCrowdSecResync, maxCrowdSecResync)
	uintAttr(d, attrs["max_decisions"], &cs.MaxDecisions, "max_decisions", 1, maxMapEntries)
	machine, pw := attrs["machine"], attrs["password_file"]
	if machine != nil && d.stringAttr(machine, &cs.Machine) && !crowdSecWordRE.MatchString(cs.Machine) {
		d.errorf(machine.Expr.Range(), "Invalid machine", "%q is not a machine name: 1 to 64 letters, digits, '_', '-', '.' or ':'.", cs.Machine)
	}
	d.existingFile(pw, &cs.PasswordFile, "password file")
	switch {
	case machine != nil && pw == nil:
		d.errorf(machine.Range, "Missing password_file", "machine needs password_file, the file holding its password.")
	case pw != nil && machine == nil:
		d.errorf(pw.Range, "Missing machine", "password_file needs machine, the name it logs in with.")
	}
	uintAttr(d, attrs["push_queue"], &cs.PushQueue, "push_queue", 1, maxCrowdSecQueue)
	if tb := d.single(c.Blocks, "tls"); tb != nil {
		d.tls(tb, &cs.TLS)
	}
	if attrs["api_key_file"] == nil && cs.TLS.CertFile == "" && attrs["lapi_url"] != nil {
		d.errorf(attrs["lapi_url"].Range, "Missing api_key_file", "The bouncer needs api_key_file (the key of `cscli bouncers add`) or a tls client certificate.")
	}
	if cfg.Set == nil {
		cfg.Set = map[string]Setting{}
	}
	cfg.Set["crowdsec"] = Setting{Range: b.DefRange, Value: b.DefRange}
	for name, a := range attrs {
		record(cfg, "crowdsec."+name, a)
	}
}

// wordList decodes a list of distinct strings that ok accepts; what says what an item must be.
func (d *decoder) wordList(a *hcl.Attribute, ok func(string) bool, what string) []string {
	out := []string{}
	for _, e := range d.list(a) {
		s, good := d.str(e)
		switch {
		case !good:
		case !ok(s):
			d.errorf(e.Range(), "Invalid "+a.Name, "%q is not %s.", s, what)
		case slices.Contains(out, s):
			d.errorf(e.Range(), "Duplicate "+a.Name, "%q is listed twice.", s)
		default:
			out = append(out, s)
		}
	}
	return out
}

// crowdSecActions decodes the map of decision types to actions.
func (d *decoder) crowdSecActions(a *hcl.Attribute) map[string]string {
	out := map[string]string{}
	before := d.errors()
	for _, p := range d.mapPairs(a) {
		typ, ok := d.str(p.Key)
		if !ok {
			continue
		}
		act, ok := d.str(p.Value)
		switch {
		case !ok:
		case !crowdSecWordRE.MatchString(typ):
			d.errorf(p.Key.Range(), "Invalid actions", "%q is not a decision type (as in ban or captcha).", typ)
		case out[typ] != "":
			d.errorf(p.Key.Range(), "Duplicate key", "%q is set twice.", typ)
		case !slices.Contains(CrowdSecActions, act):
			d.errorf(p.Value.Range(), "Invalid actions", "%q is not an action; use block or throttle.", act)
		default:
			out[typ] = act
		}
	}
	if len(out) == 0 && d.errors() == before {
		d.errorf(a.Expr.Range(), "Invalid actions", `actions must map at least one decision type, as in { ban = "block" }.`)
	}
	return out
}

// tls decodes a tls sub-block (the fleet's, the crowdsec block's): existing files, cert_file and key_file both or
// neither.
func (d *decoder) tls(b *hcl.Block, t *FleetTLS) {
	tc := d.content(b.Body, &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "ca_file"}, {Name: "cert_file"}, {Name: "key_file"}}})
	d.existingFile(tc.Attributes["ca_file"], &t.CAFile, "CA file")
	cert, key := tc.Attributes["cert_file"], tc.Attributes["key_file"]
	d.existingFile(cert, &t.CertFile, "certificate file")
	d.existingFile(key, &t.KeyFile, "key file")
	switch {
	case cert != nil && key == nil:
		d.errorf(cert.Range, "Missing key_file", "cert_file needs key_file, the certificate's private key.")
	case key != nil && cert == nil:
		d.errorf(key.Range, "Missing cert_file", "key_file needs cert_file, the certificate of the key.")
	}
}
