#!/usr/bin/env bash
# Starts a cache-only BuildGrid server (scripts/buildgrid/cache-only.yml.in)
# on 127.0.0.1:PORT with its disk storage under DIR, in the foreground (the
# caller backgrounds and stops it). The venv is made by scripts/setup.sh.
# With CERT and KEY (PEM files) it serves TLS only.
#   scripts/buildgrid/start.sh PORT DIR [CERT KEY]
set -euo pipefail
port="$1"
dir="$2"
cert="${3:-}"
key="${4:-}"
venv="${BERTH_BUILDGRID_VENV:-/opt/berth-buildgrid}"
mkdir -p "$dir/storage"
sed -e "s|@ADDRESS@|127.0.0.1:$port|" -e "s|@STORAGE@|$dir/storage|" \
    "$(dirname "$0")/cache-only.yml.in" >"$dir/buildgrid.yml"
if [ -n "$cert" ]; then
    sed -i -e "s|^    insecure-mode: true\$|    insecure-mode: false\n    credentials:\n      tls-server-key: $key\n      tls-server-cert: $cert|" \
        "$dir/buildgrid.yml"
fi
exec "$venv/bin/bgd" server start "$dir/buildgrid.yml"
