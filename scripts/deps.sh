#!/usr/bin/env bash
# Installs, with apt-get, what building and testing Bulwark needs and a
# fresh Debian 12 machine with Go lacks. Each program that the code, tests
# and scripts run, and its Debian package:
#   clang (clang) and llvm-strip (llvm): the BPF objects, with libbpf-dev
#     and linux-libc-dev for their headers;
#   ip (iproute2): network namespaces and veths of the tests and the demo;
#   sysctl (procps): settings inside the test namespaces;
#   ethtool (ethtool): veth offloads and XDP counters in the nft benchmark;
#   nft (nftables): the benchmark against nftables, and the migration
#     test builds nft sets to import (test/migrate);
#   ipset (ipset): the migration test builds ipset sets to import;
#   fail2ban-server and fail2ban-client (fail2ban): the fail2ban action's
#     test runs a real fail2ban (test/fail2ban);
#   tmux (tmux): the bulwark top test drives the terminal view;
#   systemd-analyze and systemctl (systemd): the unit is verified, and
#     scripts/install.sh reloads it;
#   setpriv (util-linux): least-privilege tests;
#   promtool and prometheus (prometheus): the alert rules' unit tests and
#     the dashboard test against a real Prometheus (test/observability);
#   git (git) and make (make): the Makefile and .ci/run;
#   curl (curl): the README's runbook reads the metrics with it, and
#     test/runbook runs the runbook's commands;
#   logrotate (logrotate): the audit log's rotation test runs the
#     packaged snippet (configs/logrotate/bulwark);
#   rpm (rpm): the package test lists the .rpm's files and scripts
#     (the .deb is checked with dpkg and dpkg-query, from dpkg, which every
#     Debian system has; test/crowdsectest reads the firewall bouncer's
#     version with dpkg-query);
#   nats-server (nats-server, 2.9 in Debian 12): the fleet client's
#     compatibility test against the oldest server Bulwark supports (the
#     other fleet tests build the nats-server pinned in go.mod);
#   crowdsec and cscli (crowdsec, 1.4.6 in Debian 12): the CrowdSec
#     bouncer and source tests run their own local API (test/crowdsec);
#   crowdsec-firewall-bouncer (crowdsec-firewall-bouncer): the bench
#     compares Bulwark with it on the same local API.
#   crowdsec's post-install registers with CrowdSec's online API unless
#   /etc/crowdsec/online_api_credentials.yaml exists and is not empty (its
#   README.Debian): this script writes a comment there first, so that the
#   install works offline and the host joins no online service. The
#   firewall bouncer's post-install registers itself with cscli (a
#   database write, no running API). Neither service is left running or
#   enabled: the tests start their own local API.
# Programs of every Debian base system (bash, coreutils, grep, sed, mawk,
# util-linux's nsenter and unshare, apt) and the Go toolchain are not
# checked; test/deps lists them and fails when the code runs anything else
# that this script does not install. Nothing is done when all is present.
set -euo pipefail

need=()
command -v clang >/dev/null || need+=(clang)
command -v llvm-strip >/dev/null || need+=(llvm)
[ -f /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
[ -f /usr/include/linux/bpf.h ] || need+=(linux-libc-dev)
command -v ip >/dev/null || need+=(iproute2)
command -v sysctl >/dev/null || need+=(procps)
command -v ethtool >/dev/null || need+=(ethtool)
command -v nft >/dev/null || need+=(nftables)
command -v ipset >/dev/null || need+=(ipset)
command -v fail2ban-server >/dev/null || need+=(fail2ban)
command -v fail2ban-client >/dev/null || need+=(fail2ban)
command -v tmux >/dev/null || need+=(tmux)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v systemctl >/dev/null || need+=(systemd)
command -v setpriv >/dev/null || need+=(util-linux)
command -v promtool >/dev/null || need+=(prometheus)
command -v prometheus >/dev/null || need+=(prometheus)
command -v git >/dev/null || need+=(git)
command -v make >/dev/null || need+=(make)
command -v curl >/dev/null || need+=(curl)
command -v rpm >/dev/null || need+=(rpm)
command -v logrotate >/dev/null || need+=(logrotate)
command -v nats-server >/dev/null || need+=(nats-server)
command -v crowdsec >/dev/null || need+=(crowdsec)
command -v cscli >/dev/null || need+=(crowdsec)
command -v crowdsec-firewall-bouncer >/dev/null || need+=(crowdsec-firewall-bouncer)

[ ${#need[@]} -eq 0 ] && exit 0
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
	echo "deps: missing ${need[*]}; install them (Debian/Ubuntu: apt-get install ${need[*]})" >&2
	exit 1
fi
echo "deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
capi=/etc/crowdsec/online_api_credentials.yaml
if printf '%s\n' "${need[@]}" | grep -q '^crowdsec' && [ ! -s "$capi" ]; then
	mkdir -p /etc/crowdsec
	echo '# no online API: written by scripts/deps.sh before installing crowdsec' >"$capi"
fi
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
for unit in crowdsec crowdsec-firewall-bouncer; do
	if printf '%s\n' "${need[@]}" | grep -qx "$unit" && [ -d /run/systemd/system ]; then
		systemctl disable --now "$unit.service" >/dev/null 2>&1 || true
	fi
done
