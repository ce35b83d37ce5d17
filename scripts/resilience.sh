#!/usr/bin/env bash
# make resilience: Bulwark's resilience suite, bounded to 35 minutes in all.
#   1. test/resilience at full size (10M-source flood through the program,
#      agent SIGKILLed mid-flood, 1000-reload storm with 10k API calls, full
#      maps, least privilege), as root;
#   then test/fleet at full size (10 agents and a 3-server JetStream
#      cluster: 5,000 verdicts with a server killed, a 60 s partition, all
#      servers down, all agents restarted, issuer caps, TLS), as root;
#   2. every fuzz target of the module for a bounded time each (60 s, less
#      when the budget is short; the time left is shared evenly).
# A summary table (test, result, key numbers) ends the output; the exit
# status is non-zero when anything failed.
#   sudo scripts/resilience.sh            # the full suite
#   sudo scripts/resilience.sh --quick    # quick sizes, 10 s per fuzz target
# Env: BUDGET (seconds, default 2100), FUZZTIME (seconds per target).
set -uo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "resilience: run as root (sudo make resilience)" >&2; exit 1; }
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
export PATH="$(dirname "$GO"):$PATH"

quick=0
[ "${1:-}" = "--quick" ] && quick=1
budget=${BUDGET:-2100}
if [ $quick -eq 1 ]; then fuzztime=${FUZZTIME:-10}; else fuzztime=${FUZZTIME:-60}; fi
start=$(date +%s)
left() { echo $((budget - ($(date +%s) - start))); }

logdir=$(mktemp -d /tmp/bulwark-resilience-XXXXXX)
trap 'rm -rf "$logdir"' EXIT
rows=()
failed=0

# 1. The suites, each a go test run of one package: rows for the table,
# one per top-level test with its SUMMARY line. Leave at least a minute
# of the budget for fuzzing.
args=()
[ $quick -eq 0 ] && args=(-args -full)
suite() { # suite PACKAGE LOG CAP: at most CAP seconds
	local pkg=$1 log=$2 limit t0 rc
	limit=$(( $(left) - 60 - 8 * 15 ))
	[ $limit -gt "$3" ] && limit=$3
	echo "== ${pkg} ($([ $quick -eq 1 ] && echo quick || echo full), at most ${limit}s)"
	t0=$(date +%s)
	timeout --kill-after=20 "${limit}" "$GO" test -count=1 -timeout "$((limit - 10))s" -v -run . \
		"./${pkg}/" "${args[@]}" 2>&1 | tee "$log" | grep -E '^(--- |\s+---|ok|FAIL|PASS|panic)|SUMMARY|_test.go:'
	rc=${PIPESTATUS[0]}
	echo "== ${pkg}: exit $rc in $(( $(date +%s) - t0 ))s"
	[ $rc -ne 0 ] && failed=1
	while read -r res name secs; do
		note=$(grep -E "SUMMARY ${name}(/[^ ]*)? \|" "$log" | sed -E 's/.*SUMMARY [^|]*\| //' | paste -sd ';' -)
		rows+=("${name}|${res}|${secs}|${note:--}")
	done < <(grep -E '^--- (PASS|FAIL|SKIP): ' "$log" | sed -E 's/^--- (PASS|FAIL|SKIP): ([^ ]+) \(([^)]*)\)/\1 \2 \3/')
	[ $rc -ne 0 ] && ! grep -qE '^--- FAIL' "$log" && rows+=("${pkg}|FAIL|-|exit $rc (timeout or build failure), see the log above")
}
suite test/resilience "$logdir/suite.log" 600
suite test/fleet "$logdir/fleet.log" 900

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
