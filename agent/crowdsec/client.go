package crowdsec

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
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

// StartupTimeout bounds a startup pull: crowdsec 1.4.6 took minutes to
// answer one of 100,000 decisions on a loaded machine, and a pull given up
// on is one the LAPI goes on computing.
const StartupTimeout = 10 * time.Minute

// Client pulls decisions from a LAPI as a bouncer.
type Client struct {
	stream   string // the stream's URL without startup
	key      string
	http     *http.Client
	timeout  time.Duration // of a delta pull; a startup pull has StartupTimeout
	maxBytes int64
	// answered is how long the last pull waited for the LAPI's answer to
	// begin (the request to its headers): the LAPI's own listing, since
	// crowdsec builds the whole answer before it writes it.
	answered time.Duration
}

// Answered is how long the last pull waited for the LAPI to begin its
// answer. Read it from the goroutine that pulls.
func (c *Client) Answered() time.Duration { return c.answered }

// NewClient makes a bouncer client of the LAPI at base, with an API key
// (or a client certificate in t), reading at most maxBytes per answer, a
// delta pull bounded by timeout. scopes and origins are passed to the LAPI
// (origins may be empty: all).
func NewClient(base *url.URL, key string, t TLS, scopes, origins []string, maxBytes int64, timeout time.Duration) (*Client, error) {
	hc, err := httpClient(t, 0) // each pull has its own timeout
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
	return &Client{stream: u.String(), key: key, http: hc, timeout: timeout, maxBytes: maxBytes}, nil
}

// Pull reads the decision stream: every active decision when startup is
// true, else what changed since this bouncer's last pull. The answer is
// decoded as it arrives (a startup answer of 100,000 decisions is some
// 20 MB), at most maxBytes of it.
func (c *Client) Pull(ctx context.Context, startup bool) (Stream, error) {
	timeout := c.timeout
	if startup {
		timeout = StartupTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.stream+"&startup="+fmt.Sprint(startup), nil)
	if err != nil {
		return Stream{}, err
	}
	if c.key != "" {
		req.Header.Set("X-Api-Key", c.key)
	}
	req.Header.Set("User-Agent", "bulwark-bouncer/v1")
	sent := time.Now()
	resp, err := c.http.Do(req)
	c.answered = time.Since(sent)
	if err != nil {
		return Stream{}, fmt.Errorf("pull decisions: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		head, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return Stream{}, fmt.Errorf("pull decisions: %s: %s", resp.Status, bytes.TrimSpace(head))
	}
	body := &capReader{r: resp.Body, left: c.maxBytes}
	s, err := DecodeStream(body)
	switch {
	case body.over:
		return Stream{}, fmt.Errorf("pull decisions: %w (%d bytes)", errTooLarge, c.maxBytes)
	case err != nil:
		return Stream{}, fmt.Errorf("pull decisions: the answer is not a decision stream: %w", err)
	}
	return s, nil
}

// capReader reads at most left bytes of r; over says a read went past.
type capReader struct {
	r    io.Reader
	left int64
	over bool
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		// One byte more tells a body of exactly the cap from a longer one.
		var one [1]byte
		if n, err := io.ReadFull(c.r, one[:]); n == 0 {
			return 0, err // io.EOF: the body ended within the cap
		}
		c.over = true
		return 0, errTooLarge
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

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
