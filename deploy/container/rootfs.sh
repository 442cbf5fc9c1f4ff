#!/usr/bin/env bash
# Assembles the container's root filesystem in OUT from a static iamgate binary: the binary, CA
# certificates, the default configuration and an empty data directory owned by the runtime user
# (65532). Nothing else: no shell, no libraries. The Containerfile's runtime stage is exactly
# this tree, and deploy/container/test-rootfs.sh runs it with chroot.
#   deploy/container/rootfs.sh OUT BINARY
set -euo pipefail
out=${1:?OUT}
bin=${2:?BINARY}
here=$(dirname "$0")
# A binary that needs shared libraries would not start in an empty root.
if readelf -d "$bin" | grep -q NEEDED; then
    echo "$bin is dynamically linked; build it for x86_64-unknown-linux-musl" >&2
    exit 1
fi
# The root itself must be traversable by the runtime user (a fresh temporary folder is 0700).
chmod 0755 "$out"
install -D -m 0755 "$bin" "$out/usr/local/bin/iamgate"
install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$out/etc/ssl/certs/ca-certificates.crt"
install -D -m 0644 "$here/iamgate.yaml" "$out/etc/iamgate/iamgate.yaml"
install -d -m 0700 -o 65532 -g 65532 "$out/var/lib/iamgate"
