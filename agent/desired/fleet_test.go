package desired

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/bulwark-filter/bulwark/agent/config"
	"github.com/bulwark-filter/bulwark/agent/fleet"
	"github.com/bulwark-filter/bulwark/agent/fleet/detect"
	"github.com/bulwark-filter/bulwark/agent/fleet/summary"
)

// compileFleetSrc compiles src with the host named host.
func compileFleetSrc(t *testing.T, host string, src string) (*State, string) {
	t.Helper()
	old := hostname
	t.Cleanup(func() { hostname = old })
	hostname = func() (string, error) {
		if host == "" {
			return "", errors.New("no name")
		}
		return host, nil
	}
	cfg, diags := config.ParseWithOptions("test.hcl", []byte(src), config.Options{SkipInterfaceCheck: true})
	if diags.HasErrors() {
		t.Fatal(config.FormatDiagnostics(diags))
	}
	st, diags := Compile(cfg)
	return st, config.FormatDiagnostics(diags)
}

// TestFleetDefaults: a fleet block with only servers gets the documented
// defaults (written out here, not taken from the code) and the short
// hostname as its node; no fleet block, no fleet.
func TestFleetDefaults(t *testing.T) {
	st, diags := compileFleetSrc(t, "edge-7.example.net", `interface "eth0" {}
fleet { servers = ["nats://198.19.0.1:4222"] }`)
	if diags != "" {
		t.Fatal(diags)
	}
	want := &Fleet{Options: fleet.Options{Servers: []string{"nats://198.19.0.1:4222"}, Node: "edge-7",
		Bucket: "bulwark-verdicts", SummaryStream: "bulwark-summaries", Replicas: 3, MaxTTL: 7 * 24 * time.Hour,
		IssuerRate: 100, IssuerBurst: 1000, MaxActive: 100000, Buffer: 100000}, PublishScorer: true, PublishCLI: true,
		Detection: detect.Config{Role: detect.RoleNone, Window: time.Minute, Rule: summary.Rule{MinHosts: 3, MinPorts: 12},
			Action: fleet.ActionBlock, TTL: time.Hour, Grace: 15 * time.Second, MaxSources: 1_000_000}}
	if !reflect.DeepEqual(st.Fleet, want) {
		t.Errorf("got %+v\nwant %+v", st.Fleet, want)
	}
	if st, _ := compileFleetSrc(t, "edge-7", `interface "eth0" {}`); st.Fleet != nil {
		t.Errorf("no fleet block: got %+v", st.Fleet)
	}
}

// TestFleetValues: every key set reaches the client's options.
func TestFleetValues(t *testing.T) {
	dir := t.TempDir()
	pw := writeFile(t, dir, "pw", "secret\n")
	ca := writeFile(t, dir, "ca.pem", "x")
	st, diags := compileFleetSrc(t, "", `interface "eth0" {}
maps { verdicts = 500 }
fleet {
  servers       = ["nats://198.19.0.1:4222", "tls://198.19.0.2"]
  node          = "edge_2"
  user          = "edge"
  password_file = "`+pw+`"
  tls { ca_file = "`+ca+`" }
  bucket        = "verdicts-2"
  replicas      = 1
  publish       = ["cli"]
  max_ttl       = "1d"
  issuer_rate   = 2.5
  issuer_burst  = 10
  max_active    = 500
  buffer        = 20
}`)
	if diags != "" {
		t.Fatal(diags)
	}
	want := &Fleet{Options: fleet.Options{Servers: []string{"nats://198.19.0.1:4222", "tls://198.19.0.2"},
		TLS: fleet.TLS{CAFile: ca}, User: "edge", Node: "edge_2", Bucket: "verdicts-2", SummaryStream: "bulwark-summaries",
		Replicas: 1, MaxTTL: 24 * time.Hour, IssuerRate: 2.5, IssuerBurst: 10, MaxActive: 500, Buffer: 20},
		PasswordFile: pw, PublishCLI: true, Detection: detect.DefaultConfig()} // TestFleetDetection checks its keys
	if !reflect.DeepEqual(st.Fleet, want) {
		t.Errorf("got %+v\nwant %+v", st.Fleet, want)
	}
}

// TestFleetRefused: what the compile step refuses, at its position.
func TestFleetRefused(t *testing.T) {
	for _, c := range []struct{ name, host, src, want string }{{
		name: "hostname not a node name", host: "edge 1.example",
		src:  "fleet {\n  servers = [\"nats://198.19.0.1\"]\n}",
		want: `test.hcl:2:1: Missing node: The node name defaults to the host's short name, "edge 1", which is not a valid node name (1 to 64 letters, digits, '-' and '_'); set node.`,
	}, {
		name: "no hostname", host: "",
		src:  "fleet {\n  servers = [\"nats://198.19.0.1\"]\n}",
		want: `test.hcl:2:1: Missing node: The node name defaults to the host's name, which cannot be read (no name); set node.`,
	}, {
		name: "max_active over the verdict map", host: "edge",
		src:  "maps { verdicts = 1000 }\nfleet {\n  servers    = [\"nats://198.19.0.1\"]\n  max_active = 1001\n}",
		want: `test.hcl:5:16: Verdict map too small: fleet max_active (1001) must not exceed the verdict map's size, maps verdicts (1000).`,
	}, {
		name: "default max_active over the verdict map", host: "edge",
		src:  "maps { verdicts = 1000 }\nfleet {\n  servers    = [\"nats://198.19.0.1\"]\n}",
		want: `test.hcl:3:1: Verdict map too small: fleet max_active (100000) must not exceed the verdict map's size, maps verdicts (1000).`,
	}} {
		t.Run(c.name, func(t *testing.T) {
			st, got := compileFleetSrc(t, c.host, "interface \"eth0\" {}\n"+c.src)
			if st != nil || got != c.want {
				t.Errorf("state %v, got:\n%s\nwant:\n%s", st != nil, got, c.want)
			}
		})
	}
}

// TestFleetDetection: the detection sub-block's keys reach detect.Config
// (the grace follows a shortened window), and bad values are refused with
// the key's position.
func TestFleetDetection(t *testing.T) {
	st, diags := compileFleetSrc(t, "edge-1", `interface "eth0" {}
fleet {
  servers = ["nats://198.19.0.1:4222"]
  detection {
    role        = "aggregate"
    window      = "5s"
    min_hosts   = 4
    min_ports   = 10
    action      = "throttle"
    ttl         = "10m"
    max_sources = 5000
  }
}`)
	if diags != "" {
		t.Fatal(diags)
	}
	want := detect.Config{Role: detect.RoleAggregate, Window: 5 * time.Second, Rule: summary.Rule{MinHosts: 4, MinPorts: 10},
		Action: fleet.ActionThrottle, TTL: 10 * time.Minute, Grace: 2 * time.Second, MaxSources: 5000}
	if st.Fleet.Detection != want {
		t.Errorf("got %+v\nwant %+v", st.Fleet.Detection, want)
	}
	for src, msg := range map[string]string{
		`role = "both"`:     `"both" is not a valid role`,
		`window = "1500ms"`: "window must be whole seconds",
		`min_hosts = 1`:     "min_hosts must be at least 2",
		`min_ports = 500`:   "min_ports must be at most 200",
		`action = "revoke"`: `"revoke" is not a valid action`,
		`grace = "2m"`:      "grace 2m0s: want more than 0 and at most the window",
		`window = "10s"
    ttl = "5s"`: "ttl 5s: want at least the window",
		`ttl = "30d"`: "fleet detection ttl (720h0m0s) must not exceed max_ttl (168h0m0s)",
	} {
		cfg, d := config.ParseWithOptions("test.hcl", []byte(`interface "eth0" {}
fleet {
  servers = ["nats://198.19.0.1:4222"]
  node = "n"
  detection {
    `+src+`
  }
}`), config.Options{SkipInterfaceCheck: true})
		if !d.HasErrors() {
			_, d = Compile(cfg)
		}
		if got := config.FormatDiagnostics(d); !strings.Contains(got, msg) || !strings.Contains(got, "test.hcl:") {
			t.Errorf("%s: diagnostics %q, want %q with a position", src, got, msg)
		}
	}
}
