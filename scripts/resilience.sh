#!/usr/bin/env bash
# make resilience: Bulwark's resilience suite, bounded to 15 minutes in all.
#   1. test/resilience at full size (10M-source flood through the program,
#      agent SIGKILLed mid-flood, 1000-reload storm with 10k API calls, full
#      maps, least privilege), as root;
#   2. every fuzz target of the module for a bounded time each (60 s, less
#      when the budget is short; the time left is shared evenly).
# A summary table (test, result, key numbers) ends the output; the exit
# status is non-zero when anything failed.
#   sudo scripts/resilience.sh            # the full suite
#   sudo scripts/resilience.sh --quick    # quick sizes, 10 s per fuzz target
# Env: BUDGET (seconds, default 900), FUZZTIME (seconds per target).
set -uo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "resilience: run as root (sudo make resilience)" >&2; exit 1; }
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
export PATH="$(dirname "$GO"):$PATH"

quick=0
[ "${1:-}" = "--quick" ] && quick=1
budget=${BUDGET:-900}
if [ $quick -eq 1 ]; then fuzztime=${FUZZTIME:-10}; else fuzztime=${FUZZTIME:-60}; fi
start=$(date +%s)
left() { echo $((budget - ($(date +%s) - start))); }

logdir=$(mktemp -d /tmp/bulwark-resilience-XXXXXX)
trap 'rm -rf "$logdir"' EXIT
rows=()
failed=0

# 1. The suite. Leave at least a minute of the budget for fuzzing.
args=()
[ $quick -eq 0 ] && args=(-args -full)
suite_limit=$(( $(left) - 60 - 8 * 15 ))
[ $suite_limit -gt 600 ] && suite_limit=600
echo "== test/resilience ($([ $quick -eq 1 ] && echo quick || echo full), at most ${suite_limit}s)"
t0=$(date +%s)
timeout --kill-after=20 "${suite_limit}" "$GO" test -count=1 -timeout "$((suite_limit - 10))s" -v -run . \
	./test/resilience/ "${args[@]}" 2>&1 | tee "$logdir/suite.log" | grep -E '^(--- |\s+---|ok|FAIL|PASS|panic)|SUMMARY|_test.go:'
rc=${PIPESTATUS[0]}
echo "== test/resilience: exit $rc in $(( $(date +%s) - t0 ))s"
[ $rc -ne 0 ] && failed=1
# One row per top-level test: its result and its SUMMARY line.
while read -r res name secs; do
	note=$(grep -E "SUMMARY ${name}(/[^ ]*)? \|" "$logdir/suite.log" | sed -E 's/.*SUMMARY [^|]*\| //' | paste -sd ';' -)
	rows+=("${name}|${res}|${secs}|${note:--}")
done < <(grep -E '^--- (PASS|FAIL|SKIP): ' "$logdir/suite.log" | sed -E 's/^--- (PASS|FAIL|SKIP): ([^ ]+) \(([^)]*)\)/\1 \2 \3/')
[ $rc -ne 0 ] && ! grep -qE '^--- FAIL' "$logdir/suite.log" && rows+=("test/resilience|FAIL|-|exit $rc (timeout or build failure), see the log above")

# 2. Fuzzing: every `func FuzzX` of the module, each for a bounded time.
mapfile -t targets < <(grep -rn --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]*\(' . | grep -v '/vendor/' |
	sed -E 's#^\./(.*)/[^/]*_test\.go:[0-9]+:func (Fuzz[A-Za-z0-9_]*)\(.*#\1 \2#' | sort -u)
n=${#targets[@]}
i=0
for t in "${targets[@]}"; do
	pkg=${t% *}
	name=${t#* }
	remaining=$(( n - i ))
	i=$((i + 1))
	# Share what is left evenly, keeping ~15 s per target for building.
	share=$(( ($(left) - 10) / remaining - 15 ))
	ft=$fuzztime
	[ $share -lt $ft ] && ft=$share
	if [ $ft -lt 3 ]; then
		rows+=("fuzz ${name} (./${pkg})|SKIP|-|out of budget")
		continue
	fi
	echo "== fuzz ${name} in ./${pkg} for ${ft}s"
	t0=$(date +%s)
	timeout --kill-after=10 $((ft + 90)) "$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "${ft}s" -fuzzminimizetime 5s "./${pkg}" >"$logdir/fuzz-$name.log" 2>&1
	rc=$?
	execs=$(grep -oE 'execs: [0-9]+' "$logdir/fuzz-$name.log" | tail -1 | grep -oE '[0-9]+')
	newint=$(grep -oE 'new interesting: [0-9]+' "$logdir/fuzz-$name.log" | tail -1 | grep -oE '[0-9]+')
	if [ $rc -eq 0 ]; then
		res=PASS
	else
		res=FAIL
		failed=1
		tail -30 "$logdir/fuzz-$name.log"
	fi
	rows+=("fuzz ${name} (./${pkg})|${res}|$(( $(date +%s) - t0 ))s|${ft}s fuzzing, ${execs:-?} execs, ${newint:-0} new interesting")
done

total=$(( $(date +%s) - start ))
echo
echo "== Resilience summary ($([ $quick -eq 1 ] && echo quick || echo full), ${total}s of a ${budget}s budget)"
printf '%-44s %-5s %-9s %s\n' TEST RESULT TIME 'KEY NUMBERS'
for r in "${rows[@]}"; do
	IFS='|' read -r name res secs note <<<"$r"
	printf '%-44s %-5s %-9s %s\n' "$name" "$res" "$secs" "$note"
done
if [ $failed -ne 0 ]; then
	echo "resilience: FAILED"
	exit 1
fi
echo "resilience: ok"
