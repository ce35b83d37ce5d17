// Package config parses and validates Bulwark's HCL configuration file.
//
// Load (or Parse, for source held in memory) returns a fully normalised Config: every default is filled in, every
// CIDR is masked and unmapped, every size and rate is in its base unit, every list file named in the config has been
// read, and every relative path has been made absolute against the config file's directory. Nothing needs to be
// parsed again by the caller.
//
// Every problem is reported as an hcl.Diagnostic of severity error whose Subject is the offending attribute, list
// element or block header, so FormatDiagnostics and WriteDiagnostics print "file:line:col: ..." lines. All problems
// are collected; decoding does not stop at the first one.
//
// The commented reference configuration in testdata/reference.hcl documents every key with its default and its
// valid range; a test keeps it in step with this package.
package config

import (
	"net/netip"
	"path/filepath"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/bulwark-filter/bulwark/agent/listset"
)

// Defaults that other packages (the CLI, the agent) need to agree on.
const (
	// DefaultPinDir is the default bpffs directory where the datapath's program and maps are pinned.
	DefaultPinDir = "/sys/fs/bpf/bulwark"
	// DefaultControlSocket is the default path of the agent's control API unix socket.
	DefaultControlSocket = "/run/bulwark/bulwark.sock"
	// DefaultMetricsListen is the default host:port of the Prometheus metrics endpoint.
	DefaultMetricsListen = "127.0.0.1:9740"
	// DefaultDropsDir is the default directory of the flight recorder's files.
	DefaultDropsDir = "/var/lib/bulwark/drops"
	// DefaultAuditFile is the default path of the append-only JSON-lines audit log.
	DefaultAuditFile = "/var/log/bulwark/audit.jsonl"
)

// Config is a validated, normalised Bulwark configuration.
type Config struct {
	// Mode is "enforce" (drop what the policy says to drop) or "monitor" (count it as would_drop and pass it).
	Mode string `hcl:"mode"`
	// Malformed is "drop" or "pass": what to do with packets whose headers cannot be parsed.
	Malformed string `hcl:"malformed"`
	// DetachOnExit detaches the program and removes the pins when the agent exits; the default (false) leaves
	// filtering in place (fail-static).
	DetachOnExit bool `hcl:"detach_on_exit"`
	// PinDir is the absolute bpffs directory where the program and maps are pinned.
	PinDir string `hcl:"pin_dir"`
	// WatchConfig has the agent reload by itself when its config file (or a *.hcl file of its config
	// directory) changes, as a reload would; off (the default), it reloads only when asked.
	WatchConfig bool `hcl:"watch_config"`
	// Interfaces lists the interfaces to attach to, in config order; there is at least one.
	Interfaces []Interface `hcl:"interface"`
	// Allow is the allow list: matching sources are always passed.
	Allow List `hcl:"allow"`
	// Block is the block list: matching sources are always dropped.
	Block List `hcl:"block"`
	// Limits holds the per-source rate limits.
	Limits Limits `hcl:"limits"`
	// Metrics configures the Prometheus endpoint.
	Metrics Metrics `hcl:"metrics"`
	// Log configures logging and the audit log.
	Log Log `hcl:"log"`
	// Control configures the control API socket.
	Control Control `hcl:"control"`
	// Maps holds the capacity of every kernel map.
	Maps Maps `hcl:"maps"`
	// Events configures the sampling of drop events sent to user space.
	Events Events `hcl:"events"`
	// Reputation configures the scoring engine.
	Reputation Reputation `hcl:"reputation"`
	// Feeds lists the threat feeds, in config order, with unique names.
	Feeds []Feed `hcl:"feed"`
	// Safety bounds what sources outside this file (threat feeds) may block.
	Safety Safety `hcl:"safety"`
	// Fleet shares verdicts with the other agents of a fleet over NATS JetStream; nil without a fleet block. It is
	// one key ("fleet"): the agent makes its fleet client at start only.
	Fleet *Fleet `hcl:"fleet"`
	// Signatures are the attack signatures written by hand, in config order, with unique names.
	Signatures []Signature `hcl:"signature"`
	// SignatureDetection configures the signatures that detection finds.
	SignatureDetection Signatures `hcl:"signatures"`
	// CrowdSec makes the agent a bouncer (and, with machine credentials, a source) of a CrowdSec local API; nil
	// without a crowdsec block. It is one key ("crowdsec"): the agent makes its LAPI client at start only.
	CrowdSec *CrowdSec `hcl:"crowdsec"`
	// GeoIP configures the optional location databases and their weights.
	GeoIP GeoIP `hcl:"geoip"`
	// Set says where the keys that the compile step and the host checks (agent/desired) name in their
	// diagnostics are written, by dotted key as Keys names them: each key of the maps block,
	// reputation.max_verdicts, geoip.country_database, geoip.asn_database and each key of the fleet block, when the
	// file sets them; "fleet" is the fleet block's header.
	Set map[string]Setting
}

// Setting is where a key is written in the config file.
type Setting struct {
	// Range is the whole attribute, from its name; Value is its value.
	Range, Value hcl.Range
}

// Interface is one network interface to attach the datapath to.
type Interface struct {
	// Name is the interface name, e.g. "eth0"; or InterfaceAuto, or a pattern (see IsInterfacePattern): the
	// agent resolves those on the host (ResolveInterface).
	Name string
	// Attach is the XDP attach mode: "auto" (native if the driver supports it, else generic), "native" or "generic".
	Attach string
	// Range is the position of the interface block's header in the config file.
	Range hcl.Range
}

// List is an allow or block list: prefixes written in the config plus prefixes read from list files.
type List struct {
	// CIDRs are the prefixes written inline, masked, with IPv4-mapped IPv6 addresses unmapped. A bare address is
	// a /32 or /128.
	CIDRs []netip.Prefix `hcl:"cidrs"`
	// Files are the list files named in the config, already read.
	Files []ListFile `hcl:"files"`
	// Range is the position of the list's block header in the config file.
	Range hcl.Range
}

// ListFile is one list file and the prefixes read from it.
type ListFile struct {
	// Path is the absolute path of the file.
	Path string
	// Entries are the file's prefixes, normalised like List.CIDRs, sorted (listset.Compare), each once: a line
	// that repeats an earlier one adds nothing.
	Entries []listset.Key
	// Range is the position of the file's element in the list's files.
	Range hcl.Range
}

// Limits holds the per-source rate limits.
type Limits struct {
	// IPv6Prefix is the prefix length IPv6 sources are grouped by (one bucket per /IPv6Prefix), 1..128.
	IPv6Prefix int `hcl:"ipv6_prefix"`
	// Default is the limit for all traffic of a source; the zero Limit means no default limit.
	Default Limit `hcl:"default"`
	// Rules are the per-protocol/port limits, in config order; their match sets do not overlap.
	Rules []Rule `hcl:"rule"`
	// Classes scale the limits of groups of sources.
	Classes []Class `hcl:"class"`
	// ThrottleMultiplier scales the limits of a source under a throttle verdict, in (0, 1000].
	ThrottleMultiplier float64 `hcl:"throttle_multiplier"`
	// Aggregate limits every IPv4 /IPv4Prefix and IPv6 /IPv6Prefix as one source; it holds when per-source
	// state is evicted by a flood of sources. The zero Limit means off.
	Aggregate Aggregate `hcl:"aggregate"`
	// NewSources caps the packets per second that may create per-source state (sources not tracked yet);
	// over it they are dropped and nothing is created. The zero Limit means off.
	NewSources Limit `hcl:"new_sources,packets"`
}

// Aggregate is a limit on a prefix of sources taken together.
type Aggregate struct {
	// Limit is the prefix's limit; zero: no aggregate limit.
	Limit `hcl:",squash"`
	// IPv4Prefix is the IPv4 prefix length sources are grouped by, 1..32 (default 24).
	IPv4Prefix int `hcl:"ipv4_prefix"`
	// IPv6Prefix is the IPv6 prefix length sources are grouped by, 1..128 (default 48).
	IPv6Prefix int `hcl:"ipv6_prefix"`
}

// Limit is a token-bucket limit on packets and/or bytes. A zero PPS means no packet-rate limit; a zero
// BytesPerSec means no byte-rate limit.
type Limit struct {
	// PPS is the packet rate in packets per second, 0..4294967295.
	PPS uint64 `hcl:"pps"`
	// Burst is the packet bucket size, 1..1e9 when PPS is set (default: PPS, at most 1e9), else 0.
	Burst uint64 `hcl:"burst"`
	// BytesPerSec is the byte rate, 0..4294967295 (34.3 Gbit/s).
	BytesPerSec uint64 `hcl:"bandwidth"`
	// ByteBurst is the byte bucket size (default: max(BytesPerSec, 65536)) when BytesPerSec is set, else 0.
	ByteBurst uint64 `hcl:"bandwidth_burst"`
}

// Rule is a limit for one protocol and, for tcp and udp, a set of destination ports.
type Rule struct {
	// Name is unique, matches ^[a-z0-9][a-z0-9_.-]{0,31}$ and is not "default".
	Name string
	// Protocol is "tcp", "udp", "icmp" or "icmpv6".
	Protocol string
	// Ports are the destination ports, sorted and merged; for tcp and udp rules without ports it is the single
	// range 0-65535; for icmp and icmpv6 it is nil.
	Ports []PortRange
	// SYN limits only TCP segments with SYN set and ACK clear (tcp_flags = "syn").
	SYN bool
	// Limit is the rule's limit; at least one of PPS and BytesPerSec is set.
	Limit Limit
	// Range is the position of the rule block's header in the config file.
	Range hcl.Range
}

// PortRange is an inclusive range of ports.
type PortRange struct {
	// Lo is the first port of the range.
	Lo uint16
	// Hi is the last port of the range, >= Lo.
	Hi uint16
}

// Class scales the limits of the sources in its CIDRs.
type Class struct {
	// Name is unique and matches ^[a-z0-9][a-z0-9_.-]{0,31}$.
	Name string
	// CIDRs are the class's prefixes, normalised; no prefix is in two classes.
	CIDRs []netip.Prefix
	// Multiplier scales every limit for these sources, in (0, 1000].
	Multiplier float64
	// Range is the position of the class block's header in the config file.
	Range hcl.Range
}

// Metrics configures the Prometheus metrics endpoint.
type Metrics struct {
	// Listen is the host:port to serve /metrics on; "" disables the endpoint.
	Listen string `hcl:"listen"`
}

// Log configures logging.
type Log struct {
	// Level is "trace", "debug", "info", "warn" or "error".
	Level string `hcl:"level"`
	// Format is "text" or "json".
	Format string `hcl:"format"`
	// AuditFile is the absolute path of the audit log; "" disables it.
	AuditFile string `hcl:"audit_file"`
}

// Control configures the control API.
type Control struct {
	// Socket is the absolute path of the unix socket.
	Socket string `hcl:"socket"`
}

// Maps holds the maximum number of entries of each kernel map. Every value set is in 1..67108864; zero is not
// set: the compile step (agent/desired) gives it the datapath's default.
type Maps struct {
	// Sources is the size of the per-source state LRU.
	Sources uint32 `hcl:"sources"`
	// RuleBuckets is the size of the per-source, per-rule token bucket LRU.
	RuleBuckets uint32 `hcl:"rule_buckets"`
	// Verdicts is the size of the verdict map (throttle/block with expiry).
	Verdicts uint32 `hcl:"verdicts"`
	// AllowHosts is the size of the allow-list exact-host map (/32 and /128 entries).
	AllowHosts uint32 `hcl:"allow_hosts"`
	// AllowPrefixes is the size of the allow-list LPM trie (shorter prefixes).
	AllowPrefixes uint32 `hcl:"allow_prefixes"`
	// BlockHosts is the size of the block-list exact-host map.
	BlockHosts uint32 `hcl:"block_hosts"`
	// BlockPrefixes is the size of the block-list LPM trie.
	BlockPrefixes uint32 `hcl:"block_prefixes"`
	// Classes is the size of the class LPM trie.
	Classes uint32 `hcl:"classes"`
	// Aggregates is the size of the aggregate limit's bucket LRU (one per IPv4 /24 or IPv6 /48 seen).
	Aggregates uint32 `hcl:"aggregates"`
	// EventsRingKiB is the size of the events ring buffer in KiB, a power of two in 4..262144.
	EventsRingKiB uint32 `hcl:"events_ring_kib"`
}

// Events configures the drop events the datapath sends to user space.
type Events struct {
	// SampleEvery sends one drop event in SampleEvery; 0 disables drop events.
	SampleEvery uint32 `hcl:"sample_every"`
	// MaxPerSecond caps the events sent per second, at least 1.
	MaxPerSecond uint32 `hcl:"max_per_second"`
	// Dir is where the flight recorder keeps its pcapng files; "" disables it.
	Dir string `hcl:"dir"`
	// MaxFileMiB rotates a file at this size, 1..4096.
	MaxFileMiB uint32 `hcl:"max_file_mib"`
	// MaxFiles is how many files are kept (the oldest are deleted), 1..10000.
	MaxFiles uint32 `hcl:"max_files"`
}

// Reputation configures the scoring engine.
type Reputation struct {
	// Mode is "enforce", "shadow" (compute and log verdicts without enforcing them) or "off".
	Mode string `hcl:"mode"`
	// Interval is the scoring period, 100ms..1h.
	Interval time.Duration `hcl:"interval"`
	// ThrottleScore is the score from which a source is throttled; 0 < ThrottleScore <= BlockScore.
	ThrottleScore int `hcl:"throttle_score"`
	// BlockScore is the score from which a source is blocked; BlockScore <= 100.
	BlockScore int `hcl:"block_score"`
	// ThrottleFor is how long a throttle verdict lasts, at least 1s.
	ThrottleFor time.Duration `hcl:"throttle_for"`
	// BlockFor is how long a first block verdict lasts, at least 1s; it doubles for each repeat.
	BlockFor time.Duration `hcl:"block_for"`
	// MaxBlockFor caps the doubling of BlockFor; MaxBlockFor >= BlockFor.
	MaxBlockFor time.Duration `hcl:"max_block_for"`
	// MaxVerdicts caps the number of active verdicts, at least 1; the compile step refuses more than the verdict
	// map holds.
	MaxVerdicts uint32 `hcl:"max_verdicts"`
	// Protect lists prefixes that are never throttled or blocked by the engine, normalised.
	Protect []netip.Prefix `hcl:"protect"`
	// Weights are the behaviour components' weights.
	Weights Weights `hcl:"weights"`
	// ScanWindow is the epoch of the datapath's scan sketches, 1s..1h, rounded down to a power of two
	// nanoseconds (maps.ScanShift); port_scan_long and horizontal_scan count the last one to two epochs.
	ScanWindow time.Duration `hcl:"scan_window"`
}

// Weights are the maximum contribution of each behaviour component to a score, each in 0..100.
type Weights struct {
	// RateAnomaly weighs a packet or byte rate far above the learnt baseline (key rate_anomaly).
	RateAnomaly float64 `hcl:"rate_anomaly"`
	// SYNRatio weighs a high ratio of SYN-without-ACK segments (key syn_ratio).
	SYNRatio float64 `hcl:"syn_ratio"`
	// PortScan weighs many distinct destination ports per second (key port_scan).
	PortScan float64 `hcl:"port_scan"`
	// RatelimitDrops weighs drops by the rate limiter (key ratelimit_drops).
	RatelimitDrops float64 `hcl:"ratelimit_drops"`
	// Malformed weighs malformed packets (key malformed).
	Malformed float64 `hcl:"malformed"`
	// Repeat weighs earlier verdicts against the source (key repeat).
	Repeat float64 `hcl:"repeat"`
	// PortScanLong weighs many distinct ports of connection attempts over the scan window (key port_scan_long).
	PortScanLong float64 `hcl:"port_scan_long"`
	// HorizontalScan weighs many distinct destination addresses of connection attempts over the scan window
	// (key horizontal_scan).
	HorizontalScan float64 `hcl:"horizontal_scan"`
	// UniformFlood weighs a fast stream of one repeated UDP datagram (key uniform_flood).
	UniformFlood float64 `hcl:"uniform_flood"`
}

// Feed is a threat feed, read from a URL or a file.
type Feed struct {
	// Name is unique and matches ^[a-z0-9][a-z0-9_.-]{0,31}$.
	Name string
	// URL is the http or https URL to fetch; exactly one of URL and Path is set.
	URL string
	// Path is the absolute path of the file to read; exactly one of URL and Path is set.
	Path string
	// Format is "spamhaus", "spamhaus-json", "netset", "plain" or "abuseipdb-json".
	Format string
	// Refresh is the period between fetches, at least 1m.
	Refresh time.Duration
	// Action is "block" (entries go to the block list) or "score" (membership adds Weight to the score).
	Action string
	// Weight is the score contribution of membership, in (0, 100] with action "score", else 0.
	Weight float64
	// MaxEntries caps the entries taken from the feed, 1..67108864.
	MaxEntries uint32
	// MinConfidence is the lowest abuseConfidenceScore taken from an abuseipdb-json feed, 0..100.
	MinConfidence int
	// AllowShrink accepts an update that shrinks the feed by more than half instead of holding it back.
	AllowShrink bool
	// Range is the position of the feed block's header in the config file.
	Range hcl.Range
}

// Safety holds the rails that keep a poisoned or broken outside source (a threat feed) from cutting the host off.
// Entries that overlap the host's own addresses, its default gateways, the allow list or reputation.protect are
// always refused; these are the limits that can be tuned.
type Safety struct {
	// MinPrefixIPv4 is the shortest IPv4 prefix length accepted from a source, 1..32 (default 8).
	MinPrefixIPv4 int `hcl:"min_prefix_ipv4"`
	// MinPrefixIPv6 is the shortest IPv6 prefix length accepted from a source, 1..128 (default 32).
	MinPrefixIPv6 int `hcl:"min_prefix_ipv6"`
	// MaxGrowthIPv4 bounds how many IPv4 addresses one update of a source may add to what it covers: at most
	// the addresses of one /MaxGrowthIPv4, 0..32 (default 5); 0 allows any growth.
	MaxGrowthIPv4 int `hcl:"max_growth_ipv4"`
	// MaxGrowthIPv6 is MaxGrowthIPv4 for IPv6, 0..128 (default 24).
	MaxGrowthIPv6 int `hcl:"max_growth_ipv6"`
}

// GeoIP configures the optional MaxMind databases and the weights of countries and ASNs.
type GeoIP struct {
	// CountryDatabase is the absolute path of an existing country .mmdb file, or "".
	CountryDatabase string `hcl:"country_database"`
	// ASNDatabase is the absolute path of an existing ASN .mmdb file, or "".
	ASNDatabase string `hcl:"asn_database"`
	// CountryWeights maps ISO 3166-1 alpha-2 codes (uppercase) to a weight in 0..100.
	CountryWeights map[string]float64 `hcl:"country_weights"`
	// ASNWeights maps autonomous system numbers to a weight in 0..100.
	ASNWeights map[uint32]float64 `hcl:"asn_weights"`
}

// Fleet is the fleet block as written: the compile step (agent/desired) fills in the defaults of the keys left
// out (zero here) and checks what depends on this host (the node name's default) and on other blocks.
type Fleet struct {
	// Servers are the NATS server URLs (nats or tls, with a host), at least one.
	Servers []string `hcl:"servers"`
	// Node is this agent's issuer name, [A-Za-z0-9_-], 1 to 64 characters; "" is the short hostname.
	Node string `hcl:"node"`
	// CredsFile is the absolute path of an existing NATS credentials file (JWT and nkey seed), or "".
	CredsFile string `hcl:"creds_file"`
	// User and PasswordFile (absolute, existing) are the alternative to CredsFile; both or neither are set.
	User         string `hcl:"user"`
	PasswordFile string `hcl:"password_file"`
	// TLS is the client's TLS material.
	TLS FleetTLS `hcl:"tls"`
	// Bucket is the key-value bucket of verdicts, [A-Za-z0-9_-], 1 to 64 characters; "" is the default.
	Bucket string `hcl:"bucket"`
	// Replicas is the bucket's replica count when the agent creates it, 1..5; 0 is the default.
	Replicas int `hcl:"replicas"`
	// Publish lists which local verdicts are published: "scorer" (the engine's enforced verdicts) and "cli"
	// (operator actions with --fleet); nil is the default (both), an empty list publishes nothing.
	Publish []string `hcl:"publish"`
	// MaxTTL bounds the life of a fleet verdict, 1m..365d; 0 is the default.
	MaxTTL time.Duration `hcl:"max_ttl"`
	// IssuerRate caps the verdicts per second one issuer may publish, in (0, 1000000]; 0 is the default.
	IssuerRate float64 `hcl:"issuer_rate"`
	// IssuerBurst is the issuer cap's bucket size, 1..1000000000; 0 is the default.
	IssuerBurst int `hcl:"issuer_burst"`
	// MaxActive caps the active fleet verdicts, 1..67108864; 0 is the default.
	MaxActive int `hcl:"max_active"`
	// Buffer bounds the verdicts kept for publishing while the bus is down, 1..67108864; 0 is the default.
	Buffer int `hcl:"buffer"`
	// Detection is the detection sub-block: fleet-wide detection (zero: role none).
	Detection FleetDetection `hcl:"detection"`
}

// CrowdSec is the crowdsec block as written: the compile step (agent/desired) fills in the defaults of the keys
// left out (zero here).
type CrowdSec struct {
	// LAPIURL is the local API's http or https URL, as in "http://127.0.0.1:8080".
	LAPIURL string `hcl:"lapi_url"`
	// APIKeyFile is the absolute path of an existing file holding the bouncer's API key (its first line), or ""
	// with a TLS client certificate.
	APIKeyFile string `hcl:"api_key_file"`
	// TLS is the client's TLS material (the same keys as the fleet's).
	TLS FleetTLS `hcl:"tls"`
	// Scopes are the decision scopes taken, "ip" and "range"; nil is the default (both).
	Scopes []string `hcl:"scopes"`
	// Origins are the decision origins taken (as in "cscli", "crowdsec", "CAPI"); nil or empty takes all.
	Origins []string `hcl:"origins"`
	// Actions maps decision types to "block" or "throttle"; nil is the default ({ ban = "block" }).
	Actions map[string]string `hcl:"actions"`
	// Interval is how often the decision stream is pulled, 100ms..1h; 0 is the default.
	Interval time.Duration `hcl:"interval"`
	// Resync is how often a full (startup) pull replaces the deltas, 1s..24h; 0 is the default.
	Resync time.Duration `hcl:"resync"`
	// MaxDecisions caps the decisions held, 1..67108864; 0 is the default.
	MaxDecisions int `hcl:"max_decisions"`
	// Machine and PasswordFile (absolute, existing) are the machine credentials that make the agent push its
	// engine's verdicts to the LAPI as alerts; both or neither are set.
	Machine      string `hcl:"machine"`
	PasswordFile string `hcl:"password_file"`
	// PushQueue bounds the alerts waiting to be pushed, 1..1000000; 0 is the default.
	PushQueue int `hcl:"push_queue"`
}

// FleetTLS is where the fleet client's TLS material is: absolute paths of existing files, or "".
type FleetTLS struct {
	// CAFile verifies the servers; "" uses the system's roots.
	CAFile string `hcl:"ca_file"`
	// CertFile and KeyFile are the client certificate and its key; both or neither are set.
	CertFile string `hcl:"cert_file"`
	KeyFile  string `hcl:"key_file"`
}

// Options change how a config is checked.
type Options struct {
	// SkipInterfaceCheck skips checking that each configured interface exists on this host (only the name's
	// syntax is checked). Use it to check a config meant for another host.
	SkipInterfaceCheck bool
	// Offline skips every check of this host's facts, for validating a config on another machine (in CI): that
	// the interfaces exist, that list files and GeoIP databases exist (files that exist are still read and
	// checked) and that feed files are readable. What the file itself says is checked in full.
	Offline bool
}

// Loader loads configs and keeps the parsed source of the last one, so diagnostics can be printed with snippets.
// The zero Loader is ready to use and checks interfaces.
type Loader struct {
	// Options apply to every Load and Parse.
	Options Options

	files map[string]*hcl.File
}

// Load reads, parses and validates the config at path: a file, or a directory whose *.hcl files are merged (see
// Loader.Load). Files named in allow/block `files` are read and parsed too (relative paths are relative to the
// config file's directory). On error, cfg is nil and diags has errors; on
// success diags may still hold warnings, which the caller should print.
func Load(path string) (*Config, hcl.Diagnostics) {
	return LoadWithOptions(path, Options{})
}

// LoadWithOptions is Load with options.
func LoadWithOptions(path string, opts Options) (*Config, hcl.Diagnostics) {
	l := Loader{Options: opts}
	return l.Load(path)
}

// Parse is Load for in-memory source (filename used in diagnostics and to resolve relative paths).
func Parse(filename string, src []byte) (*Config, hcl.Diagnostics) {
	return ParseWithOptions(filename, src, Options{})
}

// ParseWithOptions is Parse with options.
func ParseWithOptions(filename string, src []byte, opts Options) (*Config, hcl.Diagnostics) {
	l := Loader{Options: opts}
	return l.Parse(filename, src)
}

// Parse is the package-level Parse with l's options; afterwards Files returns the parsed source.
func (l *Loader) Parse(filename string, src []byte) (*Config, hcl.Diagnostics) {
	file, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	l.files = map[string]*hcl.File{filename: file}
	if diags.HasErrors() {
		return nil, sortDiagnostics(diags)
	}
	return l.decode(file.Body, filepath.Dir(filename))
}

// decode decodes and validates body, whose relative paths are relative to dir.
func (l *Loader) decode(body hcl.Body, dir string) (*Config, hcl.Diagnostics) {
	d := &decoder{opts: l.Options, dir: dir}
	cfg := d.root(body)
	if d.diags.HasErrors() {
		return nil, sortDiagnostics(d.diags)
	}
	return cfg, sortDiagnostics(d.diags)
}

// Files returns the source files parsed by the last Load or Parse, keyed by file name, for WriteDiagnostics.
func (l *Loader) Files() map[string]*hcl.File {
	return l.files
}
