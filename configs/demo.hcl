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
  ipv6_prefix = 64
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
