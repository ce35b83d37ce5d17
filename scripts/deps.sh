#!/usr/bin/env bash
# Installs what building and testing Bulwark needs, with apt-get, when it is
# missing: clang and llvm (BPF objects), libbpf-dev (BPF headers), iproute2
# (namespaces), nftables (benchmarks against nft), tmux (the bulwark top
# test drives the terminal view), systemd-analyze (the unit is verified),
# setpriv (least-privilege tests). Nothing is done when all is present.
set -euo pipefail

need=()
command -v clang >/dev/null || need+=(clang)
command -v llvm-strip >/dev/null || need+=(llvm)
[ -f /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
[ -f /usr/include/linux/bpf.h ] || need+=(linux-libc-dev)
command -v ip >/dev/null || need+=(iproute2)
command -v nft >/dev/null || need+=(nftables)
command -v tmux >/dev/null || need+=(tmux)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v setpriv >/dev/null || need+=(util-linux)

[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
	echo "deps: missing ${need[*]}; install them (Debian/Ubuntu: apt-get install ${need[*]})" >&2
	exit 1
fi
echo "deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
