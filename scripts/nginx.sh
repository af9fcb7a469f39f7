#!/usr/bin/env bash
# Run Debian's nginx on 127.0.0.1:PORT in front of Updraft servers, with a config generated from
# deploy/nginx/updraft.conf's settings: the first server weight=2, the others weight=1, the last one a backup.
# Usage: nginx.sh start PORT URL [URL...]  |  nginx.sh stop|status PORT
# State (nginx.conf, temp dirs, logs, pid) lives in ${UPDRAFT_NGINX_DIR:-/tmp/updraft-nginx-PORT}.
set -euo pipefail

CMD=${1:-}
PORT=${2:-8480}
DIR=${UPDRAFT_NGINX_DIR:-/tmp/updraft-nginx-$PORT}
PIDFILE=$DIR/nginx.pid

log() { echo "nginx[$PORT]: $*"; }
# shellcheck source=scripts/daemon-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/daemon-lib.sh"
answers() { curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$PORT/health"; }

start() {
  shift 2
  (($# >= 2)) || { echo "nginx.sh start PORT URL URL...: at least two servers (the last is the backup)" >&2; exit 2; }
  if running && answers; then log "already running (pid $(cat "$PIDFILE"))"; return; fi
  if ! command -v nginx >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx curl >/dev/null
  fi
  mkdir -p "$DIR"/{body,proxy,fastcgi,uwsgi,scgi}
  local servers="" i=0 n=$# url addr
  for url in "$@"; do
    addr=${url#*://}
    addr=${addr%/}
    i=$((i + 1))
    if ((i == n)); then
      servers+="        server $addr backup;"$'\n'
    elif ((i == 1)); then
      servers+="        server $addr weight=2 max_fails=1 fail_timeout=3s;"$'\n'
    else
      servers+="        server $addr weight=1 max_fails=1 fail_timeout=3s;"$'\n'
    fi
  done
  local user=""
  [[ $EUID -eq 0 ]] && user="user root root;"
  cat >"$DIR/nginx.conf" <<CONF
$user
worker_processes 1;
daemon off;
pid $DIR/nginx.pid.nginx;
error_log $DIR/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $DIR/body;
    proxy_temp_path $DIR/proxy;
    fastcgi_temp_path $DIR/fastcgi;
    uwsgi_temp_path $DIR/uwsgi;
    scgi_temp_path $DIR/scgi;
    upstream updraft {
$servers        keepalive 32;
    }
    server {
        listen 127.0.0.1:$PORT;
        client_max_body_size 2m;
        location / {
            proxy_pass http://updraft;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 1s;
            proxy_read_timeout 75s;
            proxy_send_timeout 75s;
            proxy_next_upstream error timeout http_502 http_504;
            proxy_next_upstream_tries 3;
            proxy_next_upstream_timeout 5s;
        }
        location ~ ^/v1/tasks/[^/]+/logs\$ {
            proxy_pass http://updraft;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 75s;
            proxy_next_upstream error timeout http_502 http_504;
        }
    }
}
CONF
  nginx -t -q -c "$DIR/nginx.conf" -p "$DIR" 2>>"$DIR/error.log" || { cat "$DIR/error.log" >&2; exit 1; }
  daemon_launch "$DIR/nginx.log" nginx -c "$DIR/nginx.conf" -p "$DIR"
  daemon_wait 40 answers "$DIR/nginx.log" "ready at http://127.0.0.1:$PORT (pid $(cat "$PIDFILE"), config $DIR/nginx.conf)"
}

case $CMD in
  start) start "$@" ;;
  stop) daemon_stop; rm -rf "$DIR" ;;
  status)
    if running && answers; then log "running (pid $(cat "$PIDFILE"))"; else log "not running"; exit 1; fi ;;
  *) echo "usage: $0 start PORT URL [URL...] | stop|status PORT" >&2; exit 2 ;;
esac
