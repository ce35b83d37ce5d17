#!/usr/bin/env bash
# Runs `make test` N times in a row (default 3) while an unrelated CPU hog
# keeps every CPU busy (one `yes >/dev/null` per CPU), to check that no test
# depends on an idle machine. Stops at the first failing run; the hogs are
# killed on exit, also on failure or Ctrl-C. As root:
#   sudo scripts/test-under-load.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "test-under-load: run as root" >&2; exit 1; }
runs=${1:-3}
hogs=()
stop_hogs() {
	if [ ${#hogs[@]} -gt 0 ]; then
		kill "${hogs[@]}" 2>/dev/null || true
	fi
}
trap stop_hogs EXIT
for _ in $(seq "$(nproc)"); do
	yes >/dev/null &
	hogs+=($!)
done
echo "test-under-load: ${#hogs[@]} CPU hogs running (pids ${hogs[*]})"
for i in $(seq "$runs"); do
	start=$(date +%s)
	echo "== make test, run $i of $runs, under load"
	if ! make test; then
		echo "test-under-load: run $i of $runs FAILED after $(($(date +%s) - start))s" >&2
		exit 1
	fi
	echo "test-under-load: run $i of $runs passed in $(($(date +%s) - start))s"
done
echo "test-under-load: $runs of $runs runs passed"
