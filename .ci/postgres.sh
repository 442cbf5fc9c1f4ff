#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests, from Debian's packages: a temporary directory,
# trust authentication, loopback only. `start` prints the admin URL; `stop DIR` removes it all.
#   url=$(.ci/postgres.sh start 55432)   ...   .ci/postgres.sh stop
# `down` and `up` stop and restart the same cluster with its data (outage tests).
set -euo pipefail
cmd=${1:?start PORT | stop}
state=${PGTEST_STATE:-/tmp/iamgate-pgtest}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$bin" ] || { echo "postgresql is not installed (apt-get install postgresql)" >&2; exit 1; }
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "$cmd" in
start)
    port=${2:-55432}
    if [ -f "$state/data/postmaster.pid" ]; then as_pg "$bin/pg_ctl" -D "$state/data" -m fast stop >/dev/null 2>&1 || true; fi
    rm -rf "$state"
    mkdir -p "$state"
    [ "$(id -u)" -eq 0 ] && chown postgres "$state"
    as_pg "$bin/initdb" -D "$state/data" -U postgres --auth=trust -E UTF8 >"$state/initdb.log" 2>&1
    as_pg "$bin/pg_ctl" -D "$state/data" -l "$state/server.log" -w -t 30 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $state -c fsync=off -c max_connections=400" start >/dev/null
    # Remember the options so that `up` restarts it the same way.
    printf '%s\n' "listen_addresses = '127.0.0.1'" "port = $port" "unix_socket_directories = '$state'" "fsync = off" "max_connections = 400" >>"$state/data/postgresql.conf"
    echo "postgres://postgres@127.0.0.1:$port/postgres"
    ;;
down)
    as_pg "$bin/pg_ctl" -D "$state/data" -m immediate -w stop >/dev/null
    ;;
up)
    as_pg "$bin/pg_ctl" -D "$state/data" -l "$state/server.log" -w -t 30 start >/dev/null
    ;;
stop)
    [ -d "$state/data" ] && as_pg "$bin/pg_ctl" -D "$state/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$state"
    ;;
*) echo "usage: $0 start PORT | down | up | stop" >&2; exit 2 ;;
esac
