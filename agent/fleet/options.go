package fleet

import (
	"errors"
	"fmt"
	"net/url"
	"time"
)

// DefaultOptions are the defaults of every Option the config may leave
// out; Servers and Node have none (the agent defaults Node to the short
// hostname).
func DefaultOptions() Options {
	return Options{
		Bucket:        "bulwark-verdicts",
		SummaryStream: "bulwark-summaries",
		Replicas:      3,
		MaxTTL:        7 * 24 * time.Hour,
		IssuerRate:    100,
		IssuerBurst:   1000,
		MaxActive:     100000,
		Buffer:        100000,
	}
}

// Validate reports the first Option that a Client cannot run with.
func (o Options) Validate() error {
	if len(o.Servers) == 0 {
		return errors.New("fleet: no servers")
	}
	for _, s := range o.Servers {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" || (u.Scheme != "nats" && u.Scheme != "tls") {
			return fmt.Errorf("fleet: server %q: want nats://HOST:PORT or tls://HOST:PORT", s)
		}
	}
	if err := ValidNode(o.Node); err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	if err := validName(o.Bucket); err != nil {
		return fmt.Errorf("fleet: bucket: %w", err)
	}
	if o.CredsFile != "" && (o.User != "" || o.Password != "") {
		return errors.New("fleet: set a credentials file or user and password, not both")
	}
	if (o.User == "") != (o.Password == "") {
		return errors.New("fleet: user and password go together")
	}
	if (o.TLS.CertFile == "") != (o.TLS.KeyFile == "") {
		return errors.New("fleet: tls cert_file and key_file go together")
	}
	switch {
	case o.Replicas < 1 || o.Replicas > 5:
		return fmt.Errorf("fleet: replicas %d: want 1 to 5", o.Replicas)
	case o.MaxTTL < time.Minute:
		return fmt.Errorf("fleet: max_ttl %s: want at least 1m", o.MaxTTL)
	case !(o.IssuerRate > 0):
		return fmt.Errorf("fleet: issuer_rate %v: want more than 0", o.IssuerRate)
	case o.IssuerBurst < 1:
		return fmt.Errorf("fleet: issuer_burst %d: want at least 1", o.IssuerBurst)
	case o.MaxActive < 1:
		return fmt.Errorf("fleet: max_active %d: want at least 1", o.MaxActive)
	case o.Buffer < 1:
		return fmt.Errorf("fleet: buffer %d: want at least 1", o.Buffer)
	}
	return nil
}

// validName checks a bucket or stream name: [A-Za-z0-9_-], 1 to 64.
func validName(name string) error {
	if err := ValidNode(name); err != nil {
		return fmt.Errorf("%q: want 1 to %d letters, digits, '_' or '-'", name, MaxNodeLen)
	}
	return nil
}
