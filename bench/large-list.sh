#!/usr/bin/env bash
# A large tenant's project list through a response rule (loopback only, bounded): nginx answers
# the Console's GET /api/backend/projects/ with N projects (default 10,000), every other one
# acme's; a release iamgate in front filters it for an account holding company-owner in acme
# (the policy's `projects` item filter: one decision per project). Prints the median, min and
# max of ROUNDS requests (time to first byte and to the last), through iamgate and straight from
# nginx, and checks the answer: exactly acme's N/2 projects, in order.
# Needs: nginx, curl, python3, openssl.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10000}
ROUNDS=${ROUNDS:-15}
UP_PORT=${UP_PORT:-18491}
LIST_PORT=${LIST_PORT:-18493}
GW_PORT=${GW_PORT:-18492}
cargo build --release -q --bin iamgate
. bench/common.sh
ports_free "$UP_PORT" "$LIST_PORT" "$GW_PORT"
mkdir -p "$work/www/api/backend/projects"
python3 - "$N" "$work/www/api/backend/projects/projects.json" <<'PY'
import json, sys
n = int(sys.argv[1])
items = [{"_id": f"{i:024x}", "projectId": f"project-{i}", "tenantId": "acme" if i % 2 == 0 else "globex",
          "name": f"Project {i}", "environments": [{"envId": "dev"}, {"envId": "prod"}]} for i in range(n)]
json.dump(items, open(sys.argv[2], "w"))
PY
# nginx's workers read the file as an unprivileged user.
chmod -R a+rX "$work"
start_nginx 1 "server { listen 127.0.0.1:$LIST_PORT; location /api/backend/projects/ { root $work/www; index projects.json; default_type application/json; } }"
UP_PORT=$LIST_PORT gateway_yaml "$work/gw" >"$work/gw.yaml"
./target/release/iamgate serve --config "$work/gw.yaml" >"$work/gw.log" 2>&1 &
pids+=($!)
base=http://127.0.0.1:$GW_PORT
wait_http "$base/-/healthz" "$work/gw.log"
admin=$(bootstrap_token gw/data "$base")
created=$(curl -fs -H "authorization: Bearer $admin" -H 'content-type: application/json' \
    -d '{"name":"lister","role":"company-owner","tokenEndpointAuthMethod":"client_secret_basic"}' \
    "$base/api/companies/acme/service-accounts")
id=$(echo "$created" | python3 -c "import json,sys;print(json.load(sys.stdin)['clientId'])")
secret=$(echo "$created" | python3 -c "import json,sys;print(json.load(sys.stdin)['clientSecret'])")
token=$(curl -fs -u "$id:$secret" -d grant_type=client_credentials "$base/api/m2m/oauth/token" |
    python3 -c "import json,sys;print(json.load(sys.stdin)['access_token'])")

# leg NAME URL [CURL ARGS...]: ROUNDS timed requests; prints the first byte and total times.
leg() {
    local name=$1 url=$2
    shift 2
    for _ in $(seq 1 "$ROUNDS"); do
        curl -fs --max-time 60 -o "$work/$name.body" -w '%{time_starttransfer} %{time_total}\n' "$@" "$url"
    done >"$work/$name.times"
    python3 - "$name" "$work/$name.times" <<'PY'
import statistics, sys
rows = [tuple(map(float, l.split())) for l in open(sys.argv[2])]
ttfb = sorted(r[0] * 1000 for r in rows); total = sorted(r[1] * 1000 for r in rows)
print(f"{sys.argv[1]:<10} first byte median {statistics.median(ttfb):7.1f} ms   total median {statistics.median(total):7.1f} ms (min {total[0]:.1f}, max {total[-1]:.1f})")
PY
}
echo "$N projects, $ROUNDS rounds each ($(nproc) CPUs, $(date -u +%F))"
leg nginx "http://127.0.0.1:$LIST_PORT/api/backend/projects/"
leg iamgate "$base/api/backend/projects/" -H "authorization: Bearer $token"
python3 - "$N" "$work/iamgate.body" "$work/www/api/backend/projects/projects.json" <<'PY'
import json, sys
n, got, sent = int(sys.argv[1]), json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
want = [p for p in sent if p["tenantId"] == "acme"]
assert got == want, f"{len(got)} items, expected {len(want)}"
print(f"answer checked: {len(got)} of {n} projects, acme's only, in order")
PY
