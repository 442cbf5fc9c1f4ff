#!/usr/bin/env bash
# System calls per proxied request, iamgate against its own transport (the transport floor), at
# one fixed rate (loopback only, bounded). nginx answers as the upstream; oha offers RATE req/s
# for DURATION seconds over 64 connections to each proxy in turn while `strace -c -f` counts the
# proxy's system calls (every thread). Prints the calls per request by name for both, and the
# CPU time per request without strace (from /proc) at the same rate.
# strace slows the traced process; the counts per request, not its latency, are the result.
#   RATE=2000 DURATION=5 bench/syscalls.sh
# Needs: strace, oha, nginx, curl, python3, openssl.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-2000}
DURATION=${DURATION:-5}
UP_PORT=${UP_PORT:-18291}
GW_PORT=${GW_PORT:-18292}
FLOOR_PORT=${FLOOR_PORT:-18295}
cargo build --release -q --bin iamgate --example hyper_floor
. bench/common.sh
ports_free "$UP_PORT" "$GW_PORT" "$FLOOR_PORT"
start_nginx 2
./target/release/examples/hyper_floor "127.0.0.1:$FLOOR_PORT" "http://127.0.0.1:$UP_PORT" >"$work/floor.log" 2>&1 &
floor_pid=$!
pids+=($floor_pid)
gateway_yaml "$work/gw" >"$work/gw.yaml"
./target/release/iamgate serve --config "$work/gw.yaml" >"$work/gw.log" 2>&1 &
gw_pid=$!
pids+=($gw_pid)
wait_http "http://127.0.0.1:$GW_PORT/-/healthz" "$work/gw.log"
wait_http "http://127.0.0.1:$FLOOR_PORT/" "$work/floor.log"
token=$(bootstrap_token gw/data "http://127.0.0.1:$GW_PORT")
path=/api/tenants/acme/marketplace/items/item1/versions

# traced NAME PID URL [OHA ARGS...]: the syscall summary of PID over one fixed-rate leg.
traced() {
    local name=$1 pid=$2 url=$3
    shift 3
    strace -c -f -q -p "$pid" -o "$work/$name.strace" &
    local tracer=$!
    sleep 1
    oha_leg "$name" "$url" "$@" >/dev/null
    kill -INT "$tracer"
    wait "$tracer" || true
    cp "$work/last.requests" "$work/$name.traced"
}

# Untraced first: the CPU time per request at the offered rate.
cpu_before "$gw_pid"
oha_leg iamgate "http://127.0.0.1:$GW_PORT$path" -H "Authorization: Bearer $token" >/dev/null
cpu_after "$gw_pid" iamgate
cpu_before "$floor_pid"
oha_leg floor "http://127.0.0.1:$FLOOR_PORT$path" >/dev/null
cpu_after "$floor_pid" floor
traced iamgate "$gw_pid" "http://127.0.0.1:$GW_PORT$path" -H "Authorization: Bearer $token"
traced floor "$floor_pid" "http://127.0.0.1:$FLOOR_PORT$path"

python3 - "$work" <<'PY'
import re, sys
w = sys.argv[1]
def calls(name):
    n = int(open(f"{w}/{name}.traced").read())
    out = {}
    for line in open(f"{w}/{name}.strace"):
        # % time, seconds, usecs/call, calls, [errors], syscall
        f = line.split()
        if len(f) >= 5 and re.fullmatch(r"[\d.]+", f[0]) and f[-1] != "total":
            out[f[-1]] = int(f[3]) / n
    return out, n
gw, n_gw = calls("iamgate")
fl, n_fl = calls("floor")
print(f"system calls per request at the fixed rate (iamgate {n_gw} requests, floor {n_fl})")
print(f"{'call':<16} {'iamgate':>9} {'floor':>9}")
for k in sorted(set(gw) | set(fl), key=lambda k: -(gw.get(k, 0) + fl.get(k, 0))):
    if gw.get(k, 0) + fl.get(k, 0) >= 0.01:
        print(f"{k:<16} {gw.get(k, 0):9.2f} {fl.get(k, 0):9.2f}")
print(f"{'all':<16} {sum(gw.values()):9.2f} {sum(fl.values()):9.2f}")
PY
