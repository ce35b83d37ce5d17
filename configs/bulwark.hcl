## Bulwark configuration reference.
##
## Every key is listed with its default and its valid range. Lines starting with "##" are documentation; lines
## starting with a single "# " are optional settings that are off by default: remove the "# " to use them. As
## written, this file sets every key to its default and attaches to eth0 with no lists and no limits.
##
## Check a config without touching the kernel:   bulwark config check /etc/bulwark/bulwark.hcl
##   (--offline: only what the file says, not this host's interfaces and files; for CI on another machine)
## Apply a changed config to a running agent:    bulwark reload   (or SIGHUP)
##   Keys marked "Restart needed" below cannot change on reload: such a reload is refused with
##   "restart needed: <key>" and the running config is kept. Every other key takes effect on reload.
##
## Syntax: HCL. Strings are in double quotes; "#" starts a comment. Unknown keys are errors.
## Durations: a number and a unit, ms, s, m, h or d (days), as in "500ms", "90s", "5m", "1h", "7d", "1d12h".
## CIDRs: an address ("198.51.100.7", a single host: /32 or /128) or a prefix ("198.51.100.0/24", "2001:db8::/32").
##   A prefix with host bits set ("198.51.100.7/24") is an error. IPv4-mapped IPv6 ("::ffff:198.51.100.7") is
##   treated as IPv4.
## Names of rules, classes and feeds: 1-32 characters of a-z, 0-9, "_", "." and "-", starting with a-z or 0-9.
## Relative file paths (list files, feed paths, GeoIP databases) are relative to this file's directory.
##
## A config may be a directory instead of one file (bulwark run --config /etc/bulwark/conf.d, and the same path
## for config check): its *.hcl files (not those starting with ".") are read in lexical order and merged into one
## config, as if written in one file. A key, or a block that may appear once (limits, maps, ...), set in two files
## is an error naming both files and lines, as are two interface, rule, class or feed blocks of one name. Relative
## paths in any of the files are relative to the directory.
## Environment: any string or number may be env("NAME"), the agent's environment variable NAME, or
## env("NAME", "default"), its default when NAME is unset; an unset variable without a default is an error at
## its line. Inside a string: listen = "${env("NODE_IP")}:9740".

## enforce: drop what the policy says to drop.
## monitor: drop nothing; count it as would_drop in the metrics instead.
## Default "enforce". One of: enforce | monitor.
mode = "enforce"

## What to do with IP packets whose headers cannot be parsed (truncated, bad IHL, ...).
## Default "drop". One of: drop | pass.
malformed = "drop"

## On exit (SIGTERM/SIGINT) Bulwark leaves the program attached and the maps pinned, so filtering continues while
## the agent is down (fail-static). Set to true to detach and remove the pins on exit instead (fail-open).
## Default false.
detach_on_exit = false

## Reload by itself when the config changes: the agent reads its config file (or the *.hcl files of its config
## directory) every 2 seconds and, once a change has stayed the same for one more read, reloads as SIGHUP does.
## A config that is rejected is audited (who "watch"), counted (bulwark_config_reloads_total{result="rejected"},
## bulwark_config_last_reload_successful 0) and logged; the running config stays until the file changes again.
## Off by default: on a host, `systemctl reload bulwark` applies an edit when you say so and reports a rejection
## to you. Turn it on where the file is delivered rather than edited, as a Kubernetes ConfigMap is (the DaemonSet's
## config does). Default false.
watch_config = false

## bpffs directory where the program and maps are pinned. Must be an absolute path. Restart needed.
## Default "/sys/fs/bpf/bulwark".
pin_dir = "/sys/fs/bpf/bulwark"

## One block per interface to filter; at least one is required. The label is the interface name (at most 15
## bytes), "auto" (the interface of the host's default route, IPv4 else IPv6: the same config on hosts whose NICs
## are named differently) or a pattern of names ("en*", "eth[01]": every interface it matches but the loopback).
## Names must be unique. When a label names no interface on the host, the agent does not exit: it waits, shows
## the missing interface in `bulwark status` and the metric bulwark_interface_missing, and attaches when the
## interface appears (checked every 2 s, and at once on SIGHUP or `bulwark reload`). Restart needed (names and
## attach modes).
interface "eth0" {
  ## XDP attach mode: native (in the driver, fastest; fails if the driver lacks XDP support), generic (in the
  ## kernel's network stack, works everywhere, slower) or auto (native if supported, else generic).
  ## Default "auto". One of: auto | native | generic.
  attach = "auto"
}

## Allow list: sources that are always passed, before any other check (block list, verdicts, limits).
## Optional block; default empty.
allow {
  ## CIDRs or addresses. Default [].
  cidrs = []
  ## List files: one CIDR or address per line; "#" and ";" start a comment (whole line or trailing, as in
  ## "1.10.16.0/20 ; SBL256894"); blank lines are ignored. A missing file or a bad line is an error naming the file
  ## and line. At most 64 MiB and 2,000,000 entries per file, and 506 files in allow and block together.
  ## The list's hosts and prefixes of each address family must fit the maps block's sizes. Default [].
  files = []
}

## Block list: sources that are always dropped (unless allow-listed). Same keys as allow. An entry that is also in
## the allow list, or inside an allowed prefix, is a warning: the allow list wins.
## Optional block; default empty.
block {
  cidrs = []
  files = []
}

## Per-source rate limits (token buckets). A source is an IPv4 address or an IPv6 prefix of ipv6_prefix bits.
## Optional block.
limits {
  ## IPv6 sources are grouped by this prefix length, so a host rotating addresses inside its /64 is still one
  ## source. Default 64. Range 1..128.
  ipv6_prefix = 64

  ## Multiplier applied to every limit of a source under a throttle verdict (from the reputation engine).
  ## Default 0.1. Range (0, 1000].
  throttle_multiplier = 0.1

  ## The ceiling on new sources: packets per second that may create per-source state (sources not
  ## tracked yet). Over it they are dropped (rule "new_sources") and nothing is created, so a flood of
  ## spoofed sources cannot push the sources already tracked out of the table. Default pps 50000,
  ## burst 100000. Packets only (no bandwidth).
  new_sources {
    pps   = 50000
    burst = 100000
  }

  ## An aggregate limit on each IPv4 /ipv4_prefix and IPv6 /ipv6_prefix taken as one source (rule
  ## "aggregate"): it holds when per-source state is evicted. Scaled by a source's class, not by a
  ## throttle verdict. Optional block; off by default. ipv4_prefix default 24 (1..32), ipv6_prefix
  ## default 48 (1..128), then the same keys as a limit.
  # aggregate {
  #   ipv4_prefix = 24
  #   ipv6_prefix = 48
  #   pps         = 20000
  #   burst       = 40000
  # }

  ## The limit for all traffic of each source. Optional block; without it there is no default limit.
  ## A limit (here and in rules) needs pps, bandwidth or both:
  ##   pps             packets per second. Range 1..4294967295.
  ##   burst           packet bucket size. Default: pps (at most 1000000000). Range 1..1000000000. Needs pps.
  ##   bandwidth       bytes per second, as a string with a unit: bit, kbit, Mbit, Gbit (bits per second) or
  ##                   B, KB, MB, GB, KiB, MiB, GiB (bytes per second). SI prefixes: k/K = 1000; KiB = 1024.
  ##                   Units are case-sensitive: b is bits, B is bytes. "100Mbit" = 12500000 bytes/s.
  ##                   At most 34.3 Gbit/s (4294967295 bytes/s) per source.
  ##   bandwidth_burst byte bucket size, same units (an amount, not a rate). Default: one second of bandwidth,
  ##                   at least 65536 bytes. Range 1514 bytes (one full-size frame)..4294967295 bytes.
  ##                   Needs bandwidth.
  # default {
  #   pps             = 1000
  #   burst           = 2000
  #   bandwidth       = "100Mbit"
  #   bandwidth_burst = "12500000B"
  # }

  ## Rules limit one protocol (and, for tcp and udp, a set of destination ports) per source, in addition to the
  ## default limit. The label is the rule's name (unique; "default", "aggregate" and "new_sources" are reserved).
  ## At most 253 rules.
  ##   protocol  tcp | udp | icmp | icmpv6. Required.
  ##   ports     tcp and udp only: a list of ports ("53") and ranges ("1000-2000"), 1..65535. Default: every port.
  ##   tcp_flags tcp only: "syn" matches segments with SYN set and ACK clear (connection attempts). Default: all
  ##             segments.
  ##   pps, burst, bandwidth, bandwidth_burst: the limit, as in default.
  ## Two rules may not match the same packets: rules are grouped into tcp, tcp with tcp_flags = "syn", udp, icmp
  ## and icmpv6, and within a group their ports may not overlap (a group without ports covers every port; two
  ## icmp or two icmpv6 rules always overlap). A tcp SYN rule and a plain tcp rule do not overlap.
  # rule "dns" {
  #   protocol = "udp"
  #   ports    = ["53"]
  #   pps      = 50
  #   burst    = 100
  # }
  # rule "syn" {
  #   protocol  = "tcp"
  #   tcp_flags = "syn"
  #   pps       = 20
  #   burst     = 40
  # }
  # rule "web" {
  #   protocol        = "tcp"
  #   ports           = ["80", "443", "8000-8999"]
  #   bandwidth       = "50Mbit"
  #   bandwidth_burst = "8MB"
  # }
  # rule "ping" {
  #   protocol = "icmp"
  #   pps      = 10
  # }

  ## Classes scale every limit of the sources in their CIDRs (partners, monitoring, NAT gateways). The label is
  ## the class's name (unique). At most 255 classes; a CIDR may be in one class only. The longest matching prefix
  ## wins.
  ##   cidrs      list of CIDRs. Required, not empty.
  ##   multiplier factor applied to every limit. Required. Range (0, 1000].
  # class "partners" {
  #   cidrs      = ["198.18.10.0/24"]
  #   multiplier = 10
  # }
}

## Prometheus metrics endpoint (/metrics). Optional block.
metrics {
  ## host:port to listen on; "" disables the endpoint. ":9740" listens on every address.
  ## Default "127.0.0.1:9740". Restart needed.
  listen = "127.0.0.1:9740"
}

## Logging. Logs go to stderr. Optional block.
log {
  ## Default "info". One of: trace | debug | info | warn | error.
  level = "info"
  ## Default "text". One of: text | json. Restart needed.
  format = "text"
  ## Audit log: one JSON line per policy change (who, what, why, when, TTL), append-only. Absolute path; ""
  ## disables it. Default "/var/log/bulwark/audit.jsonl". Restart needed.
  audit_file = "/var/log/bulwark/audit.jsonl"
}

## Control API (used by the bulwark CLI): HTTP+JSON over a unix socket, mode 0600. Optional block.
control {
  ## Absolute path, at most 107 bytes. Default "/run/bulwark/bulwark.sock". Restart needed.
  socket = "/run/bulwark/bulwark.sock"
}

## Maximum entries of each kernel map. Memory is allocated up front for most maps, so size them to the host.
## Every value: range 1..67108864. Optional block. Restart needed (every key).
maps {
  ## Sized to the host when unset: sources, rule_buckets, block_hosts and aggregates are preallocated (or, for
  ## block_hosts, their hash buckets are), so their defaults follow MemTotal (about 2 % of it in all):
  ##   sources = rule_buckets = MemTotal / 16 KiB, rounded down to a power of two, within 16384..1048576;
  ##   block_hosts = the same within 65536..1048576; aggregates = sources / 16 within 4096..65536.
  ## 1 GiB of memory gives 65536 sources (about 26 MiB of kernel memory at load for every map); 16 GiB and
  ## more give the ceilings (about 340 MiB). `bulwark preflight` shows the sizes and their memory, `bulwark
  ## status` the kernel memory in use. Maps pinned already keep their sizes when the agent restarts, unless the
  ## config sets them. The other sizes have fixed defaults.
  ##
  ## Per-source state (token buckets, counters), LRU: the least recently seen source is evicted when full.
  ## Default: sized to the host (above), at most 1048576.
  # sources = 1048576
  ## Per-source, per-rule token buckets, LRU. Default: sized to the host, at most 1048576.
  # rule_buckets = 1048576
  ## Verdicts (throttle/block with expiry) from the CLI and the reputation engine. Default 131072.
  verdicts = 131072
  ## Allow list, single hosts (/32 and /128). Default 65536.
  allow_hosts = 65536
  ## Allow list, shorter prefixes. Default 16384.
  allow_prefixes = 16384
  ## Block list (config, files, feeds, CLI), single hosts. Default: sized to the host, at most 1048576.
  # block_hosts = 1048576
  ## Block list, shorter prefixes. Default 262144.
  block_prefixes = 262144
  ## Class prefixes. Default 16384.
  classes = 16384
  ## Aggregate limit buckets (LRU; one per IPv4 /24 or IPv6 /48 seen), about 100 bytes each, preallocated.
  ## Default: sized to the host, at most 65536.
  # aggregates = 65536
  ## Size of the ring buffer carrying drop events to the agent, in KiB. A power of two, range 4..262144.
  ## Default 1024 (1 MiB).
  events_ring_kib = 1024
}

## Drop events sent from the datapath to the agent (for logs and the reputation engine). Optional block.
events {
  ## Send one drop event in every sample_every drops; 1 sends every drop, 0 disables drop events.
  ## Default 100. Range 0..4294967295.
  sample_every = 100
  ## At most this many events per second. Default 1000. Range 1..4294967295.
  max_per_second = 1000
  ## The flight recorder: sampled drops go to rotating pcapng files here (mode 0600), with the
  ## reason, rule or list and interface in each packet's comment. "" disables it.
  ## Default "/var/lib/bulwark/drops". An absolute path.
  dir = "/var/lib/bulwark/drops"
  ## Rotate a file at this size. Default 16. Range 1..4096.
  max_file_mib = 16
  ## Keep this many files; the oldest are deleted. Default 8. Range 1..10000.
  max_files = 8
}

## Reputation engine: scores every tracked source 0..100 from its behaviour, threat feeds and location, and turns
## scores into throttle or block verdicts with a TTL. Allow-listed and protected sources are never scored into a
## verdict. Optional block.
reputation {
  ## enforce: write verdicts to the kernel. shadow: compute, log and count verdicts without enforcing them.
  ## off: no scoring. Default "off". One of: enforce | shadow | off.
  mode = "off"
  ## Scoring period. Default "1s". Range 100ms..1h.
  interval = "1s"
  ## Score from which a source is throttled (its limits multiplied by limits.throttle_multiplier).
  ## Default 50. Range 1..100, at most block_score.
  throttle_score = 50
  ## Score from which a source is blocked. Default 80. Range 1..100, at least throttle_score.
  block_score = 80
  ## How long a throttle verdict lasts. Default "5m". At least 1s.
  throttle_for = "5m"
  ## How long a first block lasts; each repeat doubles it, up to max_block_for. Default "10m". At least 1s.
  block_for = "10m"
  ## Cap on the doubled block duration. Default "24h". At least block_for.
  max_block_for = "24h"
  ## Cap on active verdicts; when full, the lowest scores give way first. Default 100000.
  ## Range 1..maps.verdicts.
  max_verdicts = 100000
  ## CIDRs the engine never throttles or blocks (your own infrastructure). Default [].
  protect = []
  ## Maximum contribution of each behaviour component to the score. Each: range 0..100.
  ## Written as a map attribute (weights = { ... }) or as a block (weights { ... }); unknown keys are errors.
  weights = {
    ## Packet or byte rate far above the learnt baseline of this host: starts at 8x the
    ## baseline (the median source), full at 128x. Default 50: a flood alone reaches the
    ## throttle score.
    rate_anomaly = 50
    ## Share of SYN-without-ACK segments above one half, weighted by SYN volume. Default 40.
    syn_ratio = 40
    ## Distinct destination ports per second, or over the last minute (slow scans), far
    ## above what clients use. Default 60: a port scan alone reaches the throttle score.
    port_scan = 60
    ## Share of the source's packets over the configured rate limits. Default 30.
    ratelimit_drops = 30
    ## Malformed packets per second (full at 10/s). Default 30.
    malformed = 30
    ## Earlier verdicts against the source, each fading with a half-life of
    ## max_block_for. Default 20.
    repeat = 20
    ## Distinct destination ports of connection attempts (TCP without ACK or RST, UDP but
    ## replies from a service port, ICMP echo) over the scan window: from 24 to 48 (or 4x
    ## and 8x the baseline). Default 80: a scan of any speed, down to 1 port per 10 s,
    ## reaches the block score alone (a throttle changes nothing for a scanner).
    port_scan_long = 80
    ## Distinct destination addresses of connection attempts over the scan window: from 16
    ## to 64 (or 4x and 16x the baseline). Default 80: a sweep of one port over a host's
    ## or a network's addresses reaches the block score alone.
    horizontal_scan = 80
    ## Most of the source's packets the same UDP datagram (port, length, a payload word) as
    ## the one before, at 4x-8x the baseline packet rate or more. Default 50: a flood of one
    ## datagram alone reaches the throttle score from 8x, with rate_anomaly the block score
    ## from about 42x.
    uniform_flood = 50
  }
  ## The scan window: port_scan_long and horizontal_scan count the connection attempts of
  ## the last one to two scan windows (the datapath keeps two generations of them, 56 bytes
  ## per source). Rounded down to a power of two nanoseconds: "10m" is 9m9.8s. Default "10m".
  ## Range 1s..1h.
  scan_window = "10m"
}

## Threat feeds, one block per feed; the label is the feed's name (unique). A feed that fails to download, parse
## or validate keeps its last good version in force. At most 512 feeds with action = "block".
##   url            http(s) URL to fetch; or
##   path           a file to read. Exactly one of url and path is required.
##   format         spamhaus (DROP text, "; " comments) | spamhaus-json (JSON lines) | netset (FireHOL) |
##                  plain (one CIDR or address per line) | abuseipdb-json (AbuseIPDB blacklist). Required.
##   refresh        period between fetches. Default "1h". At least 1m.
##   action         block: entries go to the block list (hits counted per feed); score: membership adds weight
##                  to the score. Default "block". One of: block | score.
##   weight         score contribution with action = "score": required, range (0, 100]. Not allowed with block.
##   max_entries    entries taken at most. Default 1000000. Range 1..67108864.
##   min_confidence abuseipdb-json only: lowest abuseConfidenceScore taken. Default 75. Range 0..100.
##   allow_shrink   accept an update that shrinks the feed by more than half (held back as suspect otherwise).
##                  Default false.
# feed "spamhaus-drop" {
#   url     = "https://www.spamhaus.org/drop/drop_v4.json"
#   format  = "spamhaus-json"
#   refresh = "1h"
#   action  = "block"
# }
# feed "abuseipdb" {
#   path           = "/var/lib/bulwark/feeds/abuseipdb.json"
#   format         = "abuseipdb-json"
#   refresh        = "6h"
#   action         = "score"
#   weight         = 40
#   max_entries    = 10000
#   min_confidence = 90
#   allow_shrink   = true
# }

## Safety rails against a poisoned or broken outside source (threat feeds). An entry from a feed is refused,
## logged and counted (bulwark_feed_entries_refused{feed,reason}) when it overlaps the host's own addresses
## (every interface's), a gateway of its default routes, the allow list or reputation.protect (always, not
## tunable: the entry is refused whole, not narrowed), or when it is broader than the limits below. A feed
## update that would make the feed cover too much more address space at once is held back like a shrunk one:
## the last good version stays in force (bulwark_feed_errors_total{kind="growth"}). Optional block.
safety {
  ## Entries shorter than this are refused ("too_broad"). Default 8 (a /7 or broader is refused).
  ## Range 1..32.
  min_prefix_ipv4 = 8
  ## The same for IPv6. Default 32 (a /31 or broader is refused). Range 1..128.
  min_prefix_ipv6 = 32
  ## An update may add at most the addresses of one /N to the IPv4 space the feed covers (after refused
  ## entries are left out; the first version counts from nothing). Default 5 (134217728 addresses, eight
  ## /8s, 1/32 of IPv4). Range 0..32; 0 allows any growth.
  max_growth_ipv4 = 5
  ## The same for IPv6. Default 24 (256 /32s). Range 0..128; 0 allows any growth.
  max_growth_ipv6 = 24
}

## Location (optional): MaxMind country and ASN databases (.mmdb) and the score weight of countries and ASNs.
##   country_database path of a country database; must exist. Default: none.
##   asn_database     path of an ASN database; must exist. Default: none.
##   country_weights  ISO 3166-1 two-letter uppercase code = weight, range 0..100. Needs country_database.
##   asn_weights      AS number (decimal, 1..4294967295, as a string) = weight, range 0..100. Needs asn_database.
# geoip {
#   country_database = "/var/lib/GeoIP/GeoLite2-Country.mmdb"
#   asn_database     = "/var/lib/GeoIP/GeoLite2-ASN.mmdb"
#   country_weights  = { "XX" = 20 }
#   asn_weights      = { "64496" = 30 }
# }

## Fleet (optional): share verdicts with the other agents of a fleet over NATS JetStream. Without this block the
## agent needs no NATS and nothing changes. Every key but servers may be left out (the defaults below). The fleet
## keys take effect at the agent's start: a reload that changes them is refused ("restart needed").
##   servers       NATS server URLs (nats:// or tls://), 1 to 32. Required.
##   node          this agent's issuer name: 1 to 64 letters, digits, '-' and '_'. Default: the short hostname.
##   creds_file    a NATS credentials file (user JWT and nkey seed); must exist. Or user and password_file (must
##                 exist; its first line is the password). At most one of the two ways. Default: none.
##   tls           ca_file verifies the servers (default: the system's roots); cert_file and key_file (both or
##                 neither) are the client certificate. Each must exist.
##   bucket        the key-value bucket of verdicts: 1 to 64 letters, digits, '-' and '_'. Default "bulwark-verdicts".
##   replicas      the bucket's replicas when this agent creates it, 1..5. Default 3 (use 1 with a single server).
##   publish       which local verdicts are published: "scorer" (the engine's enforced verdicts), "cli" (operator
##                 actions with --fleet: bulwark block add --fleet, bulwark verdicts del --fleet). Default both;
##                 [] publishes nothing (the agent still applies the fleet's verdicts).
##   max_ttl       the longest a fleet verdict lives, 1m..365d; also the default and cap of block add --fleet --ttl.
##                 Default 7d.
##   issuer_rate   verdicts per second one issuer may publish, over (0, 1000000]; over it (with issuer_burst)
##                 its verdicts are refused on every host, counted and audited. Default 100.
##   issuer_burst  the issuer cap's burst, 1..1000000000. Default 1000.
##   max_active    the most fleet verdicts in force, 1..67108864, at most maps verdicts; new targets over it are
##                 refused. Default 100000.
##   buffer        verdicts kept for publishing while the bus is down, 1..67108864. Default 100000.
## A fleet verdict never blocks what this host allows (the allow list, run-time allow entries) or protects
## (reputation.protect, its own addresses and gateways), nor a prefix broader than the safety block's
## min_prefix_ipv4/ipv6: it is refused, counted and audited. A stronger or longer local verdict on the same
## source is kept. `bulwark fleet status` shows the connection and whether this host is in sync.
## detection (sub-block, optional): fleet-wide detection of what no single host sees, e.g. a source probing a few
## ports on each of many hosts. Each agent with role publish or aggregate publishes, every window, a summary of
## what it saw (per source: the distinct destination ports, from the datapath's port sketch, and packets; at most
## 64 KiB: sources with the most ports first, then the heaviest; the rest counted as omitted) to the summary stream
## (subject bulwark-summaries.<node>). An aggregator (role aggregate, or `bulwark fleet aggregate --config FILE`;
## run two for availability: they write the same verdict, not two) merges each window and blocks, for ttl, every
## source seen on >= min_hosts hosts and >= min_ports distinct ports fleet-wide; issuer "aggregate", reason e.g.
## "fleet: seen on 14 hosts, 3 ports each (42 distinct) in 60 s" (shown by bulwark explain).
##   role          none (default), publish, or aggregate (publish and aggregate).
##   window        the summaries' window, whole seconds, 1s..1h. Default "1m" (windows start at multiples of it).
##   min_hosts     2..100000. Default 3.       min_ports   2..200 (fleet-wide distinct ports). Default 12.
##   action        block (default) or throttle.    ttl     the verdict's life from the window's end. Default "1h".
##   grace         how long after a window's end its summaries still count (by the servers' clocks), at most the
##                 window. Default a quarter of the window, at least 2s.
##   max_sources   the sources an aggregator merges per window, 1..100000000. Default 1000000.
# fleet {
#   servers       = ["nats://198.19.0.1:4222", "nats://198.19.0.2:4222", "nats://198.19.0.3:4222"]
#   node          = "edge-1"
#   creds_file    = "/etc/bulwark/fleet.creds"
#   tls {
#     ca_file   = "/etc/bulwark/fleet-ca.pem"
#     cert_file = "/etc/bulwark/fleet-cert.pem"
#     key_file  = "/etc/bulwark/fleet-key.pem"
#   }
#   bucket        = "bulwark-verdicts"
#   replicas      = 3
#   publish       = ["scorer", "cli"]
#   max_ttl       = "7d"
#   issuer_rate   = 100
#   issuer_burst  = 1000
#   max_active    = 100000
#   buffer        = 100000
#   detection {
#     role      = "publish"
#     window    = "1m"
#     min_hosts = 3
#     min_ports = 12
#   }
# }

## Attack signatures (docs/datapath.md, "Attack signatures"): masked-header rules checked after the allow list and
## before the block list and every per-source limit, so a flood of spoofed sources creates no state. At most 8
## blocks; the datapath holds 16 signatures with the ones detection and `bulwark signatures add` write.
##   match    key=value words, all must hold: protocol (tcp, udp, icmp, icmpv6 or a number), dst_port, src_port,
##            ttl, ip_length, window (n or lo-hi), df, ip_id_zero (true/false), tcp_flags (syn, synack, ack, rst,
##            fin or value/mask: 0x02/0x12), tcp_options_length, icmp_type, data (hex bytes after the fixed L4
##            header, /mask in hex).
##   action   drop (default), limit (pps and burst: one bucket for every matching packet) or count (shadow).
# signature "syn-flood-80" {
#   match  = "protocol=tcp dst_port=80 tcp_flags=syn ttl=240-255 tcp_options_length=0"
#   action = "limit"
#   pps    = 1000
#   burst  = 2000
# }

## Signatures that detection finds (docs/signatures.md).
##   detect   off (default), shadow (computed, counted and shown, not enforced) or enforce.
##   ttl      how long a detected signature outlives the last anomalous second, 10s..1h. Default "1m".
##   limit_pps, limit_burst   0 (default): an enforced detected signature drops what it matches; above 0 it holds
##            it to limit_pps packets/s instead (one bucket, limit_burst deep, default limit_pps).
##   min_pps  a destination (protocol, port) below this many packets/s is never anomalous. Default 1000.
##   factor   anomalous above factor x its learnt rate (and min_pps), calm again below half that. Default 8.
##   min_new_sources   ... with at least this many new sources/s, or half its packets from new sources. Default 100.
##   sample_every      the datapath samples 1 in sample_every packets per destination and CPU. Default 16.
##   sample_budget     at most this many samples per CPU per second. Default 4096.
signatures {
  detect          = "off"
  ttl             = "1m"
  min_pps         = 1000
  factor          = 8
  min_new_sources = 100
  sample_every    = 16
  sample_budget   = 4096
}

## CrowdSec (optional): make the agent a bouncer of a CrowdSec local API (LAPI), and with machine credentials a
## source of it. Without this block nothing changes. The keys take effect at the agent's start: a reload that
## changes them is refused ("restart needed"). The agent pulls /v1/decisions/stream every interval (a startup pull
## first, then deltas) and applies each decision whose type actions maps, with the decision's remaining duration: a
## decision on one address goes to the verdict map (an IPv6 address blocks its source, the limits' ipv6_prefix), a
## range to the block list (list "crowdsec"). `verdicts list` and `block list` show the origin as
## crowdsec:<origin>/<scenario>. When the LAPI cannot be read or answers an error, what was applied stays in force;
## the next pull that works is a startup pull, diffed against what is in force (deleted decisions missed meanwhile
## are removed, new ones added). `bulwark crowdsec status` shows the state.
##   lapi_url      the LAPI's http or https URL, as in "http://127.0.0.1:8080". Required.
##   api_key_file  the bouncer's key (`cscli bouncers add NAME`), its first line; must exist. Required unless tls
##                 has a client certificate.
##   tls           ca_file verifies the LAPI (default: the system's roots); cert_file and key_file (both or
##                 neither) are a client certificate. Each must exist.
##   scopes        the decision scopes taken: "ip", "range". Default both.
##   origins       the decision origins taken, as in ["cscli", "crowdsec", "CAPI", "lists"]. Default all.
##   actions       decision type -> "block" or "throttle" (throttle: one address only). Default { ban = "block" };
##                 other types are not taken.
##   interval      the time between pulls, 100ms..1h. Default "2s".
##   resync        the time between full (startup) pulls, diffed against what is in force, 1s..24h: the LAPI's
##                 deltas can miss a decision committed while a pull ran. Default "1m". A full pull also follows
##                 a burst of decisions once it settles (at most every 5 intervals).
##   max_decisions the decisions held, 1..67108864, at most maps verdicts; more are refused and counted. Default
##                 maps verdicts. An answer over max_decisions x 1 KiB is refused whole (what is applied stays).
##   machine, password_file  machine credentials (`cscli machines add NAME --password ...`; the file's first line
##                 is the password): the engine's enforced verdicts are pushed to the LAPI as alerts with a
##                 decision (scenario bulwark/scorer, the score's components in the message), so they reach
##                 `cscli decisions list` and the operator's other bouncers. Default: no pushing.
##   push_queue    alerts waiting while the LAPI is down, 1..1000000; one over it is dropped and counted.
##                 Default 10000.
## A decision never blocks what this host allows (the allow list, run-time allow entries) or protects
## (reputation.protect, its own addresses and gateways), nor a range broader than the safety block's
## min_prefix_ipv4/ipv6: it is refused and counted. A stronger or longer verdict of another origin is kept.
# crowdsec {
#   lapi_url      = "http://127.0.0.1:8080"
#   api_key_file  = "/etc/bulwark/crowdsec-bouncer.key"
#   scopes        = ["ip", "range"]
#   actions       = { ban = "block", captcha = "throttle" }
#   interval      = "2s"
#   resync        = "1m"
#   machine       = "bulwark-edge-1"
#   password_file = "/etc/bulwark/crowdsec-machine.password"
# }
