#!/usr/bin/env bash
# Sourced by check-packaging.sh and check-deploy.sh: `nginx -t` of a shipped
# server config in a scratch prefix, with a throwaway certificate in place
# of /etc/nginx/ssl/.
#   nginx_check CONF WORKDIR [SED_EXPR...]   (extra sed expressions rewrite CONF)

nginx_check() {
    local conf=$1 work=$2
    shift 2
    local sed_args=(-e "s|/etc/nginx/ssl/|$work/ssl/|g")
    for e in "$@"; do sed_args+=(-e "$e"); done
    mkdir -p "$work/ssl" "$work/logs"
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
        -keyout "$work/ssl/privkey.pem" -out "$work/ssl/fullchain.pem" 2>/dev/null
    sed "${sed_args[@]}" "$conf" > "$work/server.conf"
    cat > "$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/logs/error.log;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $work/body;
    proxy_temp_path $work/proxy;
    include $work/server.conf;
}
CONF
    nginx -t -q -c "$work/nginx.conf" -p "$work"
}
