# Shared by the load scripts (sourced): a work directory cleaned up on exit, background processes
# stopped on exit, and nginx as the upstream. Callers set UP_PORT.
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT

# start_nginx WORKERS [EXTRA]: nginx answering a small JSON document on 127.0.0.1:$UP_PORT, with
# EXTRA added inside its http block (another server, such as a proxy to test).
start_nginx() {
    mkdir -p "$work/nginx"
    cat >"$work/nginx/nginx.conf" <<NGINX
worker_processes $1;
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
    pids+=($!)
}
