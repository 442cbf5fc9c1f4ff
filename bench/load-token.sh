#!/usr/bin/env bash
# Token endpoint load run (loopback only, bounded): measures one-core `openssl speed rsa2048`
# signing, then drives a release iamgate with client_secret_basic grants and with private_key_jwt
# grants (a fresh, pre-signed assertion per request) for DURATION seconds each, and prints
# grants/s with the ratio to the openssl figure.
# With PG=1 the same two legs run again on a throwaway PostgreSQL cluster (shared replay record)
# and the ratio PostgreSQL / SQLite is printed.
# Needs: wrk, openssl, python3 (and postgresql for PG=1).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
PORT=${PORT:-18181}
PGPORT=${PGPORT:-55450}
# BIN=path measures another build (an A/B against an older commit); by default a fresh one.
if [ -z "${BIN:-}" ]; then
    cargo build --release -q
fi
work=$(mktemp -d)
pgstate=/tmp/iamgate-pgbench
cleanup() {
    [ -f "$work/pid" ] && kill "$(cat "$work/pid")" 2>/dev/null || true
    [ "${PG:-0}" = 1 ] && PGTEST_STATE=$pgstate .ci/postgres.sh stop || true
    rm -rf "$work"
}
trap cleanup EXIT
bin=${BIN:-./target/release/iamgate}
N=${ASSERTIONS:-$((DURATION * 6000))}
$bin keys generate --out "$work/client.pem" >"$work/client.json"
python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['publicKeyPem'])" "$work/client.json" >"$work/client.pub.pem"
kid=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['kid'])" "$work/client.json")
json() { python3 -c "import json,sys;print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }

# One client sends every assertion: the per-client bound on the replay record (1,000 live
# assertions by default, then 429) is raised so that the leg measures grants, not that bound.
printf 'oauth: {replay_per_client: 100000}\n' >"$work/bench.yaml"

start() { # data dir; database url (empty = SQLite)
    env IAMGATE_CONFIG="$work/bench.yaml" IAMGATE_LISTEN=127.0.0.1:$PORT IAMGATE_LOG_LEVEL=warn IAMGATE_DATA_DIR=$1 \
        IAMGATE_SECRET_PEPPER=load-test-pepper-0123456789 ${2:+IAMGATE_DATABASE_URL=$2} \
        $bin serve >>"$work/server.log" 2>&1 &
    pid=$!
    echo "$pid" >"$work/pid"
    for _ in $(seq 1 100); do
        curl -fs "http://127.0.0.1:$PORT/-/ready" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "server did not become ready" >&2; cat "$work/server.log" >&2; exit 1
}

# One wrk leg against the token endpoint; prints the details to stderr and req/s to stdout.
load() { # wrk threads; lua script; title
    local out
    out=$(timeout $((DURATION + 30)) wrk -t"$1" -c16 -d"${DURATION}s" -s "$work/$2" --latency \
        "http://127.0.0.1:$PORT/api/m2m/oauth/token")
    echo "$3" >&2
    echo "$out" | grep -E "Requests/sec|50%|99%|Non-2xx" >&2 || true
    echo "$out" | awk '/Requests\/sec/ {print $2}'
}

# One store: client_secret_basic then private_key_jwt; prints "csb_rps jwt_rps".
run_store() { # label; database url (empty = SQLite)
    local label=$1 url=$2 data=$work/data-$1
    start "$data" "$url"
    local id secret auth jwt_id
    id=$(json "$data/bootstrap-credentials.json" clientId)
    secret=$(json "$data/bootstrap-credentials.json" clientSecret)
    auth=$(printf '%s:%s' "$id" "$secret" | base64 -w0)
    cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body   = "grant_type=client_credentials"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic $auth"
LUA
    local csb jwt
    csb=$(load 2 post.lua "[$label] client_secret_basic:")
    # The offline admin command writes to the same store; restart so the server loads it.
    kill "$pid"; wait "$pid" 2>/dev/null || true
    env IAMGATE_DATA_DIR="$data" ${url:+IAMGATE_DATABASE_URL=$url} IAMGATE_SECRET_PEPPER=load-test-pepper-0123456789 \
        $bin admin create-root-sa --name "load-jwt" --permission console.root.view \
        --auth-method private_key_jwt --public-key "$work/client.pub.pem" >"$work/sa.json"
    jwt_id=$(json "$work/sa.json" clientId)
    start "$data" "$url"
    $bin assertion --client-id "$jwt_id" --key "$work/client.pem" --kid "$kid" \
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
    jwt=$(load 1 jwt.lua "[$label] private_key_jwt (each of the $N assertions used once; Non-2xx = run outlasted them):")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -f "$work/pid"
    echo "$csb $jwt"
}

sign=$(timeout 60 openssl speed -seconds 5 -multi 1 rsa2048 2>/dev/null | awk '/^rsa 2048/ {print $6}')
echo "openssl rsa2048 sign/s (one core): $sign"
read -r csb jwt < <(run_store sqlite "")
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$1" "$2"; }
echo "sqlite client_secret_basic grants/s: $csb = $(ratio "$csb" "$sign")x one-core openssl signing"
echo "sqlite private_key_jwt grants/s: $jwt = $(ratio "$jwt" "$sign")x one-core openssl signing"
if [ "${PG:-0}" = 1 ]; then
    url=$(PGTEST_STATE=$pgstate .ci/postgres.sh start "$PGPORT")
    read -r pcsb pjwt < <(run_store postgres "$url")
    echo "postgres client_secret_basic grants/s: $pcsb = $(ratio "$pcsb" "$csb")x sqlite"
    echo "postgres private_key_jwt grants/s: $pjwt = $(ratio "$pjwt" "$jwt")x sqlite (shared replay record)"
fi
