#!/usr/bin/env bash
# Run Debian's docker-registry (distribution v2) on 127.0.0.1:PORT for tests.
# Usage: registry.sh start|stop|status [PORT]      (PORT defaults to 5000)
# State (config.yml, data/, registry.pid, registry.log) lives in
# ${UPDRAFT_STATE_DIR:-/var/lib/updraft}/registry-PORT and survives restarts.
# Docker treats 127.0.0.0/8 registries as insecure-allowed, so no daemon config is needed.
set -euo pipefail

CMD=${1:-}
PORT=${2:-5000}
DIR=${UPDRAFT_STATE_DIR:-/var/lib/updraft}/registry-$PORT
PIDFILE=$DIR/registry.pid
URL=http://127.0.0.1:$PORT/v2/

log() { echo "registry[$PORT]: $*"; }
# shellcheck source=scripts/daemon-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/daemon-lib.sh"
answers() { curl -sf -o /dev/null --max-time 2 "$URL"; }

start() {
  if running && answers; then log "already running (pid $(cat "$PIDFILE"))"; return; fi
  if answers; then log "ERROR: port $PORT already serves something not started here" >&2; exit 1; fi
  if ! command -v docker-registry >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry curl >/dev/null
  fi
  mkdir -p "$DIR/data"
  cat >"$DIR/config.yml" <<YAML
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $DIR/data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$PORT
YAML
  daemon_launch "$DIR/registry.log" /usr/bin/docker-registry serve "$DIR/config.yml"
  daemon_wait 60 answers "$DIR/registry.log" "ready at $URL (pid $(cat "$PIDFILE"), state $DIR)"
}

case $CMD in
  start) start ;;
  stop) daemon_stop ;;
  status)
    if running && answers; then log "running (pid $(cat "$PIDFILE")) at $URL"; else log "not running"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status [PORT]" >&2; exit 2 ;;
esac
