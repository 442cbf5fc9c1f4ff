#!/usr/bin/env bash
# iamgate deciding for an existing ingress, side by side in one run (loopback only, every leg
# bounded in time). nginx serves a small JSON answer as the upstream; wrk drives, for DURATION
# seconds each and in ROUNDS alternating rounds:
#   nginx-proxy           nginx as a plain reverse proxy (2 workers, upstream keepalive)
#   nginx-auth-request    the same nginx asking iamgate's /-/authz first (examples/nginx's
#                         subrequest, keep-alive to iamgate), with a bearer token
#   iamgate-authz         /-/authz decisions asked directly, as nginx asks them (X-Original-*
#                         headers and the client's Authorization)
# and prints req/s, p50/p99 and the ratios to nginx plain. With oha installed (cargo install
# oha), a fixed-rate leg (RATE req/s) measures the p99 each adds to the direct upstream.
# Needs: wrk, nginx, curl, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
RATE=${RATE:-5000}
UP_PORT=${UP_PORT:-18481}
GW_PORT=${GW_PORT:-18482}
NGX_PORT=${NGX_PORT:-18483}
AUTH_PORT=${AUTH_PORT:-18484}
cargo build --release -q --bin iamgate
. bench/common.sh
ports_free "$UP_PORT" "$GW_PORT" "$NGX_PORT" "$AUTH_PORT"
start_nginx 2 "    upstream console { server 127.0.0.1:$UP_PORT; keepalive 128; }
    upstream iamgate { server 127.0.0.1:$GW_PORT; keepalive 128; }
    server {
        listen 127.0.0.1:$NGX_PORT;
        location / {
            proxy_pass http://console;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }
    server {
        listen 127.0.0.1:$AUTH_PORT;
        location = /-/iamgate-authz {
            internal;
            proxy_pass http://iamgate/-/authz;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_pass_request_body off;
            proxy_set_header Content-Length \"\";
            proxy_set_header X-Original-URI \$request_uri;
            proxy_set_header X-Original-Method \$request_method;
        }
        location / {
            auth_request /-/iamgate-authz;
            auth_request_set \$iam_user \$upstream_http_miauserid;
            auth_request_set \$iam_type \$upstream_http_client_type;
            proxy_set_header miauserid \$iam_user;
            proxy_set_header client-type \$iam_type;
            proxy_pass http://console;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }"
start_iamgate data "listen: 127.0.0.1:$GW_PORT
log: {level: warn}
server: {trusted_proxies: [127.0.0.1]}"
token=$(bootstrap_token data "http://127.0.0.1:$GW_PORT")
# The bootstrap account holds console.root.view: a policy-decided GET on a company route.
path=/api/tenants/acme/marketplace/items/item1/versions
check() { # url, expected status, curl arguments...
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' "${@:3}" "$1")
    [ "$code" = "$2" ] || { echo "$1 answered $code, expected $2"; cat "$work/nginx/error.log"; exit 1; }
}
check "http://127.0.0.1:$NGX_PORT$path" 200
check "http://127.0.0.1:$AUTH_PORT$path" 200 -H "Authorization: Bearer $token"
check "http://127.0.0.1:$AUTH_PORT$path" 401
check "http://127.0.0.1:$GW_PORT/-/authz" 200 -H "Authorization: Bearer $token" \
    -H "X-Original-URI: $path" -H "X-Original-Method: GET"
cat >"$work/auth.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $token"
LUA
cat >"$work/authz.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $token"
wrk.headers["X-Original-URI"] = "$path"
wrk.headers["X-Original-Method"] = "GET"
LUA

echo "wrk -t2 -c$CONNS -d${DURATION}s, $ROUNDS rounds, $(nproc) cores, $(date -u +%F)"
for _ in $(seq 1 "$ROUNDS"); do
    wrk_leg nginx-proxy "http://127.0.0.1:$NGX_PORT$path"
    wrk_leg nginx-auth-request "http://127.0.0.1:$AUTH_PORT$path" "$work/auth.lua"
    wrk_leg iamgate-authz "http://127.0.0.1:$GW_PORT/-/authz" "$work/authz.lua"
done
python3 - "$work" <<'PY'
import sys, statistics
w = sys.argv[1]
m = {n: statistics.median(float(x) for x in open(f"{w}/{n}.rps"))
     for n in ["nginx-proxy", "nginx-auth-request", "iamgate-authz"]}
print("median req/s: " + ", ".join(f"{k} {v:.0f}" for k, v in m.items()))
print(f"iamgate /-/authz decisions / nginx plain proxy: {m['iamgate-authz'] / m['nginx-proxy']:.2f}x (goal >= 1.0x)")
print(f"nginx + auth_request / nginx plain proxy:       {m['nginx-auth-request'] / m['nginx-proxy']:.2f}x")
PY

if command -v oha >/dev/null; then
    echo "fixed rate $RATE req/s, ${DURATION}s, 64 connections (oha, latency-corrected)"
    oha_leg upstream-direct "http://127.0.0.1:$UP_PORT$path"
    oha_leg nginx-proxy "http://127.0.0.1:$NGX_PORT$path"
    oha_leg nginx-auth-request "http://127.0.0.1:$AUTH_PORT$path" -H "Authorization: Bearer $token"
    oha_added nginx-proxy nginx-auth-request
else
    echo "(oha not installed: fixed-rate leg skipped; cargo install oha)"
fi
