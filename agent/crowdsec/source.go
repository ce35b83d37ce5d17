package crowdsec

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Alert is one Bulwark verdict to push to the LAPI: an alert with one
// decision on Target.
type Alert struct {
	Target   netip.Prefix
	Type     string // the decision's type: ban, or throttle
	Duration time.Duration
	Scenario string // bulwark/<component>
	Message  string // the explanation
	At       time.Time
}

// maxBatch is how many alerts one push sends at most.
const maxBatch = 100

// Source pushes alerts to a LAPI with machine credentials (a JWT from
// /v1/watchers/login). Push never blocks: alerts wait in a bounded queue,
// and one that does not fit is dropped and counted. Run sends them,
// retrying while the LAPI is down.
type Source struct {
	alerts, login string
	machine, pass string
	http          *http.Client
	queue         chan Alert
	retry         time.Duration

	mu      sync.Mutex
	token   string
	expires time.Time
	stats   SourceStats
}

// SourceStats are a Source's counters.
type SourceStats struct {
	Pushed, Dropped, Errors uint64
	Queued                  int
	LastError               string
	LastPush                time.Time
}

// NewSource makes a source pushing to the LAPI at base as machine, with a
// queue of queue alerts, retrying a failed push every retry.
func NewSource(base *url.URL, machine, password string, t TLS, queue int, retry, timeout time.Duration) (*Source, error) {
	hc, err := httpClient(t, timeout)
	if err != nil {
		return nil, err
	}
	return &Source{alerts: base.JoinPath("v1", "alerts").String(), login: base.JoinPath("v1", "watchers", "login").String(),
		machine: machine, pass: password, http: hc, queue: make(chan Alert, queue), retry: retry}, nil
}

// Push queues an alert; false when the queue is full (the alert is
// dropped).
func (s *Source) Push(a Alert) bool {
	select {
	case s.queue <- a:
		return true
	default:
		s.mu.Lock()
		s.stats.Dropped++
		s.mu.Unlock()
		return false
	}
}

// Stats are the source's counters now.
func (s *Source) Stats() SourceStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Queued = len(s.queue)
	return st
}

// Run sends queued alerts until ctx ends; a batch that fails is sent
// again after the retry interval.
func (s *Source) Run(ctx context.Context) {
	for {
		var batch []Alert
		select {
		case <-ctx.Done():
			return
		case a := <-s.queue:
			batch = append(batch, a)
		}
		for len(batch) < maxBatch && len(s.queue) > 0 {
			batch = append(batch, <-s.queue)
		}
		for {
			err := s.send(ctx, batch)
			s.mu.Lock()
			if err == nil {
				s.stats.Pushed += uint64(len(batch))
				s.stats.LastPush = time.Now()
			} else {
				s.stats.Errors++
				s.stats.LastError = err.Error()
			}
			s.mu.Unlock()
			if err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(s.retry):
			}
		}
	}
}

// send logs in when the token is missing or near its expiry, and posts
// the batch; a 401 drops the token for the next try.
func (s *Source) send(ctx context.Context, batch []Alert) error {
	tok, err := s.bearer(ctx)
	if err != nil {
		return err
	}
	body, err := json.Marshal(alertBodies(batch))
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.alerts, strings.NewReader(string(body)))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	if _, err := do(s.http, req, 1<<20); err != nil {
		if strings.HasPrefix(err.Error(), "401") {
			s.mu.Lock()
			s.token = ""
			s.mu.Unlock()
		}
		return fmt.Errorf("push alerts: %w", err)
	}
	return nil
}

// bearer returns a valid token, logging in for a new one when needed.
func (s *Source) bearer(ctx context.Context) (string, error) {
	s.mu.Lock()
	tok, exp := s.token, s.expires
	s.mu.Unlock()
	if tok != "" && time.Until(exp) > time.Minute {
		return tok, nil
	}
	body, _ := json.Marshal(map[string]any{"machine_id": s.machine, "password": s.pass, "scenarios": []string{}})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.login, strings.NewReader(string(body)))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := do(s.http, req, 1<<16)
	if err != nil {
		return "", fmt.Errorf("log in as machine %q: %w", s.machine, err)
	}
	var r struct {
		Token  string    `json:"token"`
		Expire time.Time `json:"expire"`
	}
	if err := json.Unmarshal(resp, &r); err != nil || r.Token == "" {
		return "", fmt.Errorf("log in as machine %q: no token in the answer", s.machine)
	}
	s.mu.Lock()
	s.token, s.expires = r.Token, r.Expire
	s.mu.Unlock()
	return r.Token, nil
}

// alertBody is an alert as the LAPI's POST /v1/alerts takes it.
type alertBody struct {
	Scenario        string         `json:"scenario"`
	ScenarioHash    string         `json:"scenario_hash"`
	ScenarioVersion string         `json:"scenario_version"`
	Message         string         `json:"message"`
	EventsCount     int            `json:"events_count"`
	StartAt         string         `json:"start_at"`
	StopAt          string         `json:"stop_at"`
	Capacity        int            `json:"capacity"`
	Leakspeed       string         `json:"leakspeed"`
	Simulated       bool           `json:"simulated"`
	Events          []struct{}     `json:"events"`
	Source          alertSource    `json:"source"`
	Decisions       []alertDecided `json:"decisions"`
}

type alertSource struct {
	Scope string `json:"scope"`
	Value string `json:"value"`
	IP    string `json:"ip,omitempty"`
	Range string `json:"range,omitempty"`
}

type alertDecided struct {
	Duration string `json:"duration"`
	Origin   string `json:"origin"`
	Scenario string `json:"scenario"`
	Scope    string `json:"scope"`
	Type     string `json:"type"`
	Value    string `json:"value"`
}

// alertBodies are the LAPI's alerts of as. The decisions' origin is
// "crowdsec", what the LAPI gives a machine's decisions (and what
// `cscli decisions list` shows by default).
func alertBodies(as []Alert) []alertBody {
	out := make([]alertBody, len(as))
	for i, a := range as {
		scope, value := "Ip", a.Target.Addr().String()
		src := alertSource{Scope: scope, Value: value, IP: value}
		if a.Target.Bits() != a.Target.Addr().BitLen() {
			scope, value = "Range", a.Target.String()
			src = alertSource{Scope: scope, Value: value, Range: value}
		}
		at := a.At.UTC().Format(time.RFC3339)
		out[i] = alertBody{Scenario: a.Scenario, Message: a.Message, EventsCount: 1, StartAt: at, StopAt: at,
			Leakspeed: "0", Events: []struct{}{}, Source: src,
			Decisions: []alertDecided{{Duration: a.Duration.Round(time.Second).String(), Origin: "crowdsec",
				Scenario: a.Scenario, Scope: scope, Type: a.Type, Value: value}}}
	}
	return out
}
