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
# shellcheck source=scripts/daemon-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/daemon-lib.sh"
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
  daemon_launch "$DIR/prometheus.log" /usr/bin/prometheus --config.file="$CONFIG" \
    --storage.tsdb.path="$DIR/data" --web.listen-address="127.0.0.1:$PORT" --web.enable-lifecycle
  daemon_wait 120 ready "$DIR/prometheus.log" "ready at $URL (pid $(cat "$PIDFILE"), config $CONFIG)"
}

case $CMD in
  start) start ;;
  stop) daemon_stop ;;
  status)
    if running && ready; then log "running (pid $(cat "$PIDFILE")) at $URL"; else log "not running"; exit 1; fi ;;
  *) usage ;;
esac
