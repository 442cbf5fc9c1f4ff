# Shared by the load scripts (sourced): a work directory cleaned up on exit, background processes
# stopped on exit, and nginx as the upstream. Callers set UP_PORT.
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT

# start_nginx WORKERS [EXTRA]: nginx answering a small JSON document on 127.0.0.1:$UP_PORT, with
# EXTRA added inside its http block (another server, such as a proxy to test). WORKERS 0 runs one
# process without a master, which a single `kill -9 $!` stops outright (fault runs). The new
# process id is in $nginx_pid.
start_nginx() {
    mkdir -p "$work/nginx"
    local procs="worker_processes $1;"
    [ "$1" = 0 ] && procs="master_process off; worker_processes 1;"
    cat >"$work/nginx/nginx.conf" <<NGINX
$procs
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
${2:-}
}
NGINX
    nginx -c "$work/nginx/nginx.conf" &
    nginx_pid=$!
    pids+=($nginx_pid)
    wait_http "http://127.0.0.1:$UP_PORT/" "$work/nginx/error.log"
}

# wait_http URL LOG: waits (10 s at most) until URL answers 2xx; otherwise prints LOG and exits.
wait_http() {
    for _ in $(seq 1 100); do
        curl -fs "$1" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "$1 did not come up"; cat "$2"; exit 1
}

# start_iamgate NAME YAML: a release iamgate with the configuration YAML (data in $work/NAME),
# waited for until healthy; its process id is in $gw_pid.
start_iamgate() {
    printf '%s\n' "$2" "data_dir: $work/$1" >"$work/$1.yaml"
    ./target/release/iamgate serve --config "$work/$1.yaml" >"$work/$1.log" 2>&1 &
    gw_pid=$!
    pids+=($gw_pid)
    wait_http "http://$(sed -n 's/^listen: //p' "$work/$1.yaml")/-/healthz" "$work/$1.log"
}

# gateway_yaml DIR EXTRA: the configuration of a measured gateway on $GW_PORT with its data in
# DIR, nginx on $UP_PORT upstream, and one fixed signing key ($work/signing.pem, made on first
# use: generating one per start costs a random number of prime candidates), plus EXTRA.
gateway_yaml() {
    [ -f "$work/signing.pem" ] ||
        openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/signing.pem" 2>/dev/null
    cat <<YAML
listen: 127.0.0.1:$GW_PORT
data_dir: $1/data
log: {level: warn}
upstream: {url: "http://127.0.0.1:$UP_PORT"}
signing: {keys: [{path: $work/signing.pem, status: active}]}
${2:-}
YAML
}

# bootstrap_token NAME BASE: an access token of the bootstrap account of the iamgate started as
# NAME, from its token endpoint at BASE.
bootstrap_token() {
    local creds=$work/$1/bootstrap-credentials.json id secret
    id=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['clientId'])" "$creds")
    secret=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['clientSecret'])" "$creds")
    curl -fs -u "$id:$secret" -d grant_type=client_credentials "$2/api/m2m/oauth/token" |
        python3 -c "import json,sys;print(json.load(sys.stdin)['access_token'])"
}

# wrk_leg NAME URL [SCRIPT]: one wrk run of DURATION seconds at CONNS connections; prints
# req/s, p50, p99 and non-2xx, appends req/s to $work/NAME.rps and keeps the count answered in
# $work/last.requests.
wrk_leg() {
    local out rps p50 p99 errs
    out=$(timeout $((DURATION + 30)) wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency ${3:+-s "$3"} "$2")
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$out" | awk '$1=="50%" {print $2}')
    p99=$(echo "$out" | awk '$1=="99%" {print $2}')
    errs=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
    printf '%-22s %10s req/s   p50 %-8s p99 %-8s non-2xx %s\n' "$1" "$rps" "$p50" "$p99" "${errs:-0}"
    echo "$rps" >>"$work/$1.rps"
    echo "$out" | awk '/requests in/ {print $1}' >"$work/last.requests"
}

# ports_free PORT...: exits when one is taken (a leftover server would be measured instead).
ports_free() {
    for port in "$@"; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "port $port is already in use; stop what listens there first"
            exit 1
        fi
    done
}

# oha_leg NAME URL [OHA ARGS...]: RATE req/s for DURATION seconds at 64 connections, latency
# corrected; prints p50/p99 and keeps them in $work/NAME.fixed (the count answered in
# $work/last.requests).
oha_leg() {
    local name=$1 url=$2 out
    shift 2
    out=$(timeout $((DURATION + 30)) oha -z "${DURATION}s" -q "$RATE" -c 64 --latency-correction \
        --no-tui --output-format json "$@" "$url")
    python3 -c "
import json, sys
d = json.loads(sys.argv[2])
p = d['latencyPercentiles']
print(f\"{sys.argv[1]:<22} p50 {p['p50']*1e6:8.0f} us   p99 {p['p99']*1e6:8.0f} us   ok {d['summary']['successRate']:.4f}\")
open(sys.argv[3], 'w').write(f\"{p['p50']} {p['p99']}\")
open(sys.argv[4], 'w').write(str(sum(d['statusCodeDistribution'].values())))
" "$name" "$out" "$work/$name.fixed" "$work/last.requests"
}

# oha_added NAME...: the latency each of NAME adds to the upstream-direct leg.
oha_added() {
    python3 - "$work" "$@" <<'PY'
import sys
w = sys.argv[1]
base = [float(x) for x in open(f"{w}/upstream-direct.fixed").read().split()]
for n in sys.argv[2:]:
    v = [float(x) for x in open(f"{w}/{n}.fixed").read().split()]
    print(f"added by {n:<20} p50 {(v[0]-base[0])*1e6:7.0f} us   p99 {(v[1]-base[1])*1e6:7.0f} us")
PY
}

# cpu_before PID / cpu_after PID NAME: the CPU time PID spent between the two calls, user and
# system (all its threads, from /proc), divided by the requests the last oha_leg answered;
# printed and kept in $work/NAME.cpu as "user_us system_us".
cpu_ticks() {
    # Fields after the command name (which may hold spaces): utime and stime are the 12th and
    # 13th of them.
    sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12, $13}'
}
cpu_before() {
    cpu_start=$(cpu_ticks "$1")
}
cpu_after() {
    python3 - "$cpu_start" "$(cpu_ticks "$1")" "$(getconf CLK_TCK)" "$work/last.requests" "$2" \
        "$work/$2.cpu" <<'PY'
import sys
u0, s0 = map(int, sys.argv[1].split())
u1, s1 = map(int, sys.argv[2].split())
tck, n = int(sys.argv[3]), int(open(sys.argv[4]).read())
user, system = (u1 - u0) / tck / n * 1e6, (s1 - s0) / tck / n * 1e6
print(f"cpu of {sys.argv[5]:<16} user {user:6.1f} us   system {system:6.1f} us per request ({n} requests)")
open(sys.argv[6], "w").write(f"{user} {system}")
PY
}
