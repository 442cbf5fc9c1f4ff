#!/usr/bin/env bash
# Scale run (loopback only, bounded): generates the small data set (1 company) and the scale data
# set (1,000 companies, 10,000 projects, 100,000 service accounts, 1,000,000 bindings) with
# `bench/scale_data.rs`, starts a release iamgate on each, and reports the time to `/-/ready`,
# the resident memory, proxied req/s of an authorized GET (wrk, DURATION seconds, rounds
# alternated small / scale) against an nginx upstream, the latency of WRITES management writes
# (a company role changed through the API, one at a time on a keep-alive connection: store
# transaction plus the directory's new state), and of the company's account list and identities.
# Needs: wrk, nginx, curl, python3. SCALE_DIR keeps the generated scale store between runs.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-8}
WRITES=${WRITES:-300}
ROUNDS=${ROUNDS:-2}
UP_PORT=${UP_PORT:-18481}
GW_PORT=${GW_PORT:-18482}
cargo build --release -q
cargo bench --bench scale_data --no-run -q 2>/dev/null
gen=$(ls -t target/release/deps/scale_data-* | grep -v '\.d$' | head -1)
. bench/common.sh
scale_dir=${SCALE_DIR:-$work/scale}
start_nginx 1

"$gen" "$work/small" 1 >"$work/small.json"
if [ ! -f "$scale_dir/iamgate.db" ]; then
    "$gen" "$scale_dir" >"$scale_dir.json"
fi
json() { python3 -c "import json,sys;print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }

# Starts iamgate on a data dir; prints "seconds-to-ready rss-kib peak-kib" and leaves it running.
start() {
    local t0 t1
    t0=$(date +%s.%N)
    env IAMGATE_LISTEN=127.0.0.1:$GW_PORT IAMGATE_LOG_LEVEL=warn IAMGATE_DATA_DIR="$1" \
        IAMGATE_UPSTREAM=http://127.0.0.1:$UP_PORT ./target/release/iamgate serve >>"$work/gw.log" 2>&1 &
    echo $! >"$work/gw.pid"
    for _ in $(seq 1 1200); do
        curl -fs "http://127.0.0.1:$GW_PORT/-/ready" >/dev/null 2>&1 && break
        sleep 0.05
    done
    t1=$(date +%s.%N)
    local pid
    pid=$(cat "$work/gw.pid")
    echo "$(python3 -c "print(f'{$t1 - $t0:.2f}')") $(awk '/VmRSS/ {print $2}' /proc/$pid/status) $(awk '/VmHWM/ {print $2}' /proc/$pid/status)"
}
stop() { kill "$(cat "$work/gw.pid")"; wait "$(cat "$work/gw.pid")" 2>/dev/null || true; }

# WRITES role changes by the company owner on its company's accounts; prints p50 / p99 / max.
writes() {
    timeout 120 python3 - "$1" "$GW_PORT" "$WRITES" <<'PY'
import base64, http.client, json, statistics, sys, time
creds, port, n = json.load(open(sys.argv[1])), int(sys.argv[2]), int(sys.argv[3])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
basic = base64.b64encode(f"{creds['adminId']}:{creds['adminSecret']}".encode()).decode()
c.request("POST", "/api/m2m/oauth/token", "grant_type=client_credentials",
          {"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"})
r = c.getresponse(); token = json.loads(r.read())["access_token"]
company, accounts = creds["companyId"], creds["accounts"]
sa = f"sa-{company.removeprefix('company-')}"
took = []
for i in range(n):
    body = json.dumps({"role": ["developer", "reporter"][i % 2]})
    t = time.perf_counter()
    c.request("PATCH", f"/api/companies/{company}/service-accounts/{sa}-{i % accounts}", body,
              {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    r = c.getresponse(); r.read()
    took.append((time.perf_counter() - t) * 1e3)
    if r.status != 204:
        sys.exit(f"write {i}: status {r.status}")
took.sort()
print(f"       {n} role changes: p50 {statistics.median(took):.2f} ms  p99 {took[int(n * 0.99) - 1]:.2f} ms  max {took[-1]:.2f} ms")
for what, path in [("account list", f"/api/companies/{company}/service-accounts"),
                   ("identities", f"/api/companies/{company}/identities")]:
    took = []
    for _ in range(5):
        t = time.perf_counter()
        c.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        r = c.getresponse(); body = r.read()
        took.append((time.perf_counter() - t) * 1e3)
        if r.status != 200:
            sys.exit(f"{what}: status {r.status}")
    print(f"       {what} ({len(json.loads(body))} entries): median of 5 {statistics.median(took):.2f} ms")
PY
}

leg() { # name data-dir credentials-json
    local m id secret project token out rps
    m=$(start "$2")
    id=$(json "$3" clientId); secret=$(json "$3" clientSecret); project=$(json "$3" projectId)
    token=$(curl -fs -u "$id:$secret" -d grant_type=client_credentials \
        "http://127.0.0.1:$GW_PORT/api/m2m/oauth/token" | python3 -c "import json,sys;print(json.load(sys.stdin)['access_token'])")
    local path=/api/backend/projects/$project/revisions
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "http://127.0.0.1:$GW_PORT$path")
    [ "$code" = 200 ] || { echo "$1: gateway answered $code"; exit 1; }
    printf 'wrk.headers["Authorization"] = "Bearer %s"\n' "$token" >"$work/auth.lua"
    out=$(timeout $((DURATION + 30)) wrk -t2 -c64 -d"${DURATION}s" --latency -s "$work/auth.lua" "http://127.0.0.1:$GW_PORT$path")
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    read -r ready rss peak <<<"$m"
    local after
    after=$(awk '/VmRSS/ {print $2}' "/proc/$(cat "$work/gw.pid")/status")
    printf '%-6s ready %5ss  rss %6d MiB (peak %6d MiB, %d MiB after the load)  %9s req/s  p99 %s\n' "$1" "$ready" \
        $((rss / 1024)) $((peak / 1024)) $((after / 1024)) "$rps" "$(echo "$out" | awk '$1=="99%" {print $2}')"
    echo "$rps" >>"$work/$1.rps"
    writes "$3"
    stop
}
echo "scale run, $(nproc) cores, $(date -u +%F)"
for _ in $(seq 1 "$ROUNDS"); do
    leg small "$work/small" "$work/small.json"
    leg scale "$scale_dir" "$scale_dir.json"
done
python3 - "$work" <<'PY'
import sys, statistics
w = sys.argv[1]
s = statistics.mean(float(x) for x in open(f"{w}/small.rps"))
l = statistics.mean(float(x) for x in open(f"{w}/scale.rps"))
print(f"scale / small req/s: {l / s:.2f}x (goal >= 0.95x)")
PY
