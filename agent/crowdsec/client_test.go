package crowdsec

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestDecodeStream(t *testing.T) {
	const one = `{"duration":"3h59m59s","id":7,"origin":"cscli","scenario":"test/s","scope":"Ip","simulated":false,"type":"ban","value":"198.18.0.7"}`
	for _, c := range []struct {
		name, in   string
		new, del   int
		err        string
		firstValue string
	}{
		{name: "startup", in: `{"deleted":null,"new":[` + one + `,` + one + `]}` + "\n", new: 2, firstValue: "198.18.0.7"},
		{name: "delta", in: `{"new":[],"deleted":[` + one + `]}`, del: 1},
		{name: "empty", in: `{"new":null,"deleted":null}`},
		{name: "no lists", in: `{}`},
		{name: "other keys skipped", in: `{"x":{"new":[1]},"new":[` + one + `],"y":[1,2]}`, new: 1, firstValue: "198.18.0.7"},
		{name: "unknown fields of a decision", in: `{"new":[{"id":1,"value":"198.18.0.1","uuid":"u","extra":{"a":[1]}}]}`, new: 1, firstValue: "198.18.0.1"},
		{name: "not an object", in: `[]`, err: "where { was expected"},
		{name: "new not a list", in: `{"new":{}}`, err: "where a list of decisions was expected"},
		{name: "a decision of the wrong type", in: `{"new":[{"id":"seven"}]}`, err: "decision 1"},
		{name: "cut short", in: `{"new":[` + one, err: "EOF"},
		{name: "data after", in: `{"new":[]} {}`, err: "data after"},
		{name: "empty body", in: ``, err: "EOF"},
	} {
		s, err := DecodeStream(strings.NewReader(c.in))
		switch {
		case c.err != "":
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error %v; want one with %q", c.name, err, c.err)
			}
		case err != nil:
			t.Errorf("%s: %v", c.name, err)
		case len(s.New) != c.new || len(s.Deleted) != c.del:
			t.Errorf("%s: %d new, %d deleted; want %d, %d", c.name, len(s.New), len(s.Deleted), c.new, c.del)
		case c.firstValue != "" && s.New[0].Value != c.firstValue:
			t.Errorf("%s: first decision %+v; want value %s", c.name, s.New[0], c.firstValue)
		}
	}
	s, err := DecodeStream(strings.NewReader(`{"new":[` + one + `]}`))
	want := Decision{ID: 7, Origin: "cscli", Scenario: "test/s", Scope: "Ip", Type: "ban", Value: "198.18.0.7", Duration: "3h59m59s"}
	if err != nil || len(s.New) != 1 || s.New[0] != want {
		t.Errorf("decoded %+v, %v; want %+v", s.New, err, want)
	}
}

// TestPullCap: an answer over the read cap is refused as too large, one of
// exactly the cap is read; an error status is an error with its body.
func TestPullCap(t *testing.T) {
	body := `{"new":[],"deleted":[]}`
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Api-Key") != "k" || r.URL.Query().Get("startup") != "true" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	for _, c := range []struct {
		max int64
		err error
	}{{int64(len(body)), nil}, {int64(len(body)) - 1, errTooLarge}} {
		cl, err := NewClient(u, "k", TLS{}, []string{ScopeIP}, nil, c.max, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.Pull(context.Background(), true); !errors.Is(err, c.err) {
			t.Errorf("cap %d on an answer of %d bytes: %v; want %v", c.max, len(body), err, c.err)
		}
	}
	status, body = http.StatusGatewayTimeout, "upstream timed out"
	cl, _ := NewClient(u, "k", TLS{}, []string{ScopeIP}, nil, 1000, 5*time.Second)
	if _, err := cl.Pull(context.Background(), true); err == nil || !strings.Contains(err.Error(), "504 Gateway Timeout: upstream timed out") {
		t.Errorf("a 504: %v; want the status and the body", err)
	}
}
