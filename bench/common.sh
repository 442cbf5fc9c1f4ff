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
}
