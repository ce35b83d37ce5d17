package detect

import (
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bulwark-filter/bulwark/agent/fleet"
)

// Dial connects to the servers of opts with its TLS material and
// credentials, as name; it returns at once when no server answers yet and
// keeps reconnecting (jittered) for ever, so detection resumes when the
// bus does.
func Dial(opts fleet.Options, name string) (*nats.Conn, error) {
	o := []nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(time.Second), nats.ReconnectJitter(500*time.Millisecond, time.Second)}
	if opts.TLS.CAFile != "" {
		o = append(o, nats.RootCAs(opts.TLS.CAFile))
	}
	if opts.TLS.CertFile != "" {
		o = append(o, nats.ClientCert(opts.TLS.CertFile, opts.TLS.KeyFile))
	}
	switch {
	case opts.CredsFile != "":
		o = append(o, nats.UserCredentials(opts.CredsFile))
	case opts.User != "":
		o = append(o, nats.UserInfo(opts.User, opts.Password))
	}
	nc, err := nats.Connect(strings.Join(opts.Servers, ","), o...)
	if err != nil {
		return nil, fmt.Errorf("fleet detection: connect to %s: %w", strings.Join(opts.Servers, ","), err)
	}
	return nc, nil
}
