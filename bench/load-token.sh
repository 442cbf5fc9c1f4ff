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

# private_key_jwt: a fresh, pre-signed assertion per request (a replayed one would be refused).
N=${ASSERTIONS:-$((DURATION * 3000))}
./target/release/iamgate keys generate --out "$work/client.pem" >"$work/client.json"
python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['publicKeyPem'])" "$work/client.json" >"$work/client.pub.pem"
kid=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['kid'])" "$work/client.json")
# The offline admin command writes to the same store; restart the server so it loads the account.
kill "$pid"; wait "$pid" 2>/dev/null || true
IAMGATE_DATA_DIR=$work/data ./target/release/iamgate admin create-root-sa --name load-jwt \
    --permission console.root.view --auth-method private_key_jwt --public-key "$work/client.pub.pem" >"$work/sa.json"
jwt_id=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['clientId'])" "$work/sa.json")
IAMGATE_LISTEN=127.0.0.1:$PORT IAMGATE_LOG_LEVEL=warn IAMGATE_DATA_DIR=$work/data \
    ./target/release/iamgate serve >>"$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$PORT/-/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
./target/release/iamgate assertion --client-id "$jwt_id" --key "$work/client.pem" --kid "$kid" \
    --lifetime 600 --count "$N" >"$work/assertions.txt"
cat >"$work/jwt.lua" <<LUA
local lines = {}
for l in io.lines("$work/assertions.txt") do lines[#lines + 1] = l end
local i = 0
request = function()
  i = i + 1
  if i > #lines then i = 1 end
  local body = "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=" .. lines[i]
  return wrk.format("POST", nil, {["Content-Type"] = "application/x-www-form-urlencoded"}, body)
end
LUA
out=$(timeout $((DURATION + 30)) wrk -t1 -c16 -d"${DURATION}s" -s "$work/jwt.lua" --latency \
    "http://127.0.0.1:$PORT/api/m2m/oauth/token")
echo "$out" | grep -E "Requests/sec|50%|99%|Non-2xx" || true
rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
python3 -c "import sys; print(f'private_key_jwt grants/s: {float(sys.argv[1]):.0f} = {float(sys.argv[1])/float(sys.argv[2]):.2f}x one-core openssl signing')" "$rps" "$sign"
echo "(each of the $N assertions is used once; a Non-2xx count above means the run outlasted them)"
