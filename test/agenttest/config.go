package agenttest

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// Sizes are the maps block of a Config; zero fields take DefaultSizes'.
type Sizes struct {
	Sources, RuleBuckets, Verdicts, AllowHosts, AllowPrefixes, BlockHosts, BlockPrefixes, Classes int
}

// DefaultSizes are the map sizes of a Config that sets none.
var DefaultSizes = Sizes{4096, 4096, 1024, 1024, 1024, 1024, 1024, 256}

// Config is what the tests vary in the agent's config.
type Config struct {
	PPS, Burst int      // default limit; 0: none
	Allow      []string // config allow list CIDRs
	Block      []string // config block list CIDRs
	BlockFiles []string // config block list files
	Extra      string   // raw HCL appended at the end
	Socket     string   // "": the env's socket
	Metrics    *string  // nil: the env's MetricsAddr
	Maps       Sizes    // zero fields: DefaultSizes
	IPv6Prefix int      // limits.ipv6_prefix, the IPv6 tracking prefix; 0: 64
	Limits     string   // raw HCL appended inside the limits block
}

func quoteList(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// Render is the HCL of c for this env: enforce mode on the server veth,
// debug logs with the env's audit log.
func (e *Env) Render(c Config) string {
	sock := c.Socket
	if sock == "" {
		sock = e.Sock
	}
	m := e.MetricsAddr
	if c.Metrics != nil {
		m = *c.Metrics
	}
	var b strings.Builder
	fmt.Fprintf(&b, "mode      = \"enforce\"\nmalformed = \"drop\"\npin_dir   = %q\n\n", e.PinRoot)
	fmt.Fprintf(&b, "interface %q {\n  attach = \"native\"\n}\n\n", e.TB.ServerIf)
	fmt.Fprintf(&b, "allow {\n  cidrs = %s\n}\n\nblock {\n  cidrs = %s\n", quoteList(c.Allow), quoteList(c.Block))
	if len(c.BlockFiles) > 0 {
		fmt.Fprintf(&b, "  files = %s\n", quoteList(c.BlockFiles))
	}
	b.WriteString("}\n\n")
	v6 := c.IPv6Prefix
	if v6 == 0 {
		v6 = 64
	}
	fmt.Fprintf(&b, "limits {\n  ipv6_prefix = %d\n", v6)
	if c.PPS > 0 {
		fmt.Fprintf(&b, "  default {\n    pps   = %d\n    burst = %d\n  }\n", c.PPS, c.Burst)
	}
	b.WriteString(c.Limits)
	b.WriteString("}\n\n")
	fmt.Fprintf(&b, "metrics {\n  listen = %q\n}\n\n", m)
	fmt.Fprintf(&b, "log {\n  level      = \"debug\"\n  audit_file = %q\n}\n\n", e.Audit)
	fmt.Fprintf(&b, "control {\n  socket = %q\n}\n\n", sock)
	z := func(v, d int) int {
		if v == 0 {
			return d
		}
		return v
	}
	ms, ds := c.Maps, DefaultSizes
	fmt.Fprintf(&b, "maps {\n  sources        = %d\n  rule_buckets   = %d\n  verdicts       = %d\n"+
		"  allow_hosts    = %d\n  allow_prefixes = %d\n  block_hosts    = %d\n  block_prefixes = %d\n"+
		"  classes        = %d\n  events_ring_kib = 64\n}\n",
		z(ms.Sources, ds.Sources), z(ms.RuleBuckets, ds.RuleBuckets), z(ms.Verdicts, ds.Verdicts),
		z(ms.AllowHosts, ds.AllowHosts), z(ms.AllowPrefixes, ds.AllowPrefixes), z(ms.BlockHosts, ds.BlockHosts),
		z(ms.BlockPrefixes, ds.BlockPrefixes), z(ms.Classes, ds.Classes))
	// The flight recorder writes under the env's directory, not the
	// default /var/lib/bulwark/drops, unless Extra says where.
	if !strings.Contains(c.Extra, "events {") {
		fmt.Fprintf(&b, "\nevents {\n  dir = %q\n}\n", filepath.Join(e.Dir, "drops"))
	}
	b.WriteString(c.Extra)
	return b.String()
}

// WriteConfig writes c to path (the env's config when path is "") and
// returns the path.
func (e *Env) WriteConfig(path string, c Config) string {
	e.T.Helper()
	if path == "" {
		path = e.CfgPath
	}
	WriteFile(e.T, path, e.Render(c))
	return path
}
