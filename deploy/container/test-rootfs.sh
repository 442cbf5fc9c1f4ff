#!/usr/bin/env bash
# Builds the static binary, assembles the container's root with deploy/container/rootfs.sh,
# checks that it holds nothing else (no shell, no library), and runs it with chroot as the image
# would (uid 65532, the image's configuration, only the listen address overridden): it must
# answer /-/healthz and /-/ready. Needs root (chroot) and musl-tools.
set -euo pipefail
cd "$(dirname "$0")/../.."
PORT=${PORT:-18580}
[ "$(id -u)" -eq 0 ] || { echo "test-rootfs.sh needs root (chroot)"; exit 1; }
rustup target list --installed | grep -qx x86_64-unknown-linux-musl || rustup target add x86_64-unknown-linux-musl
cargo build --release --locked --target x86_64-unknown-linux-musl --bin iamgate
root=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$root"' EXIT
deploy/container/rootfs.sh "$root" target/x86_64-unknown-linux-musl/release/iamgate
# Exactly these files, and the empty data directory.
expected=$'etc/iamgate/iamgate.yaml\netc/ssl/certs/ca-certificates.crt\nusr/local/bin/iamgate'
actual=$(cd "$root" && find . -type f | sed 's|^\./||' | sort)
[ "$actual" = "$expected" ] || { echo "unexpected files in the root:"; echo "$actual"; exit 1; }
[ ! -e "$root/bin/sh" ] || { echo "a shell in the root"; exit 1; }
[ "$(stat -c %u "$root/var/lib/iamgate")" = 65532 ] || { echo "data directory not owned by 65532"; exit 1; }
chroot=$(command -v chroot)
# Nothing from this environment reaches it but the image's settings and a loopback port.
env -i IAMGATE_CONFIG=/etc/iamgate/iamgate.yaml MIMALLOC_ALLOW_THP=0 IAMGATE_LISTEN=127.0.0.1:$PORT \
    "$chroot" --userspec=65532:65532 "$root" /usr/local/bin/iamgate serve >"$root.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$PORT/-/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
for path in /-/healthz /-/ready; do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT$path")
    [ "$code" = 200 ] || { echo "$path answered $code"; cat "$root.log"; exit 1; }
done
# It ran as 65532 and wrote only its data directory (the rest is root's and read-only to it).
[ "$(stat -c %u "$root/var/lib/iamgate/iamgate.db")" = 65532 ] || { echo "database not written by 65532"; exit 1; }
rm -f "$root.log"
echo "container root: $(du -sh "$root" | cut -f1), $(cd "$root" && find . -type f | wc -l) files; static iamgate answered /-/healthz and /-/ready under chroot as uid 65532"
