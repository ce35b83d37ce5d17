package api

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWireJSON pins the field names of the wire format: the expected
// documents are written by hand, as a script would read them.
func TestWireJSON(t *testing.T) {
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name string
		v    any
		want string
	}{
		{"error", Error{Error: "no"}, `{"error":"no"}`},
		{"list request", ListRequest{CIDRs: []string{"198.18.0.1"}, TTL: "1h", Reason: "r"}, `{"cidrs":["198.18.0.1"],"ttl":"1h","reason":"r"}`},
		{"list request, no ttl", ListRequest{CIDRs: []string{"198.18.0.1"}}, `{"cidrs":["198.18.0.1"]}`},
		{"list entry", ListEntry{CIDR: "198.18.0.0/24", List: "block", Origin: "runtime", ExpiresIn: 1.5},
			`{"cidr":"198.18.0.0/24","list":"block","origin":"runtime","expires_in_seconds":1.5}`},
		{"added", Added{Added: 2}, `{"added":2}`},
		{"deleted", Deleted{Deleted: 3}, `{"deleted":3}`},
		{"reload", ReloadReply{Result: ReloadRejected, Diagnostics: "x"}, `{"result":"rejected","diagnostics":"x"}`},
		{"status", Status{Version: "v", UptimeSeconds: 2, Mode: "enforce",
			Interfaces: []InterfaceStatus{{Name: "eth0", Attach: "native", TrackedSources: 4, PinsDetail: "d", KernelMemoryBytes: 7}},
			Packets:    map[string]map[string]uint64{"drop": {"blocklist": 5}}, Lists: map[string]map[string]int{"block": {"ipv4": 1}},
			Verdicts: map[string]int{"block": 6}},
			`{"version":"v","uptime_seconds":2,"mode":"enforce","interfaces":[{"name":"eth0","attach":"native","tracked_sources":4,` +
				`"pins_persistent":false,"pins_detail":"d","kernel_memory_bytes":7}],"packets":{"drop":{"blocklist":5}},"list_entries":{"block":{"ipv4":1}},"verdicts_active":{"block":6}}`},
		{"verdict", Verdict{Source: "198.18.0.1", Action: "block", Origin: "reputation", Score: 90, ExpiresIn: 3},
			`{"source":"198.18.0.1","action":"block","origin":"reputation","score":90,"expires_in_seconds":3}`},
		{"verdicts request", VerdictsRequest{Sources: []string{"198.18.0.1"}}, `{"sources":["198.18.0.1"]}`},
		{"sources", SourcesReply{Interval: 1, Measured: true, Sources: []Source{{Source: "198.18.0.1", PPS: 10, DeliveredPPS: 8,
			RatelimitPPS: 2, SYNShare: 0.5, Ports: 3, Score: 40, Verdict: "throttle", TTLSeconds: 9}}},
			`{"interval_seconds":1,"measured":true,"sources":[{"source":"198.18.0.1","pps":10,"delivered_pps":8,"ratelimit_pps":2,` +
				`"syn_share":0.5,"ports_per_second":3,"score":40,"verdict":"throttle","verdict_ttl_seconds":9}]}`},
		{"explanation", Explanation{Source: netip.MustParsePrefix("198.18.0.1/32"), Tracked: true, Score: 50, ScoreFrom: ScoreLive,
			Components: []Component{{Name: "syn_ratio", Value: 1, Contribution: 20, Weight: 20}},
			Feeds:      []FeedHit{{Feed: "f", Weight: 10}}, Location: &Location{Country: "SE", ASN: 1, ASOrg: "o"},
			History:    []VerdictRecord{{Source: netip.MustParsePrefix("198.18.0.1/32"), Action: "block", Score: 50, At: at, For: time.Second, Enforced: true}},
			Thresholds: map[string]float64{"block": 80}},
			`{"source":"198.18.0.1/32","tracked":true,"exempt":false,"score":50,"score_from":"live",` +
				`"components":[{"name":"syn_ratio","value":1,"contribution":20,"weight":20}],"observed":null,"baseline":null,` +
				`"feeds":[{"Feed":"f","Weight":10}],"location":{"Country":"SE","ASN":1,"ASOrg":"o"},` +
				`"history":[{"source":"198.18.0.1/32","action":"block","score":50,"at":"2025-03-01T12:00:00Z","for_ns":1000000000,"enforced":true,"components":null}],` +
				`"thresholds":{"block":80}}`},
		{"explanation, blocked", Explanation{Source: netip.MustParsePrefix("198.18.0.2/32"), Score: 91, ScoreFrom: ScoreVerdict, Note: "n"},
			`{"source":"198.18.0.2/32","tracked":false,"exempt":false,"score":91,"score_from":"verdict","note":"n",` +
				`"components":null,"observed":null,"baseline":null,"feeds":null,"history":null,"thresholds":null}`},
		{"why", Why{Source: "198.18.0.3", TrackingKey: "198.18.0.3/32", Interface: "eth0", Mode: "enforce",
			Packet:   WhyPacket{Proto: "tcp", Port: 22, SYN: true, Bytes: 64},
			Decision: WhyStep{Action: "drop", Reason: "ratelimit", Detail: "d", Rule: "ssh"},
			Block:    &WhyEntry{CIDR: "198.18.0.0/24", List: "block", Origin: "config", ExpiresIn: 2},
			Verdict:  &WhyVerdict{Action: "throttle", Origin: "scorer", Score: 70, ExpiresIn: 5},
			Tracked:  true, Class: "c", ClassMult: 2, Score: &WhyScore{Score: 70, Tracked: true, ThrottleAt: 60, BlockAt: 85},
			Limits: []WhyLimit{{Rule: "ssh", Bucket: "198.18.0.3/32", PPS: 1, Burst: 2, Multiplier: 0.5, Tokens: new(0.25), Conforms: false, Reached: true},
				{Rule: "new_sources", PPS: 10, Burst: 10, BytesPerSec: 9, ByteBurst: 8, ByteTokens: new(7.0), Multiplier: 1, Fresh: true, Conforms: true}}},
			`{"source":"198.18.0.3","tracking_key":"198.18.0.3/32","interface":"eth0","mode":"enforce",` +
				`"packet":{"proto":"tcp","port":22,"syn":true,"bytes":64},"decision":{"action":"drop","reason":"ratelimit","detail":"d","rule":"ssh"},` +
				`"block_entry":{"cidr":"198.18.0.0/24","list":"block","origin":"config","expires_in_seconds":2},` +
				`"verdict":{"action":"throttle","origin":"scorer","score":70,"expires_in_seconds":5},"tracked":true,"class":"c","class_multiplier":2,` +
				`"limits":[{"rule":"ssh","bucket":"198.18.0.3/32","pps":1,"burst":2,"multiplier":0.5,"tokens":0.25,"fresh":false,"conforms":false,"reached":true},` +
				`{"rule":"new_sources","pps":10,"burst":10,"bytes_per_second":9,"byte_burst":8,"multiplier":1,"byte_tokens":7,"fresh":true,"conforms":true,"reached":false}],` +
				`"score":{"score":70,"tracked":true,"throttle_at":60,"block_at":85,"exempt":false}}`},
		{"event", Event{Time: at, Iface: "eth0", Action: "drop", Reason: "ratelimit", Rule: 3, RuleName: "dns", PktLen: 60, Data: []byte{1, 2}},
			`{"time":"2025-03-01T12:00:00Z","iface":"eth0","action":"drop","reason":"ratelimit","rule":3,"rule_name":"dns","pkt_len":60,"data":"AQI="}`},
	}
	for _, c := range cases {
		b, err := json.Marshal(c.v)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if string(b) != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, b, c.want)
		}
	}
}

// serve answers on a fresh unix socket with h until the test ends.
func serve(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "control.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

func TestClient(t *testing.T) {
	var got struct{ method, path, query, body string }
	sock := serve(t, func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 512)
		n, _ := r.Body.Read(b)
		got.method, got.path, got.query, got.body = r.Method, r.URL.Path, r.URL.RawQuery, string(b[:n])
		switch r.URL.Path {
		case "/v1/status":
			w.Write([]byte(`{"version":"v1","interfaces":[{"name":"eth0"}]}`))
		case "/v1/reload":
			w.WriteHeader(http.StatusUnprocessableEntity)
			w.Write([]byte(`{"result":"rejected","diagnostics":"a.hcl:1,1: bad"}`))
		case "/v1/lists/block":
			w.Write([]byte(`{"added":2}`))
		case "/v1/capture":
			w.Write([]byte(`[{"reason":"verdict","pkt_len":42}]`))
		default:
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"error":"no endpoint"}`))
		}
	})
	c := NewClient(sock, 10*time.Second)
	ctx := context.Background()

	st, raw, err := c.Status(ctx)
	if err != nil || st.Version != "v1" || len(st.Interfaces) != 1 || st.Interfaces[0].Name != "eth0" || !strings.Contains(string(raw), `"version":"v1"`) {
		t.Fatalf("status %+v %q %v", st, raw, err)
	}
	if got.method != "GET" || got.path != "/v1/status" {
		t.Errorf("status request %+v", got)
	}

	added, err := c.AddToList(ctx, "block", ListRequest{CIDRs: []string{"198.18.0.1", "198.18.0.2"}})
	if err != nil || added.Added != 2 || got.method != "POST" || got.body != `{"cidrs":["198.18.0.1","198.18.0.2"]}` {
		t.Fatalf("add: %+v %v, request %+v", added, err, got)
	}

	evs, err := c.Capture(ctx, CaptureFilter{Reason: "verdict"}, 5, 2*time.Second)
	if err != nil || len(evs) != 1 || evs[0].PktLen != 42 || got.query != "count=5&reason=verdict&timeout=2s" {
		t.Fatalf("capture: %+v %v, query %q", evs, err, got.query)
	}

	rep, err := c.Reload(ctx)
	var re *ReplyError
	if !errors.As(err, &re) || re.Status != http.StatusUnprocessableEntity || rep.Result != ReloadRejected || rep.Diagnostics != "a.hcl:1,1: bad" {
		t.Fatalf("rejected reload: %+v %v", rep, err)
	}

	_, _, err = c.Verdicts(ctx)
	if !errors.As(err, &re) || re.Status != http.StatusNotFound || re.Message != "no endpoint" || err.Error() != "no endpoint (HTTP 404)" {
		t.Fatalf("error reply: %v", err)
	}

	_, _, err = NewClient(filepath.Join(t.TempDir(), "none.sock"), time.Second).Status(ctx)
	var ue *UnreachableError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "is the agent running?") {
		t.Fatalf("no agent: %v", err)
	}
}

func TestParse(t *testing.T) {
	for _, c := range []struct{ in, want, err string }{
		{"198.18.0.1", "198.18.0.1/32", ""},
		{" 2001:2::1 ", "2001:2::1/128", ""},
		{"::ffff:198.18.0.0/120", "198.18.0.0/24", ""},
		{"198.18.0.1/24", "", "has host bits set; did you mean 198.18.0.0/24?"},
		{"fe80::1%eth0", "", "is not an IP address or CIDR"},
		{"198.18.0.0/33", "", "is not a CIDR"},
	} {
		p, err := ParseCIDR(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseCIDR(%q) = %v, %v; want error %q", c.in, p, err, c.err)
			}
		} else if err != nil || p.String() != c.want {
			t.Errorf("ParseCIDR(%q) = %v, %v; want %s", c.in, p, err, c.want)
		}
	}
	for _, c := range []struct {
		in string
		ok bool
	}{{"1s", true}, {"8760h", true}, {"999ms", false}, {"8761h", false}, {"soon", false}} {
		_, err := ParseTTL(c.in, time.ParseDuration)
		if (err == nil) != c.ok {
			t.Errorf("ParseTTL(%q): %v, want ok %v", c.in, err, c.ok)
		}
	}
}

// TestCaptureOutwaitsClientTimeout: a capture may run longer than the
// client's request timeout (the CLI's is 60 s, --timeout allows 5 m); the
// client waits for the agent's reply until the capture's own timeout and a
// grace have passed, and no longer.
func TestCaptureOutwaitsClientTimeout(t *testing.T) {
	const reply = 600 * time.Millisecond // longer than the client's timeout below
	sock := serve(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(reply):
		case <-r.Context().Done():
			return
		}
		switch r.URL.Path {
		case "/v1/capture":
			w.Write([]byte(`[{"reason":"verdict","pkt_len":42}]`))
		default:
			w.Write([]byte(`{"version":"v1"}`))
		}
	})
	c := NewClient(sock, 200*time.Millisecond)
	ctx := context.Background()
	if _, _, err := c.Status(ctx); err == nil {
		t.Fatal("status outlived the client's 200ms timeout: the check below would prove nothing")
	}
	evs, err := c.Capture(ctx, CaptureFilter{}, 1, time.Second)
	if err != nil || len(evs) != 1 {
		t.Fatalf("capture with a 1s timeout, reply after %s: %+v %v", reply, evs, err)
	}
}
