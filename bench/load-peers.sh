#!/usr/bin/env bash
# iamgate against its peers, side by side in one run (loopback only, every leg bounded in time).
# nginx serves a small JSON answer as the upstream; wrk drives, for DURATION seconds each and in
# ROUNDS alternating rounds (A B C D A B C D):
#   upstream-direct      the upstream itself
#   nginx-proxy          nginx as a plain reverse proxy (2 workers, upstream keepalive)
#   haproxy-jwt          HAProxy (2 threads) verifying the RS256 bearer token with jwt_verify
#   iamgate-authorized   an authorized GET through iamgate (bearer check, route, Rego, forward)
#   transport-floor      iamgate's transport alone (runtime, hyper server, upstream pool) as a
#                        pass-through proxy: the ceiling for any gateway logic on top
# and prints req/s, p50/p99 and the ratios of the medians over the rounds of iamgate to nginx, to
# HAProxy and to the floor. With oha installed (cargo install oha), a fixed-rate leg (RATE req/s)
# measures the latency added to the direct upstream by each proxy, and the CPU time per request
# (user and system, from /proc) of iamgate and of the transport floor at that same rate.
# Needs: wrk, nginx, haproxy, openssl, curl, python3 (apt-get install wrk nginx-light haproxy ...).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-2}
CONNS=${CONNS:-64}
RATE=${RATE:-10000}
UP_PORT=${UP_PORT:-18281}
GW_PORT=${GW_PORT:-18282}
NGX_PORT=${NGX_PORT:-18283}
HAP_PORT=${HAP_PORT:-18284}
FLOOR_PORT=${FLOOR_PORT:-18285}
cargo build --release -q --bin iamgate --example hyper_floor
. bench/common.sh
ports_free "$UP_PORT" "$GW_PORT" "$NGX_PORT" "$HAP_PORT" "$FLOOR_PORT"
start_nginx 2 "    upstream console { server 127.0.0.1:$UP_PORT; keepalive 128; }
    server {
        listen 127.0.0.1:$NGX_PORT;
        location / {
            proxy_pass http://console;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }"

./target/release/examples/hyper_floor "127.0.0.1:$FLOOR_PORT" "http://127.0.0.1:$UP_PORT" >"$work/floor.log" 2>&1 &
floor_pid=$!
pids+=($floor_pid)
start_iamgate data "listen: 127.0.0.1:$GW_PORT
log: {level: warn}
upstream: {url: \"http://127.0.0.1:$UP_PORT\"}"
iamgate_pid=$gw_pid
token=$(bootstrap_token data "http://127.0.0.1:$GW_PORT")
# The bootstrap account holds console.root.view: a policy-decided GET on a company route.
path=/api/tenants/acme/marketplace/items/item1/versions
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "http://127.0.0.1:$GW_PORT$path")
[ "$code" = 200 ] || { echo "gateway answered $code for $path"; exit 1; }
cat >"$work/auth.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $token"
LUA

# HAProxy verifies the same token with iamgate's public key.
kid=$(python3 -c "import sys,json,base64;h=sys.argv[1].split('.')[0];print(json.loads(base64.urlsafe_b64decode(h+'='*(-len(h)%4)))['kid'])" "$token")
openssl pkey -in "$work/data/keys/$kid.pem" -pubout -out "$work/pub.pem" 2>/dev/null
cat >"$work/haproxy.cfg" <<HAP
global
    nbthread 2
    maxconn 8000
    pidfile $work/haproxy.pid
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
frontend gateway
    bind 127.0.0.1:$HAP_PORT
    http-request set-var(txn.bearer) http_auth_bearer
    http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('\$.alg')
    http-request deny deny_status 401 unless { var(txn.alg) -m str RS256 }
    http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify(txn.alg,"$work/pub.pem") -m int 1 }
    default_backend console
backend console
    http-reuse always
    server up 127.0.0.1:$UP_PORT
HAP
haproxy -W -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do
    curl -fs -o /dev/null -H "Authorization: Bearer $token" "http://127.0.0.1:$HAP_PORT$path" && break
    sleep 0.1
done
check() { # port, authorization (or empty), expected status
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' ${2:+-H "Authorization: $2"} "http://127.0.0.1:$1$path")
    [ "$code" = "$3" ] || { echo "port $1 answered $code, expected $3"; cat "$work/haproxy.log"; exit 1; }
}
check "$NGX_PORT" "" 200
check "$HAP_PORT" "Bearer $token" 200
check "$HAP_PORT" "Bearer ${token}x" 401
check "$GW_PORT" "Bearer $token" 200
check "$FLOOR_PORT" "" 200

echo "wrk -t2 -c$CONNS -d${DURATION}s, $(nproc) cores, $(date -u +%F)"
for round in $(seq 1 "$ROUNDS"); do
    wrk_leg upstream-direct "http://127.0.0.1:$UP_PORT$path"
    wrk_leg nginx-proxy "http://127.0.0.1:$NGX_PORT$path"
    wrk_leg haproxy-jwt "http://127.0.0.1:$HAP_PORT$path" "$work/auth.lua"
    wrk_leg iamgate-authorized "http://127.0.0.1:$GW_PORT$path" "$work/auth.lua"
    wrk_leg transport-floor "http://127.0.0.1:$FLOOR_PORT$path"
done
python3 - "$work" <<'PY'
import sys, statistics
w = sys.argv[1]
m = {n: statistics.median(float(x) for x in open(f"{w}/{n}.rps"))
     for n in ["upstream-direct", "nginx-proxy", "haproxy-jwt", "iamgate-authorized", "transport-floor"]}
gw = m["iamgate-authorized"]
print("median req/s: " + ", ".join(f"{k} {v:.0f}" for k, v in m.items()))
print(f"iamgate / nginx plain proxy: {gw / m['nginx-proxy']:.2f}x (goal >= 0.75x)")
print(f"iamgate / haproxy RS256:     {gw / m['haproxy-jwt']:.2f}x (goal >= 1.5x)")
print(f"iamgate / transport floor:   {gw / m['transport-floor']:.2f}x; floor / nginx {m['transport-floor'] / m['nginx-proxy']:.2f}x")
PY

# Fixed rate: the latency each proxy adds to the direct upstream at RATE req/s.
if command -v oha >/dev/null; then
    echo "fixed rate $RATE req/s, ${DURATION}s, 64 connections (oha, latency-corrected)"
    oha_leg upstream-direct "http://127.0.0.1:$UP_PORT$path"
    oha_leg nginx-proxy "http://127.0.0.1:$NGX_PORT$path"
    oha_leg haproxy-jwt "http://127.0.0.1:$HAP_PORT$path" -H "Authorization: Bearer $token"
    cpu_before "$iamgate_pid"
    oha_leg iamgate-authorized "http://127.0.0.1:$GW_PORT$path" -H "Authorization: Bearer $token"
    cpu_after "$iamgate_pid" iamgate-authorized
    cpu_before "$floor_pid"
    oha_leg transport-floor "http://127.0.0.1:$FLOOR_PORT$path"
    cpu_after "$floor_pid" transport-floor
    oha_added nginx-proxy haproxy-jwt iamgate-authorized transport-floor
    python3 - "$work" <<'PY'
import sys
w = sys.argv[1]
gw, fl = (open(f"{w}/{n}.cpu").read().split() for n in ("iamgate-authorized", "transport-floor"))
print(f"system time per request: iamgate {float(gw[1]):.1f} us, floor {float(fl[1]):.1f} us, "
      f"{float(gw[1]) / float(fl[1]):.2f}x (goal <= 1.10x)")
PY
else
    echo "(oha not installed: fixed-rate leg skipped; cargo install oha)"
fi
