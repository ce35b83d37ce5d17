#!/usr/bin/env bash
# Installs, with apt-get, what building and testing Bulwark needs and a
# fresh Debian 12 machine with Go lacks. Each program that the code, tests
# and scripts run, and its Debian package:
#   clang (clang) and llvm-strip (llvm): the BPF objects, with libbpf-dev
#     and linux-libc-dev for their headers;
#   ip (iproute2): network namespaces and veths of the tests and the demo;
#   sysctl (procps): settings inside the test namespaces;
#   ethtool (ethtool): veth offloads and XDP counters in the nft benchmark;
#   nft (nftables): the benchmark against nftables;
#   tmux (tmux): the bulwark top test drives the terminal view;
#   systemd-analyze and systemctl (systemd): the unit is verified, and
#     scripts/install.sh reloads it;
#   setpriv (util-linux): least-privilege tests;
#   promtool and prometheus (prometheus): the alert rules' unit tests and
#     the dashboard test against a real Prometheus (test/observability);
#   git (git) and make (make): the Makefile and .ci/run;
#   logrotate (logrotate): the audit log's rotation test runs the
#     packaged snippet (configs/logrotate/bulwark);
#   rpm (rpm): the package test lists the .rpm's files and scripts
#     (the .deb is checked with dpkg, which every Debian system has).
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
command -v tmux >/dev/null || need+=(tmux)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v systemctl >/dev/null || need+=(systemd)
command -v setpriv >/dev/null || need+=(util-linux)
command -v promtool >/dev/null || need+=(prometheus)
command -v prometheus >/dev/null || need+=(prometheus)
command -v git >/dev/null || need+=(git)
command -v make >/dev/null || need+=(make)
command -v rpm >/dev/null || need+=(rpm)
command -v logrotate >/dev/null || need+=(logrotate)

[ ${#need[@]} -eq 0 ] && exit 0
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
	echo "deps: missing ${need[*]}; install them (Debian/Ubuntu: apt-get install ${need[*]})" >&2
	exit 1
fi
echo "deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
