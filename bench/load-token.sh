#!/usr/bin/env bash
# Token endpoint load run (loopback only, bounded): starts a release iamgate with a throwaway
# data directory, measures one-core `openssl speed rsa2048` signing in the same run, then drives
# client_secret_basic grants with wrk for DURATION seconds and prints grants/s and the ratio.
# Needs: wrk and openssl (apt-get install wrk openssl).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
PORT=${PORT:-18181}
cargo build --release -q
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
IAMGATE_LISTEN=127.0.0.1:$PORT IAMGATE_LOG_LEVEL=warn IAMGATE_DATA_DIR=$work/data \
    ./target/release/iamgate serve >"$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$PORT/-/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
creds=$work/data/bootstrap-credentials.json
id=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['clientId'])" "$creds")
secret=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['clientSecret'])" "$creds")
auth=$(printf '%s:%s' "$id" "$secret" | base64 -w0)
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body   = "grant_type=client_credentials"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic $auth"
LUA
sign=$(timeout 60 openssl speed -seconds 5 -multi 1 rsa2048 2>/dev/null | awk '/^rsa 2048/ {print $6}')
out=$(timeout $((DURATION + 30)) wrk -t2 -c16 -d"${DURATION}s" -s "$work/post.lua" --latency \
    "http://127.0.0.1:$PORT/api/m2m/oauth/token")
echo "$out" | grep -E "Requests/sec|50%|99%|Non-2xx" || true
rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
echo "openssl rsa2048 sign/s (one core): $sign"
python3 -c "import sys; print(f'client_secret_basic grants/s: {float(sys.argv[1]):.0f} = {float(sys.argv[1])/float(sys.argv[2]):.2f}x one-core openssl signing')" "$rps" "$sign"
