#!/usr/bin/env bash
# Runs every fuzz target (fuzz/, cargo-fuzz on the stable toolchain, no sanitizer) for a bounded
# number of inputs and time, seeded from fuzz/seeds/<target> (inputs the tests use), two at a
# time, and prints each target's executed inputs. A crash, timeout or out-of-memory stops the
# run with libFuzzer's report; the input is saved under fuzz/artifacts/<target>/.
#   RUNS=10000000 SECONDS_EACH=1800 bench/fuzz.sh     # the figures in bench/RESULTS.md
#   RUNS=20000 SECONDS_EACH=30 bench/fuzz.sh          # what CI runs
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-1000000}
SECONDS_EACH=${SECONDS_EACH:-120}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo fuzz build -s none -O
targets=$(cargo fuzz list)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
run() {
    local t=$1
    mkdir -p "fuzz/corpus/$t"
    cargo fuzz run -s none -O "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -runs="$RUNS" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
        -max_len=65536 -print_final_stats=1 >"$out/$t.log" 2>&1
}
status=0
set -- $targets
while [ $# -gt 0 ]; do
    pids=()
    for t in "$1" "${2:-}"; do
        [ -n "$t" ] || continue
        run "$t" & pids+=("$!:$t")
    done
    for p in "${pids[@]}"; do
        if ! wait "${p%%:*}"; then
            echo "FAILED: ${p#*:}"; tail -40 "$out/${p#*:}.log"; status=1
        fi
    done
    shift; [ $# -gt 0 ] && shift
done
for t in $targets; do
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$out/$t.log" | grep -o '[0-9]*$' || echo '?')
    secs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$out/$t.log" | grep -o 'in [0-9]*' | grep -o '[0-9]*' || echo '?')
    echo "$t: $runs inputs in ${secs}s"
done
exit $status
