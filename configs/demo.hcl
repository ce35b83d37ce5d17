# The config `make demo` runs. The demo fills in @IFACE@, @SOCKET@, @PINDIR@,
# @AUDIT@ and @EVENTS@ for its testbed. Limits here are what the demo's expected
# outcomes are computed from.
mode      = "enforce"
malformed = "drop"
pin_dir   = "@PINDIR@"

interface "@IFACE@" {
  attach = "native"
}

block {
  cidrs = ["198.18.66.0/24"]
}

limits {
  ipv6_prefix         = 64
  throttle_multiplier = 0.1
  default {
    pps   = 200
    burst = 200
  }
  rule "syn" {
    protocol  = "tcp"
    tcp_flags = "syn"
    pps       = 20
    burst     = 40
  }
  class "partners" {
    cidrs      = ["198.18.10.0/24"]
    multiplier = 10
  }
}

# The reputation engine, enforcing, with the default weights. With a few
# ordinary clients under 10 packets/s its baseline stays at its floor, so a
# flood held by the limits scores rate_anomaly (up to 50) + ratelimit_drops
# (30): 80 at most, throttled; a SYN flood or a port scan adds syn_ratio or
# port_scan and is blocked. block_score is 85 (default 80) so that the two
# kinds get different verdicts.
reputation {
  mode           = "enforce"
  interval       = "1s"
  throttle_score = 50
  block_score    = 85
  throttle_for   = "5m"
  block_for      = "10m"
}

metrics {
  listen = ""
}

log {
  level      = "info"
  audit_file = "@AUDIT@"
}

control {
  socket = "@SOCKET@"
}

# The flight recorder writes into the demo's temporary directory.
events {
  dir = "@EVENTS@"
}

maps {
  sources      = 65536
  rule_buckets = 65536
  block_hosts  = 65536
}
