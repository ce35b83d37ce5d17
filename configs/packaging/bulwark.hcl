## Bulwark: the package's default config. It changes nothing on install: the service is not enabled, and
## "CHANGEME" below is not an interface, so `bulwark config check` (run by the unit before every start) refuses
## this file until you set yours. Every key, with its default, is in /usr/share/doc/bulwark/bulwark.hcl.reference.
##
## First steps:
##   1. Set the interface below to the one to filter (ip -br link).
##   2. List your management addresses in allow, so that you cannot lock yourself out later.
##   3. bulwark config check /etc/bulwark/bulwark.hcl
##   4. systemctl enable --now bulwark
##   5. Watch would_drop in the metrics (bulwark status, http://127.0.0.1:9740/metrics) for a while, then set
##      mode = "enforce" and run: systemctl reload bulwark
##
## An upgrade of the package never overwrites this file once you edited it, and restarts the agent only if it was
## running; the XDP program stays attached through the restart (fail-static, detach_on_exit = false).

## monitor: drop nothing, count what would be dropped. enforce: drop.
mode = "monitor"

## Keep the filter attached when the agent stops (restart, upgrade, package removal).
detach_on_exit = false

## The interface to filter: replace CHANGEME with its name.
interface "CHANGEME" {
  attach = "auto"
}

## Sources that are always passed, before any other check: your management and monitoring addresses.
allow {
  cidrs = []
}
