#!/usr/bin/env bash
# CPU instructions per uncached decision of the shipped policy (the RVM), counted by callgrind:
# the policy bench binary run with 0 and with 400 decisions, the difference divided by 400. The
# count does not depend on the machine's speed, so it shows a policy edit's cost exactly.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --bench policy --no-run 2>/dev/null
bin=$(ls -t target/release/deps/policy-* | grep -v '\.d$' | head -1)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
count() {
    IAMGATE_BENCH_DECISIONS=$1 valgrind --tool=callgrind --callgrind-out-file="$out/cg.$1" "$bin" >/dev/null 2>"$out/log.$1"
    grep -E '^summary:|^totals:' "$out/cg.$1" | head -1 | awk '{print $2}'
}
base=$(count 0)
many=$(count 400)
echo "instructions per uncached decision: $(( (many - base) / 400 ))"
