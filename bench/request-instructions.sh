#!/usr/bin/env bash
# CPU instructions per proxied, policy-decided GET, counted by callgrind over the whole process
# (every thread, the exporter's included): the shared runtime on one thread, connections on the
# connection workers (one per core), nginx as the upstream, the bootstrap account's token on a
# company route. Two runs of the same binary, one answering
# REQUESTS requests (wrk -t1 -c8) and one answering none; the difference divided by the number
# answered. Start-up, the token grant and shutdown cancel out. The count does not depend on the
# machine's speed, so it shows a change's cost on the request path (repeat runs agree within
# about 0.5 %: the connection hand-offs vary with the run's request count).
#   BIN=path/to/iamgate     the binary measured (default: a fresh release build)
#   EXTRA_YAML='telemetry: {otlp_endpoint: "http://127.0.0.1:18397"}'   configuration added
#   SINK=1                  runs a minimal OTLP/HTTP sink on 127.0.0.1:18397 (answers 200)
#   SECONDS_LOADED=20       wrk duration of the loaded run
#   KEEP=DIR                keeps both runs' callgrind files there (idle.out, loaded.out) and
#                           prints the per-stage breakdown of a request (bench/request-stages.py)
#   FLOOR=1                 measures the transport floor (bench/hyper_floor.rs: the same workers,
#                           hyper server and upstream pool, no gateway logic) the same way
# Needs: valgrind, wrk, nginx, curl, python3, openssl.
set -euo pipefail
# Backtraces captured for errors at start-up (RUST_BACKTRACE) would differ between the runs.
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
cd "$(dirname "$0")/.."
UP_PORT=${UP_PORT:-18391}
GW_PORT=${GW_PORT:-18392}
SINK_PORT=18397
SECONDS_LOADED=${SECONDS_LOADED:-20}
if [ "${FLOOR:-0}" = 1 ]; then
    cargo build --release -q --example hyper_floor
    BIN=$PWD/target/release/examples/hyper_floor
elif [ -z "${BIN:-}" ]; then
    cargo build --release -q --bin iamgate
    BIN=$PWD/target/release/iamgate
fi
. bench/common.sh
ports_free "$UP_PORT" "$GW_PORT" "$SINK_PORT"
start_nginx 1
if [ "${SINK:-0}" = 1 ]; then
    python3 - "$SINK_PORT" <<'PY' &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
    pids+=($!)
fi
path=/api/tenants/acme/marketplace/items/item1/versions

# run NAME SECONDS: total instructions of a gateway that answered wrk for SECONDS (0: none);
# prints "instructions requests".
run() {
    local dir=$work/$1
    mkdir -p "$dir"
    # One signing key for both runs: a generated one costs a random number of prime
    # candidates, billions of instructions that would not cancel out.
    gateway_yaml "$dir" "${EXTRA_YAML:-}" >"$dir.yaml"
    local args=(serve --config "$dir.yaml") probe=/-/healthz
    if [ "${FLOOR:-0}" = 1 ]; then
        args=("127.0.0.1:$GW_PORT" "http://127.0.0.1:$UP_PORT") probe=/
    fi
    TOKIO_WORKER_THREADS=1 valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" \
        "$BIN" "${args[@]}" >"$dir/log" 2>&1 &
    local vg=$!
    pids+=($vg)
    for _ in $(seq 1 600); do
        curl -fs "http://127.0.0.1:$GW_PORT$probe" >/dev/null 2>&1 && break
        sleep 0.1
    done
    # The floor authenticates nothing; it forwards the same header all the same.
    local token=floor-leg
    if [ "${FLOOR:-0}" != 1 ]; then
        token=$(bootstrap_token "$1/data" "http://127.0.0.1:$GW_PORT")
    fi
    local n=0
    if [ "$2" -gt 0 ]; then
        printf 'wrk.headers["Authorization"] = "Bearer %s"\n' "$token" >"$dir/auth.lua"
        local out
        out=$(timeout $(($2 + 60)) wrk -t1 -c8 -d"${2}s" -s "$dir/auth.lua" "http://127.0.0.1:$GW_PORT$path")
        if echo "$out" | grep -q "Non-2xx"; then
            echo "$out" >&2
            echo "non-2xx answers in the loaded run" >&2
            exit 1
        fi
        n=$(echo "$out" | awk '/requests in/ {print $1}')
    fi
    kill -TERM "$vg"
    wait "$vg" || true
    echo "$(grep -E '^(summary|totals):' "$dir/cg.out" | head -1 | awk '{print $2}') $n"
}

read -r base _ < <(run idle 0)
read -r loaded n < <(run loaded "$SECONDS_LOADED")
echo "requests answered: $n; instructions per request: $(( (loaded - base) / n ))"
if [ -n "${KEEP:-}" ]; then
    mkdir -p "$KEEP"
    cp "$work/idle/cg.out" "$KEEP/idle.out"
    cp "$work/loaded/cg.out" "$KEEP/loaded.out"
    python3 bench/request-stages.py "$KEEP/idle.out" "$KEEP/loaded.out" "$n"
fi
