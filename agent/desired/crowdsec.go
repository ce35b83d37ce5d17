package desired

import (
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/crowdsec"
)

// Defaults of the crowdsec block.
const (
	DefaultCrowdSecInterval  = 2 * time.Second
	DefaultCrowdSecResync    = time.Minute
	DefaultCrowdSecPushQueue = 10_000
	// crowdSecBytesPerDecision bounds one decision's size in a stream
	// answer (about 200 bytes in practice), for the read cap.
	crowdSecBytesPerDecision = 1024
)

// CrowdSec is what the crowdsec block asks of the agent.
type CrowdSec struct {
	// URL is the local API's.
	URL *url.URL
	// APIKeyFile holds the bouncer's key (read at start), or "".
	APIKeyFile string
	// TLS is the client's TLS material.
	TLS crowdsec.TLS
	// Filter says which decisions are taken and their actions.
	Filter crowdsec.Filter
	// Interval is the time between pulls of the decision stream.
	Interval time.Duration
	// Resync is the time between full (startup) pulls: a LAPI's deltas
	// can miss decisions committed while a pull ran.
	Resync time.Duration
	// MaxBytes caps one stream answer (from the cap on decisions).
	MaxBytes int64
	// Machine and PasswordFile are the source's credentials; "" without.
	Machine, PasswordFile string
	// PushQueue bounds the alerts waiting to be pushed.
	PushQueue int
}

// compileCrowdSec compiles the crowdsec block of c (nil without one),
// refusing more decisions than the verdict map holds; max_decisions
// defaults to the verdict map's size.
func compileCrowdSec(c *config.Config, verdicts uint32) (*CrowdSec, hcl.Diagnostics) {
	cs := c.CrowdSec
	if cs == nil {
		return nil, nil
	}
	u, err := url.Parse(cs.LAPIURL)
	if err != nil {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid lapi_url", Detail: err.Error(),
			Subject: c.Set["crowdsec"].Value.Ptr()}}
	}
	out := &CrowdSec{URL: u, APIKeyFile: cs.APIKeyFile, Interval: DefaultCrowdSecInterval, Resync: DefaultCrowdSecResync,
		TLS:     crowdsec.TLS{CAFile: cs.TLS.CAFile, CertFile: cs.TLS.CertFile, KeyFile: cs.TLS.KeyFile},
		Machine: cs.Machine, PasswordFile: cs.PasswordFile, PushQueue: DefaultCrowdSecPushQueue}
	setIf(&out.Interval, cs.Interval)
	setIf(&out.Resync, cs.Resync)
	setIf(&out.PushQueue, cs.PushQueue)
	f := crowdsec.Filter{Scopes: slices.Clone(config.CrowdSecScopes), Origins: slices.Clone(cs.Origins),
		Actions: map[string]crowdsec.Action{"ban": crowdsec.ActionBlock}, Max: int(verdicts)}
	if cs.Scopes != nil {
		f.Scopes = slices.Clone(cs.Scopes)
	}
	if cs.Actions != nil {
		f.Actions = map[string]crowdsec.Action{}
		for typ, act := range cs.Actions {
			f.Actions[typ] = crowdsec.Action(act)
		}
	}
	setIf(&f.Max, cs.MaxDecisions)
	if uint64(f.Max) > uint64(verdicts) {
		key := "crowdsec.max_decisions"
		if _, ok := c.Set[key]; !ok {
			key = "crowdsec"
		}
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Verdict map too small",
			Detail:  fmt.Sprintf("crowdsec max_decisions (%d) must not exceed the verdict map's size, maps verdicts (%d).", f.Max, verdicts),
			Subject: c.Set[key].Value.Ptr()}}
	}
	out.Filter = f
	out.MaxBytes = int64(f.Max) * crowdSecBytesPerDecision
	return out, nil
}
