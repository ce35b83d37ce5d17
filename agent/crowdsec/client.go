package crowdsec

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// TLS is the client's TLS material: files, or "".
type TLS struct {
	// CAFile verifies the LAPI's certificate; "" uses the system's roots.
	CAFile string
	// CertFile and KeyFile are a client certificate and its key (both or
	// neither).
	CertFile, KeyFile string
}

// tlsConfig loads t; nil when it names nothing.
func (t TLS) tlsConfig() (*tls.Config, error) {
	if t == (TLS{}) {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("crowdsec tls ca_file: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("crowdsec tls ca_file %s: no PEM certificate in it", t.CAFile)
		}
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("crowdsec tls cert_file and key_file: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// httpClient is an HTTP client with t's TLS and a timeout per request.
func httpClient(t TLS, timeout time.Duration) (*http.Client, error) {
	tc, err := t.tlsConfig()
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	tr.Proxy = nil // the LAPI is the operator's own, never behind the environment's proxy
	return &http.Client{Transport: tr, Timeout: timeout}, nil
}

// Client pulls decisions from a LAPI as a bouncer.
type Client struct {
	stream   string // the stream's URL without startup
	key      string
	http     *http.Client
	maxBytes int64
}

// NewClient makes a bouncer client of the LAPI at base, with an API key
// (or a client certificate in t), reading at most maxBytes per answer.
// scopes and origins are passed to the LAPI (origins may be empty: all).
func NewClient(base *url.URL, key string, t TLS, scopes, origins []string, maxBytes int64, timeout time.Duration) (*Client, error) {
	hc, err := httpClient(t, timeout)
	if err != nil {
		return nil, err
	}
	u := base.JoinPath("v1", "decisions", "stream")
	q := url.Values{}
	q.Set("scopes", strings.Join(scopes, ","))
	if len(origins) > 0 {
		q.Set("origins", strings.Join(origins, ","))
	}
	u.RawQuery = q.Encode()
	return &Client{stream: u.String(), key: key, http: hc, maxBytes: maxBytes}, nil
}

// Pull reads the decision stream: every active decision when startup is
// true, else what changed since this bouncer's last pull.
func (c *Client) Pull(ctx context.Context, startup bool) (Stream, error) {
	var s Stream
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.stream+"&startup="+fmt.Sprint(startup), nil)
	if err != nil {
		return s, err
	}
	if c.key != "" {
		req.Header.Set("X-Api-Key", c.key)
	}
	req.Header.Set("User-Agent", "bulwark-bouncer/v1")
	body, err := do(c.http, req, c.maxBytes)
	if err != nil {
		return s, fmt.Errorf("pull decisions: %w", err)
	}
	if err := json.Unmarshal(body, &s); err != nil {
		return s, fmt.Errorf("pull decisions: the answer is not a decision stream: %w", err)
	}
	return s, nil
}

// errTooLarge is an answer over the read cap.
var errTooLarge = errors.New("answer larger than the read cap")

// do sends req and reads the answer's body, at most maxBytes; an answer
// other than 2xx is an error with the start of its body.
func do(hc *http.Client, req *http.Request, maxBytes int64) ([]byte, error) {
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBytes+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("read the answer: %w", err)
	case int64(len(body)) > maxBytes:
		return nil, fmt.Errorf("%w (%d bytes)", errTooLarge, maxBytes)
	case resp.StatusCode/100 != 2:
		return nil, fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(body[:min(len(body), 200)]))
	}
	return body, nil
}
