#!/usr/bin/env bash
# Make sure a Docker engine answers on the default socket; start dockerd if not.
# Idempotent: does nothing (but say so) when `docker info` already works.
# Env: UPDRAFT_DOCKERD_LOG (default /var/log/updraft-dockerd.log),
#      UPDRAFT_DOCKERD_TIMEOUT (seconds, default 60).
set -euo pipefail

LOG=${UPDRAFT_DOCKERD_LOG:-/var/log/updraft-dockerd.log}
TIMEOUT=${UPDRAFT_DOCKERD_TIMEOUT:-60}
PIDFILE=/var/run/docker.pid
DATA_ROOT=/var/lib/docker

log() { echo "ensure-docker: $*"; }

# 1. Install the engine (Debian's docker.io brings dockerd, containerd, runc).
if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
  log "installing docker.io"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io iptables >/dev/null
fi

if timeout 10 docker info >/dev/null 2>&1; then
  log "docker engine already running ($(docker version -f '{{.Server.Version}}'))"
  exit 0
fi

# 2. A dockerd may be starting right now; only start our own if none is alive.
if [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null \
    && grep -q dockerd "/proc/$(cat "$PIDFILE")/cmdline" 2>/dev/null; then
  log "dockerd (pid $(cat "$PIDFILE")) is alive but not answering yet; waiting"
else
  rm -f "$PIDFILE"
  # A containerd left by a killed dockerd can linger as a zombie (pid 1 here is slow
  # to reap); dockerd would then wait for its socket forever. Forget such a pid.
  ctrd_pid=/var/run/docker/containerd/containerd.pid
  if [[ -f $ctrd_pid ]] && ! grep -qs '^State:[[:space:]]*[RSD]' "/proc/$(cat "$ctrd_pid")/status"; then
    rm -f "$ctrd_pid"
  fi
  opts=()

  # Storage: keep the default overlay2 unless overlayfs can't be mounted here.
  mkdir -p "$DATA_ROOT"
  probe=$(mktemp -d "$DATA_ROOT/.overlay-probe.XXXXXX")
  mkdir -p "$probe"/{lower,upper,work,merged}
  if mount -t overlay overlay \
      -o "lowerdir=$probe/lower,upperdir=$probe/upper,workdir=$probe/work" "$probe/merged" 2>/dev/null; then
    umount "$probe/merged"
  else
    log "overlayfs unavailable: using --storage-driver=vfs"
    opts+=(--storage-driver=vfs)
  fi
  rm -rf "$probe"

  # Networking: dockerd needs a working iptables (nat table) for its bridge.
  if ! iptables -t nat -L -n >/dev/null 2>&1; then
    log "iptables nat table unusable: using --iptables=false --ip-masq=false"
    opts+=(--iptables=false --ip-masq=false)
  fi

  log "starting dockerd ${opts[*]:-with default options} (log: $LOG)"
  mkdir -p "$(dirname "$LOG")"
  # setsid+nohup: the daemon must outlive this script and its process group.
  setsid nohup dockerd "${opts[@]}" </dev/null >>"$LOG" 2>&1 &
fi

# 3. Wait for the API.
start=$SECONDS
while ((SECONDS - start < TIMEOUT)); do
  if timeout 5 docker info >/dev/null 2>&1; then
    log "docker engine ready after ~$((SECONDS - start)) s: $(docker info -f '{{.ServerVersion}} storage={{.Driver}} cgroup=v{{.CgroupVersion}}/{{.CgroupDriver}}')"
    exit 0
  fi
  sleep 0.5
done
log "ERROR: docker did not answer within ${TIMEOUT}s; last lines of $LOG:" >&2
tail -n 40 "$LOG" >&2 || true
exit 1
