#!/usr/bin/env bash
# Run Debian's prometheus on 127.0.0.1:PORT with a given config, for tests/benchmarks.
# Usage: prometheus.sh start PORT CONFIG | stop PORT | status PORT
# State (data/, prometheus.pid, prometheus.log) lives in
# ${UPDRAFT_STATE_DIR:-/var/lib/updraft}/prometheus-PORT; the TSDB is wiped on each start.
# --web.enable-lifecycle is on, so `curl -X POST http://127.0.0.1:PORT/-/reload` rereads CONFIG.
set -euo pipefail

CMD=${1:-}
PORT=${2:-}
CONFIG=${3:-}
usage() { echo "usage: $0 start PORT CONFIG | stop PORT | status PORT" >&2; exit 2; }
[[ -n $PORT ]] || usage
DIR=${UPDRAFT_STATE_DIR:-/var/lib/updraft}/prometheus-$PORT
PIDFILE=$DIR/prometheus.pid
URL=http://127.0.0.1:$PORT

log() { echo "prometheus[$PORT]: $*"; }
running() { [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
ready() { curl -sf -o /dev/null --max-time 2 "$URL/-/ready"; }

start() {
  [[ -f $CONFIG ]] || { echo "prometheus.sh: config file '$CONFIG' not found" >&2; usage; }
  CONFIG=$(realpath "$CONFIG")
  if running; then log "already running (pid $(cat "$PIDFILE")); stop it first to change config"; return; fi
  if ready; then log "ERROR: port $PORT already serves something not started here" >&2; exit 1; fi
  if ! command -v prometheus >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus curl >/dev/null
  fi
  if command -v promtool >/dev/null 2>&1; then promtool check config "$CONFIG" >/dev/null; fi
  rm -rf "$DIR/data"
  mkdir -p "$DIR/data"
  setsid nohup /usr/bin/prometheus --config.file="$CONFIG" --storage.tsdb.path="$DIR/data" \
    --web.listen-address="127.0.0.1:$PORT" --web.enable-lifecycle \
    </dev/null >>"$DIR/prometheus.log" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 120); do
    if ready; then log "ready at $URL (pid $(cat "$PIDFILE"), config $CONFIG)"; return; fi
    running || break
    sleep 0.5
  done
  log "ERROR: prometheus did not become ready; last lines of $DIR/prometheus.log:" >&2
  tail -n 20 "$DIR/prometheus.log" >&2 || true
  stop >/dev/null
  exit 1
}

stop() {
  if running; then
    pid=$(cat "$PIDFILE")
    kill "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    log "stopped (pid $pid)"
  else
    log "not running"
  fi
  rm -f "$PIDFILE"
}

case $CMD in
  start) start ;;
  stop) stop ;;
  status)
    if running && ready; then log "running (pid $(cat "$PIDFILE")) at $URL"; else log "not running"; exit 1; fi ;;
  *) usage ;;
esac
