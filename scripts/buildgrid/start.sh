#!/usr/bin/env bash
# Starts a cache-only BuildGrid server (scripts/buildgrid/cache-only.yml.in)
# on 127.0.0.1:PORT with its disk storage under DIR, in the foreground (the
# caller backgrounds and stops it). The venv is made by scripts/setup.sh.
#   scripts/buildgrid/start.sh PORT DIR
set -euo pipefail
port="$1"
dir="$2"
venv="${BERTH_BUILDGRID_VENV:-/opt/berth-buildgrid}"
mkdir -p "$dir/storage"
sed -e "s|@ADDRESS@|127.0.0.1:$port|" -e "s|@STORAGE@|$dir/storage|" \
    "$(dirname "$0")/cache-only.yml.in" >"$dir/buildgrid.yml"
exec "$venv/bin/bgd" server start "$dir/buildgrid.yml"
