package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// BaseURL is the URL the control API's paths are relative to; the host is
// a placeholder, the connection goes to the unix socket.
const BaseURL = "http://bulwark"

// maxReplyBytes bounds a reply the client reads.
const maxReplyBytes = 256 << 20

// HTTPClient is an HTTP client whose every connection goes to the unix
// socket at path; requests go to BaseURL + "/v1/...".
func HTTPClient(socket string, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}}}
}

// Client is a client of an agent's control socket.
type Client struct {
	socket  string
	timeout time.Duration
	http    *http.Client
}

// NewClient returns a client of the control socket at socket whose
// requests give up after timeout.
func NewClient(socket string, timeout time.Duration) *Client {
	return &Client{socket: socket, timeout: timeout, http: HTTPClient(socket, timeout)}
}

// UnreachableError is a control socket that nobody answers on.
type UnreachableError struct {
	Socket string
	Err    error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("control socket %s: %v (is the agent running? is this root?)", e.Socket, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// ReplyError is an error reply of the control API: the agent refused the
// request, Message says why.
type ReplyError struct {
	Status  int
	Message string
}

func (e *ReplyError) Error() string { return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status) }

// Do does one request: in, unless nil, is the JSON body; out, unless nil,
// receives the reply's JSON, also that of an error reply that is not an
// [Error] (a rejected reload's [ReloadReply]). It returns the reply's body
// as received. An error reply is a *[ReplyError]; no answer on the socket
// is an *[UnreachableError].
func (c *Client) Do(ctx context.Context, method, path string, in, out any) ([]byte, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, BaseURL+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return nil, &UnreachableError{c.socket, oe.Err}
	}
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", c.socket, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxReplyBytes))
	if err != nil {
		return nil, fmt.Errorf("read reply: %w", err)
	}
	if resp.StatusCode >= 300 {
		var e Error
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return raw, &ReplyError{resp.StatusCode, e.Error}
		}
		if out != nil {
			_ = json.Unmarshal(raw, out)
		}
		return raw, &ReplyError{resp.StatusCode, strings.TrimSpace(string(raw))}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return raw, fmt.Errorf("bad reply: %w", err)
		}
	}
	return raw, nil
}

// Status asks for the agent's status; raw is the reply as received.
func (c *Client) Status(ctx context.Context) (st Status, raw []byte, err error) {
	raw, err = c.Do(ctx, http.MethodGet, "/v1/status", nil, &st)
	return st, raw, err
}

// ListEntries lists the entries of list ("allow" or "block").
func (c *Client) ListEntries(ctx context.Context, list string) (es []ListEntry, raw []byte, err error) {
	raw, err = c.Do(ctx, http.MethodGet, "/v1/lists/"+url.PathEscape(list), nil, &es)
	return es, raw, err
}

// AddToList adds run-time entries to list ("allow" or "block").
func (c *Client) AddToList(ctx context.Context, list string, req ListRequest) (Added, error) {
	var out Added
	_, err := c.Do(ctx, http.MethodPost, "/v1/lists/"+url.PathEscape(list), req, &out)
	return out, err
}

// DeleteFromList deletes run-time entries from list ("allow" or "block").
func (c *Client) DeleteFromList(ctx context.Context, list string, req ListRequest) (Deleted, error) {
	var out Deleted
	_, err := c.Do(ctx, http.MethodDelete, "/v1/lists/"+url.PathEscape(list), req, &out)
	return out, err
}

// Reload has the agent re-read its config and waits for its answer; a
// rejected config is a *[ReplyError] with the reply's Result
// ReloadRejected and the diagnostics.
func (c *Client) Reload(ctx context.Context) (ReloadReply, error) {
	var rep ReloadReply
	_, err := c.Do(ctx, http.MethodPost, "/v1/reload", struct{}{}, &rep)
	return rep, err
}

// Explain asks why the source of ip scores what it scores.
func (c *Client) Explain(ctx context.Context, ip string) (x Explanation, raw []byte, err error) {
	raw, err = c.Do(ctx, http.MethodGet, "/v1/explain/"+url.PathEscape(ip), nil, &x)
	return x, raw, err
}

// Verdicts lists the verdicts in force.
func (c *Client) Verdicts(ctx context.Context) (vs []Verdict, raw []byte, err error) {
	raw, err = c.Do(ctx, http.MethodGet, "/v1/verdicts", nil, &vs)
	return vs, raw, err
}

// DeleteVerdicts deletes the verdicts of the request's sources.
func (c *Client) DeleteVerdicts(ctx context.Context, req VerdictsRequest) (Deleted, error) {
	var out Deleted
	_, err := c.Do(ctx, http.MethodDelete, "/v1/verdicts", req, &out)
	return out, err
}

// captureGrace is how long past a capture's own timeout the client waits
// for the agent's reply (the agent answers when the timeout ends).
const captureGrace = 10 * time.Second

// FleetStatus asks for the fleet client's state; raw is the reply as
// received.
func (c *Client) FleetStatus(ctx context.Context) (st FleetStatus, raw []byte, err error) {
	raw, err = c.Do(ctx, http.MethodGet, "/v1/fleet", nil, &st)
	return st, raw, err
}

// CrowdSecStatus reads the CrowdSec bouncer's state, and the raw reply.
func (c *Client) CrowdSecStatus(ctx context.Context) (st CrowdSecStatus, raw []byte, err error) {
	raw, err = c.Do(ctx, http.MethodGet, "/v1/crowdsec", nil, &st)
	return st, raw, err
}

// Capture waits for up to count live sampled drops that pass f, for at
// most timeout. It waits for the reply for timeout and a grace, even
// past the client's own request timeout.
func (c *Client) Capture(ctx context.Context, f CaptureFilter, count int, timeout time.Duration) ([]Event, error) {
	if d := timeout + captureGrace; d > c.timeout {
		c = NewClient(c.socket, d)
	}
	q := url.Values{}
	q.Set("count", strconv.Itoa(count))
	q.Set("timeout", timeout.String())
	if f.Reason != "" {
		q.Set("reason", f.Reason)
	}
	if f.Action != "" {
		q.Set("action", f.Action)
	}
	var events []Event
	_, err := c.Do(ctx, http.MethodGet, "/v1/capture?"+q.Encode(), nil, &events)
	return events, err
}

// Sources asks for the limit busiest or riskiest sources, by "pps",
// "dropped" or "score".
func (c *Client) Sources(ctx context.Context, by string, limit int) (rep SourcesReply, raw []byte, err error) {
	q := url.Values{"sort": {by}, "limit": {strconv.Itoa(limit)}}
	raw, err = c.Do(ctx, http.MethodGet, "/v1/sources?"+q.Encode(), nil, &rep)
	return rep, raw, err
}

// WhyQuery is the packet GET /v1/why/{ip} is asked about; zero fields are
// the defaults (no protocol, a SYN for tcp, a 64-byte frame).
type WhyQuery struct {
	Proto     string // tcp, udp or icmp; "": none
	Port      int    // tcp and udp
	NoSYN     bool   // tcp: a segment of an established connection, not a SYN
	Bytes     int    // the frame's length; 0: 64
	Interface string // whose datapath; "": the first
}

// Why asks which step of the datapath's decision would decide a packet
// from ip now.
func (c *Client) Why(ctx context.Context, ip string, q WhyQuery) (w Why, raw []byte, err error) {
	v := url.Values{}
	if q.Proto != "" {
		v.Set("proto", q.Proto)
	}
	if q.Port != 0 {
		v.Set("port", strconv.Itoa(q.Port))
	}
	if q.NoSYN {
		v.Set("syn", "false")
	}
	if q.Bytes != 0 {
		v.Set("bytes", strconv.Itoa(q.Bytes))
	}
	if q.Interface != "" {
		v.Set("interface", q.Interface)
	}
	path := "/v1/why/" + url.PathEscape(ip)
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	raw, err = c.Do(ctx, http.MethodGet, path, nil, &w)
	return w, raw, err
}
