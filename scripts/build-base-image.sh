#!/usr/bin/env bash
# Build the local images Updraft's tests and benchmarks use (no registry needed):
#   updraft/base:bookworm  Debian bookworm minbase + python3, imported from a debootstrap rootfs
#   updraft/noop:latest    FROM-scratch static busybox (~1-2 MB) for "no-op container" runs
# Idempotent: an image already present is left alone; the debootstrap rootfs is cached.
# Env: UPDRAFT_CACHE (default /var/cache/updraft), UPDRAFT_MIRROR, UPDRAFT_REBUILD=1 to force.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${UPDRAFT_CACHE:-/var/cache/updraft}
MIRROR=${UPDRAFT_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
INCLUDE=python3            # python3 (not -minimal): json lives in libpython3.11-stdlib
BASE=updraft/base:bookworm
NOOP=updraft/noop:latest
ROOTFS=$CACHE/rootfs
STAMP="suite=$SUITE include=$INCLUDE mirror=$MIRROR"

log() { echo "build-base-image: $*"; }
have_image() { [[ ${UPDRAFT_REBUILD:-0} != 1 ]] && docker image inspect "$1" >/dev/null 2>&1; }

"$HERE/ensure-docker.sh"
start=$SECONDS

# apt-get install only what is missing (fresh CI machines).
need=()
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v wget >/dev/null 2>&1 || need+=(wget)
if ((${#need[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# ---- updraft/base:bookworm -------------------------------------------------
if have_image "$BASE"; then
  log "$BASE already present"
else
  if [[ ! -f $ROOTFS/.updraft-stamp || $(cat "$ROOTFS/.updraft-stamp") != "$STAMP" ]]; then
    log "debootstrap $SUITE ($INCLUDE) into $ROOTFS"
    tmp="$ROOTFS.tmp"
    rm -rf "$tmp"
    mkdir -p "$CACHE"
    debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$tmp" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
      || { tail -n 30 "$CACHE/debootstrap.log" >&2; exit 1; }
    chroot "$tmp" python3 -c 'import json, hashlib, os, time'   # sanity check
    # Trim what a container never needs (docker provides /dev itself).
    rm -rf "${tmp:?}"/usr/share/{doc,man,info,lintian,linda}/* "${tmp:?}"/var/lib/apt/lists/* \
      "${tmp:?}"/var/cache/apt/* "${tmp:?}"/var/cache/debconf/*-old "${tmp:?}"/var/log/* \
      "${tmp:?}"/dev/* "${tmp:?}"/tmp/*
    find "$tmp"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +
    echo "$STAMP" >"$tmp/.updraft-stamp"
    rm -rf "$ROOTFS"
    mv "$tmp" "$ROOTFS"
  else
    log "reusing cached rootfs $ROOTFS"
  fi
  log "importing $BASE"
  tar --numeric-owner --exclude=./.updraft-stamp -C "$ROOTFS" -c . \
    | docker import -c 'CMD ["python3"]' - "$BASE" >/dev/null
fi

# ---- updraft/noop:latest ---------------------------------------------------
if have_image "$NOOP"; then
  log "$NOOP already present"
else
  bb=$CACHE/busybox
  if [[ ! -x $bb ]]; then
    log "fetching Debian's busybox-static"
    dl=$(mktemp -d)
    trap 'rm -rf "$dl"' EXIT
    (cd "$dl" && { apt-get download -qq busybox-static 2>/dev/null \
      || { apt-get update -qq && apt-get download -qq busybox-static; }; })
    dpkg-deb -x "$dl"/busybox-static_*.deb "$dl/x"
    mkdir -p "$CACHE"
    install -m 0755 "$dl/x/bin/busybox" "$bb"
  fi
  nroot=$(mktemp -d)
  mkdir -p "$nroot"/{bin,dev,etc,proc,sys,tmp}
  install -m 0755 "$bb" "$nroot/bin/busybox"
  for app in sh true false sleep cat echo env yes head ls grep; do ln -s busybox "$nroot/bin/$app"; done
  log "importing $NOOP"
  tar --numeric-owner --owner=0 --group=0 -C "$nroot" -c . \
    | docker import -c 'ENV PATH=/bin' -c 'CMD ["true"]' - "$NOOP" >/dev/null
  rm -rf "$nroot"
fi

log "done in $((SECONDS - start)) s: $(docker image ls --format '{{.Repository}}:{{.Tag}}={{.Size}}' updraft/base) $(docker image ls --format '{{.Repository}}:{{.Tag}}={{.Size}}' updraft/noop)"
