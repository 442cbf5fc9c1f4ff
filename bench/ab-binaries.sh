#!/usr/bin/env bash
# Two iamgate binaries against each other on the proxied, policy-decided GET (bootstrap account,
# company route, nginx as the upstream), in alternating rounds so the machine's speed phases
# fall on both alike: ROUNDS rounds of DURATION seconds each at CONNS connections (wrk -t2).
# Prints each leg's req/s, p99 and CPU time per request (user, system; /proc), the ratio of the
# median req/s (B / A) and the median CPU time per request of each.
# With RATE set, each leg offers RATE req/s over 64 connections instead (oha, latency corrected)
# and the comparison is of p99 and CPU time per request at that load, as an ingress's steady
# traffic is, rather than of the saturated rate.
#   bench/ab-binaries.sh A_BINARY B_BINARY
#   RATE=5000 bench/ab-binaries.sh A_BINARY B_BINARY
#   e.g. A = the default build (mimalloc), B = cargo build --release --no-default-features
# Needs: wrk (oha with RATE), nginx, curl, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: $0 A_BINARY B_BINARY" >&2; exit 2; }
A=$(realpath "$1")
B=$(realpath "$2")
UP_PORT=${UP_PORT:-18401}
GW_PORT=${GW_PORT:-18402}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
. bench/common.sh
ports_free "$UP_PORT" "$GW_PORT"
start_nginx 1
path=/api/tenants/acme/marketplace/items/item1/versions

# leg NAME BINARY ROUND: a fresh gateway from BINARY, one wrk run, stopped.
leg() {
    local dir=$work/$1-$3
    mkdir -p "$dir"
    gateway_yaml "$dir" >"$dir.yaml"
    "$2" serve --config "$dir.yaml" >"$dir.log" 2>&1 &
    local pid=$!
    pids+=($pid)
    wait_http "http://127.0.0.1:$GW_PORT/-/healthz" "$dir.log"
    local token
    token=$(bootstrap_token "$1-$3/data" "http://127.0.0.1:$GW_PORT")
    printf 'wrk.headers["Authorization"] = "Bearer %s"\n' "$token" >"$dir/auth.lua"
    cpu_before "$pid"
    if [ -n "${RATE:-}" ]; then
        oha_leg "$1" "http://127.0.0.1:$GW_PORT$path" -H "Authorization: Bearer $token"
        cat "$work/$1.fixed" >"$work/$1-$3.fixed"
    else
        wrk_leg "$1" "http://127.0.0.1:$GW_PORT$path" "$dir/auth.lua"
    fi
    cpu_after "$pid" "$1-$3" | sed 's/^/    /'
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}

echo "A=$A"
echo "B=$B"
for r in $(seq 1 "$ROUNDS"); do
    leg A "$A" "$r"
    leg B "$B" "$r"
done
python3 - "$work" "${RATE:-}" <<'PY'
import glob, statistics, sys
if sys.argv[2]:
    p99 = {n: statistics.median(float(open(f).read().split()[1]) * 1e6
                                for f in glob.glob(f"{sys.argv[1]}/{n}-*.fixed")) for n in ("A", "B")}
    print(f"at {sys.argv[2]} req/s, median p99: A {p99['A']:.0f} us, B {p99['B']:.0f} us")
else:
    m = {n: statistics.median(float(x) for x in open(f"{sys.argv[1]}/{n}.rps")) for n in ("A", "B")}
    print(f"medians: A {m['A']:.0f} req/s, B {m['B']:.0f} req/s; B / A = {m['B'] / m['A']:.3f}")
for n in ("A", "B"):
    cpu = [tuple(map(float, open(f).read().split())) for f in glob.glob(f"{sys.argv[1]}/{n}-*.cpu")]
    print(f"{n}: CPU per request, medians: user {statistics.median(c[0] for c in cpu):.1f} us, "
          f"system {statistics.median(c[1] for c in cpu):.1f} us")
PY
