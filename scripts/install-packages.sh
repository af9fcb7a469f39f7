#!/usr/bin/env bash
# Install, in one apt transaction, every Debian package the demo and the tests use, if any is missing:
# the Docker engine, the registry, Prometheus/promtool, debootstrap (base image), iproute2/iptables
# (network namespaces for the chaos tests), etcd and nginx (the HA tests), chromium and chromium-driver (the
# dashboard's browser tests: Playwright drives /usr/bin/chromium, no browser download). Idempotent and quick when
# all are present.
set -euo pipefail

declare -A bin_of=(
  [docker.io]=dockerd [docker-registry]=docker-registry [prometheus]=promtool [debootstrap]=debootstrap
  [iptables]=iptables [iproute2]=ip [curl]=curl [wget]=wget
  [etcd-server]=etcd [etcd-client]=etcdctl [nginx]=nginx
  [chromium]=chromium [chromium-driver]=chromedriver
)
need=()
for pkg in "${!bin_of[@]}"; do
  command -v "${bin_of[$pkg]}" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "install-packages: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  echo "install-packages: all present"
fi
