#!/usr/bin/env bash
# make demo: the agent on a namespace testbed with a scripted traffic mix:
# lists, limits, a block by hand, and the reputation engine throttling and
# blocking floods and a port scan (see test/demo). Run as root, after
# `make build`. Extra arguments go to the demo (--duration, --max-duration).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (sudo make demo)" >&2; exit 1; }
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
"$GO" build -o bin/bulwark-demo ./test/demo
exec bin/bulwark-demo --bin bin/bulwark --config configs/demo.hcl "$@"
