#!/usr/bin/env bash
# Soak and fault runs of a release iamgate (loopback only, every phase bounded in time), with
# nginx as the upstream and wrk as the client.
#   bench/soak.sh soak     MINUTES (30) at half of the measured capacity of a mixed load: proxied
#                          GETs decided by the policy, client_secret_basic grants (1 in 100) and
#                          management writes (1 in 50 slots, one at a time per wrk thread: create
#                          an account, set its project and environment roles, remove them,
#                          delete it). Samples RSS and open files every SAMPLE_SECS and fails on
#                          any error, on RSS growth of 5 % or more after WARMUP_MINUTES, or on
#                          any growth in open files. STORE=postgres soaks on a throwaway cluster;
#                          EXTRA_YAML adds configuration (EXTRA_YAML='policy: {cache: {capacity: 10000}}').
#   bench/soak.sh faults   kill -9 of the gateway during management writes, KILLS times on
#                          SQLite and again on PostgreSQL, each restart followed by a check that
#                          every acknowledged write is there and nothing is half-written
#                          (bench/soak.py); then the upstream killed and restarted under load:
#                          only 200 and 502 answers, and 200 again without restarting iamgate.
#   bench/soak.sh          both.
# Needs: wrk, nginx, curl, python3, postgresql (apt-get install wrk nginx-light postgresql).
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-all}
MINUTES=${MINUTES:-30}
WARMUP_MINUTES=${WARMUP_MINUTES:-5}
CAPACITY_SECS=${CAPACITY_SECS:-20}
SAMPLE_SECS=${SAMPLE_SECS:-10}
KILLS=${KILLS:-5}
STORE=${STORE:-sqlite}
UP_PORT=${UP_PORT:-18381}
GW_PORT=${GW_PORT:-18382}
# Below the ephemeral range: a connection of the run itself may hold a port above it.
PGPORT=${PGPORT:-25460}
case "$MODE" in soak | faults | all) ;; *) echo "usage: $0 [soak|faults|all]" >&2; exit 2 ;; esac
# CARGO_FLAGS=--no-default-features soaks on the system allocator (for heap profilers).
cargo build --release -q --bin iamgate ${CARGO_FLAGS:-}
bin=$PWD/target/release/iamgate
. bench/common.sh
ports_free "$UP_PORT" "$GW_PORT" "$PGPORT"
pgstate=/tmp/iamgate-pgsoak
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
      PGTEST_STATE=$pgstate .ci/postgres.sh stop; rm -rf "$work"' EXIT
base=http://127.0.0.1:$GW_PORT
# A company route the policy decides for the bootstrap account (console.root.view).
path=/api/tenants/acme/marketplace/items/item1/versions
failed=0

# start_gw NAME [DATABASE_URL]: a gateway on $work/NAME (SQLite there without a URL); sets gw_pid.
start_gw() {
    cat >"$work/$1.yaml" <<YAML
listen: 127.0.0.1:$GW_PORT
data_dir: $work/$1
log: {level: warn}
upstream: {url: "http://127.0.0.1:$UP_PORT"}
${2:+database_url: "$2"}
${2:+secret_pepper: soak-test-pepper-0123456789}
${EXTRA_YAML:-}
YAML
    "$bin" serve --config "$work/$1.yaml" >>"$work/$1.log" 2>&1 &
    gw_pid=$!
    pids+=("$gw_pid")
    wait_http "$base/-/ready" "$work/$1.log"
}
stop_gw() { kill -9 "$gw_pid" 2>/dev/null || true; wait "$gw_pid" 2>/dev/null || true; }
# TERM lets a master process stop its workers; the fault run's single process is killed with -9.
stop_nginx() { kill "$nginx_pid" 2>/dev/null || true; wait "$nginx_pid" 2>/dev/null || true; }
pg_start() { PGTEST_STATE=$pgstate .ci/postgres.sh start "$PGPORT"; }
pg_stop() { PGTEST_STATE=$pgstate .ci/postgres.sh stop; }

# Lua: at the end, the sum of every wrk thread's `counts` table as lines "LABEL key count".
lua_report() {
    cat <<LUA
function done(summary, latency, requests)
  local all = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("counts")) do all[k] = (all[k] or 0) + v end
  end
  for k, v in pairs(all) do io.write("$1 ", k, " ", v, "\\n") end
end
LUA
}

# The mixed load. wrk's Lua sees no request in response(): answers are told apart by their
# bodies (the upstream's {"ok":true...}, a token, or a management answer), and each wrk thread
# keeps at most one management write in flight so that its steps stay in order.
mix_script() { # file, milliseconds each connection waits before its next request (0: none), run name
    cat >"$1" <<LUA
local threads, next_id = {}, 0
function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end
local root, owner, basic = "$ROOT_TOKEN", "$OWNER_TOKEN", "$BASIC"
local i, seq, writing, queue = 0, 0, false, {}
counts = {}
local function tally(k) counts[k] = (counts[k] or 0) + 1 end
local function json(method, p, body)
  return wrk.format(method, p, {["Authorization"] = "Bearer " .. owner,
    ["Content-Type"] = "application/json"}, body)
end
$( [ "$2" != 0 ] && echo "function delay() return $2 end" )
function request()
  i = i + 1
  if i % 100 == 0 then
    return wrk.format("POST", "/api/m2m/oauth/token", {["Authorization"] = "Basic " .. basic,
      ["Content-Type"] = "application/x-www-form-urlencoded"}, "grant_type=client_credentials")
  end
  if i % 50 == 25 and not writing then
    writing = true
    local op = table.remove(queue, 1)
    if op then return json(op[1], op[2], op[3]) end
    seq = seq + 1
    return json("POST", "/api/companies/acme/service-accounts", '{"name":"$3-' .. tid .. '-' ..
      seq .. '","tokenEndpointAuthMethod":"client_secret_basic","role":"developer"}')
  end
  return wrk.format("GET", "$path", {["Authorization"] = "Bearer " .. root})
end
function response(status, headers, body)
  if body:find('"ok":true', 1, true) then tally("proxied " .. status) return end
  if body:find('"access_token"', 1, true) then tally("grant " .. status) return end
  writing = false
  tally("write " .. status)
  local id = body:match('"clientId":"([^"]+)"')
  if status == 201 and id then
    local p = "/api/companies/acme/service-accounts/" .. id
    table.insert(queue, {"PATCH", p, '{"projectsRole":[{"projectId":"p1","role":"developer","environmentsRole":[{"envId":"dev","role":"maintainer"}]}]}'})
    table.insert(queue, {"PATCH", p, '{"projectsRole":[{"projectId":"p1","role":"","environmentsRole":[{"envId":"dev","role":""}]}]}'})
    table.insert(queue, {"DELETE", p, nil})
  end
end
$(lua_report answers)
LUA
}

soak() {
    local url=""
    [ "$STORE" = postgres ] && url=$(pg_start)
    start_nginx 1
    start_gw soak "$url"
    eval "$(python3 bench/soak.py prepare "$base" "$work/soak")"
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $ROOT_TOKEN" "$base$path")
    [ "$code" = 200 ] || { echo "the gateway answered $code for $path"; exit 1; }
    mix_script "$work/full.lua" 0 capacity
    local cap conns
    cap=$(timeout $((CAPACITY_SECS + 30)) wrk -t2 -c64 -d"${CAPACITY_SECS}s" -s "$work/full.lua" "$base" |
        tee "$work/capacity.txt" | awk '/Requests\/sec/ {print int($2)}')
    # Each connection waits 10 ms between requests: 100 req/s each, so half capacity is
    # cap / 200 connections.
    conns=$(((cap + 199) / 200))
    [ "$conns" -ge 2 ] || conns=2
    mix_script "$work/half.lua" 10 soak
    echo "store $STORE; capacity of the mix ${cap} req/s (wrk -t2 -c64, ${CAPACITY_SECS}s);" \
        "soak at ${conns} connections x 100 req/s for ${MINUTES} min; $(nproc) cores; $(date -u +%FT%TZ)"
    (
        start=$(date +%s)
        while kill -0 "$gw_pid" 2>/dev/null; do
            # RSS, open files, then what the RSS is made of (anonymous, file-backed) and threads.
            rss=$(awk '/^VmRSS/ {print $2}' "/proc/$gw_pid/status")
            fds=$(find "/proc/$gw_pid/fd" -mindepth 1 -maxdepth 1 | wc -l)
            more=$(awk '/^(RssAnon|RssFile|Threads):/ {printf " %s", $2}' "/proc/$gw_pid/status")
            # Transparent huge pages: khugepaged can fill a region minutes after start.
            thp=$(awk '/^AnonHugePages:/ {print $2}' "/proc/$gw_pid/smaps_rollup" 2>/dev/null || true)
            echo "$(($(date +%s) - start)) $rss $fds$more ${thp:-0}"
            sleep "$SAMPLE_SECS"
        done
    ) >"$work/samples.txt" &
    local sampler=$!
    timeout $((MINUTES * 60 + 60)) wrk -t2 -c"$conns" -d"${MINUTES}m" --timeout 5s -s "$work/half.lua" \
        --latency "$base" >"$work/soak.txt" || true
    kill "$sampler" 2>/dev/null || true
    # SAMPLES_OUT=FILE keeps the samples: seconds, RSS, open files, RssAnon, RssFile, threads,
    # AnonHugePages (KiB).
    [ -n "${SAMPLES_OUT:-}" ] && cp "$work/samples.txt" "$SAMPLES_OUT"
    grep -E "Requests/sec|Latency  |50%|99%|Socket errors|answers" "$work/soak.txt" || true
    python3 - "$work/soak.txt" "$work/samples.txt" "$((WARMUP_MINUTES * 60))" "$SAMPLE_SECS" <<'PY' || failed=1
import re, sys
out, samples, warm = open(sys.argv[1]).read(), sys.argv[2], int(sys.argv[3])
ok = {"proxied 200", "grant 200", "write 201", "write 204"}
answers = dict((m[0], int(m[1])) for m in re.findall(r"answers (\w+ \d+) (\d+)", out))
bad = {k: v for k, v in answers.items() if k not in ok}
sock = re.search(r"Socket errors: (.*)", out)
rows = [tuple(map(int, l.split()[:3])) for l in open(samples) if len(l.split()) >= 3]
after = [r for r in rows if r[0] >= warm]
if len(after) < 8:
    sys.exit(f"FAIL: only {len(after)} samples after the warm-up")
q = max(2, len(after) // 4)
rss0 = sum(r[1] for r in after[:q]) / q
rss1 = sum(r[1] for r in after[-q:]) / q
growth = (rss1 - rss0) / rss0 * 100
# Open files move by one or two with the pooled connections: growth is a last-quarter median
# above everything the first quarter reached.
fd0 = max(r[2] for r in after[:q])
fd1 = sorted(r[2] for r in after[-q:])[q // 2]
print("RSS MiB and open files each minute: " + "  ".join(
    f"{r[0] // 60}m {r[1] / 1024:.1f}/{r[2]}" for r in rows if r[0] % 60 < int(sys.argv[4])))
print(f"answers {sum(answers.values())}: " + ", ".join(f"{k} {v}" for k, v in sorted(answers.items())))
print(f"RSS after warm-up {rss0 / 1024:.1f} MiB -> end {rss1 / 1024:.1f} MiB ({growth:+.2f} %), "
      f"peak {max(r[1] for r in rows) / 1024:.1f} MiB; open files {fd0} -> {fd1} "
      f"(first and last quarter of {len(after)} samples after {warm} s)")
problems = []
if bad or not answers:
    problems.append(f"unexpected answers {bad}")
if sock:
    problems.append(f"socket errors: {sock.group(1)}")
if growth >= 5:
    problems.append(f"RSS grew {growth:.2f} %")
if fd1 > fd0:
    problems.append(f"open files grew {fd0} -> {fd1}")
print("FAIL: " + "; ".join(problems) if problems else "PASS: no errors, RSS growth under 5 %, no growth in open files")
sys.exit(1 if problems else 0)
PY
    stop_gw
    stop_nginx
    [ -z "$url" ] || pg_stop
}

kill_during_writes() { # label, database url (empty: SQLite)
    local name=kill-$1 db=${2:-$work/kill-$1/iamgate.db}
    start_gw "$name" "${2:-}"
    eval "$(python3 bench/soak.py prepare "$base" "$work/$name")"
    for round in $(seq 1 "$KILLS"); do
        python3 bench/soak.py writer "$base" "$OWNER_TOKEN" "$work/$name.writes" 30 8 "r$round" &
        local writer=$!
        sleep "$((RANDOM % 3 + 1)).$((RANDOM % 10))"
        stop_gw
        timeout 20 tail --pid="$writer" -f /dev/null || kill -9 "$writer"
        start_gw "$name" "${2:-}"
        printf '[%s] kill %s: ' "$1" "$round"
        python3 bench/soak.py check "$work/$name.writes" "$db" "$base" || failed=1
    done
    stop_gw
}

upstream_fault() {
    start_nginx 0
    start_gw upstream
    eval "$(python3 bench/soak.py prepare "$base" "$work/upstream")"
    cat >"$work/up.lua" <<LUA
local threads = {}
function setup(thread) table.insert(threads, thread) end
wrk.headers["Authorization"] = "Bearer $ROOT_TOKEN"
counts = {}
function response(status, headers, body)
  local k = os.time() .. " " .. status
  counts[k] = (counts[k] or 0) + 1
end
$(lua_report second)
LUA
    local before=$gw_pid
    timeout 60 wrk -t2 -c32 -d30s --timeout 5s -s "$work/up.lua" "$base$path" >"$work/up.txt" &
    local load=$!
    sleep 8
    local killed_at; killed_at=$(date +%s)
    kill -9 "$nginx_pid"
    wait "$nginx_pid" 2>/dev/null || true
    sleep 8
    local restarted_at; restarted_at=$(date +%s)
    start_nginx 0
    wait "$load" || true
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $ROOT_TOKEN" "$base$path")
    python3 - "$work/up.txt" "$killed_at" "$restarted_at" "$code" "$([ "$gw_pid" = "$before" ] && kill -0 "$gw_pid" && echo same)" <<'PY' || failed=1
import re, sys
out, killed, restarted, code, same = open(sys.argv[1]).read(), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
per = {}
for t, status, n in re.findall(r"second (\d+) (\d+) (\d+)", out):
    per.setdefault(int(t), {})[status] = per.setdefault(int(t), {}).get(status, 0) + int(n)
t0 = min(per)
print("upstream killed at +%ds, restarted at +%ds; answers per second:" % (killed - t0, restarted - t0))
print("  " + "  ".join(f"+{t - t0}:" + ",".join(f"{s}x{n}" for s, n in sorted(per[t].items())) for t in sorted(per)))
statuses = {s for v in per.values() for s in v}
sock = re.search(r"Socket errors: (.*)", out)
late = [per[t] for t in sorted(per) if t >= restarted + 2]
problems = []
if statuses - {"200", "502"}:
    problems.append(f"answers other than 200 and 502: {sorted(statuses)}")
if sock:
    problems.append(f"socket errors: {sock.group(1)}")
if not late or any(set(v) != {"200"} for v in late):
    problems.append("not only 200 from two seconds after the restart")
if code != "200" or same != "same":
    problems.append(f"after the run the gateway answered {code} (same process: {same or 'no'})")
print("FAIL: " + "; ".join(problems) if problems else
      "PASS: only 200 and 502 while the upstream was down, 200 again without restarting iamgate")
sys.exit(1 if problems else 0)
PY
    stop_gw
    stop_nginx
}

if [ "$MODE" != faults ]; then soak; fi
if [ "$MODE" != soak ]; then
    echo "fault runs: $KILLS kills per store, 8 writer threads; $(nproc) cores; $(date -u +%FT%TZ)"
    kill_during_writes sqlite
    url=$(pg_start)
    kill_during_writes postgres "$url"
    pg_stop
    upstream_fault
fi
[ "$failed" = 0 ] && echo "soak.sh: all passed" || { echo "soak.sh: FAILED"; exit 1; }
