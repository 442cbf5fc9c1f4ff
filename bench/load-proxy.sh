#!/usr/bin/env bash
# Proxy load run (loopback only, bounded): nginx serves a small JSON answer as the upstream;
# wrk drives (A) the upstream directly and (B) an authorized GET through a release iamgate,
# alternately A B A B, each for DURATION seconds, and prints req/s and latency percentiles.
# Needs: wrk, nginx, curl, python3 (apt-get install wrk nginx-light curl python3).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
UP_PORT=${UP_PORT:-18281}
GW_PORT=${GW_PORT:-18282}
cargo build --release -q
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT

mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<NGINX
worker_processes 2;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
daemon off;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/nginx;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$UP_PORT;
        location / { default_type application/json; return 200 '{"ok":true,"items":[1,2,3]}'; }
    }
}
NGINX
nginx -c "$work/nginx/nginx.conf" &
pids+=($!)

cat >"$work/iamgate.yaml" <<YAML
listen: 127.0.0.1:$GW_PORT
data_dir: $work/data
log: {level: warn}
upstream: {url: "http://127.0.0.1:$UP_PORT"}
YAML
./target/release/iamgate serve --config "$work/iamgate.yaml" >"$work/gw.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$GW_PORT/-/healthz" >/dev/null 2>&1 && curl -fs "http://127.0.0.1:$UP_PORT/" >/dev/null 2>&1 && break
    sleep 0.1
done
creds=$work/data/bootstrap-credentials.json
id=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['clientId'])" "$creds")
secret=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['clientSecret'])" "$creds")
token=$(curl -fs -u "$id:$secret" -d grant_type=client_credentials "http://127.0.0.1:$GW_PORT/api/m2m/oauth/token" |
    python3 -c "import json,sys;print(json.load(sys.stdin)['access_token'])")
# The bootstrap account holds console.root.view: a policy-decided GET on a company route.
path=/api/tenants/acme/marketplace/items/item1/versions
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "http://127.0.0.1:$GW_PORT$path")
[ "$code" = 200 ] || { echo "gateway answered $code for $path"; exit 1; }
cat >"$work/auth.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $token"
LUA

run() { # name url [script]
    local out
    out=$(timeout $((DURATION + 30)) wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency ${3:+-s "$3"} "$2")
    local rps p50 p99 errs
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$out" | awk '$1=="50%" {print $2}')
    p99=$(echo "$out" | awk '$1=="99%" {print $2}')
    errs=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
    printf '%-22s %10s req/s   p50 %-8s p99 %-8s non-2xx %s\n' "$1" "$rps" "$p50" "$p99" "${errs:-0}"
    echo "$rps" >>"$work/$1.rps"
}
echo "wrk -t2 -c$CONNS -d${DURATION}s, $(nproc) cores, $(date -u +%F)"
for round in 1 2; do
    run upstream-direct "http://127.0.0.1:$UP_PORT$path"
    run iamgate-authorized "http://127.0.0.1:$GW_PORT$path" "$work/auth.lua"
done
python3 - "$work" <<'PY'
import sys, statistics
w = sys.argv[1]
up = statistics.mean(float(x) for x in open(f"{w}/upstream-direct.rps"))
gw = statistics.mean(float(x) for x in open(f"{w}/iamgate-authorized.rps"))
print(f"mean: upstream {up:.0f} req/s, iamgate {gw:.0f} req/s = {gw/up:.2f}x direct")
PY
