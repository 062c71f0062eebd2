#!/usr/bin/env bash
# Installs what berth and its tests use on a fresh Debian machine: the system
# packages (runc for container steps, a registry and skopeo/umoci/oci-image-tool
# for interop tests, busybox-static for test bases) and the pinned .deb files
# the examples' hermetic bases are built from. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(runc docker-registry openssl skopeo umoci oci-image-tool busybox-static buildah podman pigz hyperfine time xz-utils faketime locales-all uidmap)
if [ "${1:-}" = "--examples-only" ]; then
    packages=(runc)
fi

sudo=""
if [ "$(id -u)" != 0 ]; then
    sudo="sudo"
fi

missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Containers run in a user namespace mapped to the `berth` ranges of
# /etc/subuid and /etc/subgid (the same start in both): add one past every
# range already there, so no user's subordinate ids overlap a container's.
berth_start() { awk -F: '$1 == "berth" && $3 >= 65536 { print $2; exit }' "$1" 2>/dev/null; }
if [ -z "$(berth_start /etc/subuid)" ] || [ "$(berth_start /etc/subuid)" != "$(berth_start /etc/subgid)" ]; then
    start=$(cat /etc/subuid /etc/subgid 2>/dev/null | awk -F: 'BEGIN { end = 1000000 }
        $1 != "berth" && $2 + $3 > end { end = $2 + $3 } END { print int((end + 65535) / 65536) * 65536 }')
    for file in /etc/subuid /etc/subgid; do
        $sudo touch "$file"
        $sudo sed -i '/^berth:/d' "$file"
        echo "berth:$start:65536" | $sudo tee -a "$file" >/dev/null
    done
    echo "setup: containers map to host ids $start-$((start + 65535)) (berth in /etc/subuid, /etc/subgid)" >&2
fi

# Rootless tests run berth as two unprivileged users: `berth-rootless` with
# a subordinate range of its own (mapped through newuidmap/newgidmap, package
# uidmap) and `berth-single` with none (a single-id map).
if [ "${1:-}" != "--examples-only" ]; then
    for user in berth-rootless berth-single; do
        id -u "$user" >/dev/null 2>&1 || $sudo useradd --system --no-create-home --shell /usr/sbin/nologin "$user"
    done
    if ! grep -q '^berth-rootless:' /etc/subuid || ! grep -q '^berth-rootless:' /etc/subgid; then
        start=$(cat /etc/subuid /etc/subgid 2>/dev/null | awk -F: 'BEGIN { end = 1000000 }
            $2 + $3 > end { end = $2 + $3 } END { print int((end + 65535) / 65536) * 65536 }')
        for file in /etc/subuid /etc/subgid; do
            $sudo sed -i '/^berth-rootless:/d' "$file"
            echo "berth-rootless:$start:65536" | $sudo tee -a "$file" >/dev/null
        done
    fi
fi

if [ -x scripts/fetch-debs.sh ]; then
    scripts/fetch-debs.sh
fi

# BuildGrid, the REAPI server the remote cache tests start (cache-only,
# scripts/buildgrid/): buildgrid 0.9.1 needs Python >= 3.13. A fixed venv
# path, so that a non-root test user finds what root installed.
buildgrid_venv=/opt/berth-buildgrid
if [ "${1:-}" != "--examples-only" ] && [ ! -x "$buildgrid_venv/bin/bgd" ]; then
    python=""
    for candidate in python3.13 "${PYENV_ROOT:-$HOME/.pyenv}/versions/3.13.0/bin/python3" /root/.pyenv/versions/3.13.0/bin/python3; do
        if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 13))'; then
            python="$candidate"
            break
        fi
    done
    if [ -n "$python" ]; then
        echo "setup: installing buildgrid==0.9.1 into $buildgrid_venv" >&2
        $sudo "$python" -m venv "$buildgrid_venv"
        $sudo "$buildgrid_venv/bin/pip" install -q buildgrid==0.9.1
    else
        echo "setup: no Python >= 3.13 found; the remote cache tests will be skipped" >&2
    fi
fi
