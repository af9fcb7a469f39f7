#!/usr/bin/env bash
# Run a 3-member etcd cluster (Debian's etcd-server) on loopback ports, for the HA tests, bench and demo.
# Usage: etcd.sh start|stop|status [BASE]           the whole cluster (BASE defaults to 23790)
#        etcd.sh stop-member|start-member|kill-member N [BASE]    one member (N = 0, 1 or 2)
# Member N serves clients on 127.0.0.1:BASE+N and its peers on 127.0.0.1:BASE+10+N.
# Data (a temporary directory, removed by stop) lives in ${UPDRAFT_ETCD_DIR:-/tmp/updraft-etcd-BASE}.
# Prints the client endpoints (comma-separated) on start, for UPDRAFT_ETCD_ENDPOINTS.
set -euo pipefail

CMD=${1:-}
case $CMD in
  stop-member|start-member|kill-member) MEMBER=${2:?member number}; BASE=${3:-23790} ;;
  *) BASE=${2:-23790} ;;
esac
DIR=${UPDRAFT_ETCD_DIR:-/tmp/updraft-etcd-$BASE}
MEMBERS=(0 1 2)

log() { echo "etcd[$BASE]: $*"; }
# shellcheck source=scripts/daemon-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/daemon-lib.sh"

client_url() { echo "http://127.0.0.1:$((BASE + $1))"; }
peer_url() { echo "http://127.0.0.1:$((BASE + 10 + $1))"; }
endpoints() { local out=() m; for m in "${MEMBERS[@]}"; do out+=("$(client_url "$m")"); done; (IFS=,; echo "${out[*]}"); }
member_healthy() { curl -sf --max-time 2 "$(client_url "$1")/health" | grep -q '"health":"true"'; }
all_healthy() { local m; for m in "${MEMBERS[@]}"; do member_healthy "$m" || return 1; done; }

ensure_installed() {
  if ! command -v etcd >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server etcd-client curl >/dev/null
  fi
}

launch_member() {
  local m=$1 cluster=() i
  for i in "${MEMBERS[@]}"; do cluster+=("m$i=$(peer_url "$i")"); done
  PIDFILE=$DIR/m$m.pid
  if running; then log "member $m already running (pid $(cat "$PIDFILE"))"; return; fi
  mkdir -p "$DIR/m$m"
  # Election timeout 500 ms (heartbeat 50 ms) on loopback: the smallest lease etcd then grants is 1 s, so a
  # leader lease of 2 s is honoured as given. One scheduling plan is one Txn (up to 200 tasks, 2 ops each):
  # --max-txn-ops 1024 (default 128). Compaction keeps 10,000 revisions; the quota bounds the file.
  daemon_launch "$DIR/m$m.log" etcd --name "m$m" --data-dir "$DIR/m$m" \
    --listen-client-urls "$(client_url "$m")" --advertise-client-urls "$(client_url "$m")" \
    --listen-peer-urls "$(peer_url "$m")" --initial-advertise-peer-urls "$(peer_url "$m")" \
    --initial-cluster "$(IFS=,; echo "${cluster[*]}")" --initial-cluster-state new \
    --initial-cluster-token "updraft-$BASE" --heartbeat-interval 50 --election-timeout 500 \
    --auto-compaction-mode revision --auto-compaction-retention 10000 \
    --max-txn-ops 1024 --max-request-bytes $((8 * 1024 * 1024)) \
    --quota-backend-bytes $((2 * 1024 * 1024 * 1024)) --logger zap --log-level warn
}

start() {
  ensure_installed
  mkdir -p "$DIR"
  local m
  for m in "${MEMBERS[@]}"; do launch_member "$m"; done
  PIDFILE=$DIR/m0.pid
  daemon_wait 60 all_healthy "$DIR/m0.log" "3 members healthy, data in $DIR"
  endpoints
}

stop_member() { PIDFILE=$DIR/m$1.pid; daemon_stop; }

stop() {
  local m
  for m in "${MEMBERS[@]}"; do stop_member "$m"; done
  rm -rf "$DIR"
}

case $CMD in
  start) start ;;
  stop) stop ;;
  stop-member) stop_member "$MEMBER" ;;
  kill-member)
    PIDFILE=$DIR/m$MEMBER.pid
    if running; then kill -9 "$(cat "$PIDFILE")"; log "member $MEMBER killed"; fi
    rm -f "$PIDFILE" ;;
  start-member) launch_member "$MEMBER"; log "member $MEMBER started" ;;
  status)
    bad=0
    for m in "${MEMBERS[@]}"; do
      if member_healthy "$m"; then log "member $m healthy at $(client_url "$m")"; else log "member $m down"; bad=1; fi
    done
    exit $bad ;;
  *) echo "usage: $0 start|stop|status [BASE] | stop-member|start-member|kill-member N [BASE]" >&2; exit 2 ;;
esac
