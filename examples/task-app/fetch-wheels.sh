#!/usr/bin/env bash
# Download the pinned requirements as wheels into ./wheels on the host, where PyPI is reachable
# (the build containers are not trusted to reach it). The Dockerfile installs from ./wheels only
# (--no-index) and pip checks every wheel against the hashes in requirements.txt.
# Usage: fetch-wheels.sh [PIP]   (PIP defaults to python3 -m pip)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PIP=${1:-python3 -m pip}
mkdir -p "$HERE/wheels"
$PIP download --quiet --no-deps --only-binary=:all: --require-hashes \
  -r "$HERE/requirements.txt" -d "$HERE/wheels"
echo "fetch-wheels: $(ls "$HERE/wheels" | tr '\n' ' ')"
