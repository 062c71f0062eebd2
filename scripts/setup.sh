#!/usr/bin/env bash
# Installs what berth and its tests use on a fresh Debian machine: the system
# packages (runc for container steps, a registry and skopeo/umoci/oci-image-tool
# for interop tests, busybox-static for test bases) and the pinned .deb files
# the examples' hermetic bases are built from. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(runc docker-registry openssl skopeo umoci oci-image-tool busybox-static buildah podman pigz hyperfine time xz-utils faketime locales-all)
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

if [ -x scripts/fetch-debs.sh ]; then
    scripts/fetch-debs.sh
fi
