#!/usr/bin/env bash
# The remote cache benchmark, on bench/engine's generated workspace (200
# images from 2,000 files) and a cache-only BuildGrid on 127.0.0.1
# (scripts/buildgrid/start.sh; the venv scripts/setup.sh makes):
#
#   1. cold build, no remote cache                      (the reference)
#   2. cold build, uploading to an empty BuildGrid      (upload overhead)
#   3. a second checkout at another path, empty cache   (everything remote)
#      and the bytes it downloaded against the bytes it wrote to berth-out/
#   4. one image, cold, with the remote down (a closed port) and hung (a
#      listener that never answers), against the same build without one
#
# Usage: bench/remote/run.sh [WORKDIR]     (default /tmp/berth-bench-remote)
# Needs: python3, a release build (`cargo build --release`), BuildGrid.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
berth=${BERTH:-$repo/target/release/berth}
work=${1:-/tmp/berth-bench-remote}
images=${IMAGES:-200}
files_per_image=${FILES_PER_IMAGE:-10}
total_mb=${TOTAL_MB:-500}

# shellcheck source=bench/common.sh
source "$repo/bench/common.sh"
[ -x "$berth" ] || { echo "error: $berth not found; run \`cargo build --release\` first" >&2; exit 1; }

rm -rf "$work"
mkdir -p "$work"
python3 "$repo/bench/engine/gen.py" "$work/a" --images "$images" \
    --files-per-image "$files_per_image" --total-mb "$total_mb"
cp -a "$work/a" "$work/b"
cp -a "$work/a" "$work/c"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
"$repo/scripts/buildgrid/start.sh" "$port" "$work/buildgrid" >"$work/buildgrid.log" 2>&1 &
server=$!
hung_pid=""
cleanup() {
    kill "$server" 2>/dev/null || true
    [ -n "$hung_pid" ] && kill "$hung_pid" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done
remote="grpc://127.0.0.1:$port"

# timed NAME DIR CACHE ARGS...: wall seconds of `berth ARGS` in DIR with CACHE.
timed() {
    local name=$1 dir=$2 cache=$3
    shift 3
    local start end
    start=$(date +%s.%N)
    (cd "$dir" && BERTH_CACHE_DIR=$cache "$berth" --console plain "$@" >"$work/$name.out" 2>"$work/$name.log") \
        || { cat "$work/$name.log" >&2; exit 1; }
    end=$(date +%s.%N)
    python3 -c "print(f'{$end - $start:.2f}')"
}
bytes_of() { find "$@" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'; }

bench_header "$repo" "$berth"
echo "workspace: $images images, $((images * files_per_image)) files, ${total_mb} MB"
cold=$(timed cold "$work/c" "$work/cache-c" --no-remote-cache build //...)
echo "1. cold, no remote cache:            ${cold} s   ($(tail -n 1 "$work/cold.log"))"
upload=$(timed upload "$work/a" "$work/cache-a" --remote-cache "$remote" build //...)
echo "2. cold, uploading to BuildGrid:     ${upload} s   ($(tail -n 1 "$work/upload.log"))"
second=$(timed second "$work/b" "$work/cache-b" --remote-cache "$remote" build //...)
echo "3. second checkout, all remote:      ${second} s   ($(tail -n 1 "$work/second.log"))"
cmp -s "$work/upload.out" "$work/second.out" || { echo "error: the second checkout's digests differ" >&2; exit 1; }
downloaded=$(bytes_of "$work/cache-b/cas/sha256")
published=$(bytes_of "$work/b/berth-out")
python3 - "$cold" "$upload" "$second" "$downloaded" "$published" <<'PY'
import sys
cold, upload, second, downloaded, published = map(float, sys.argv[1:])
print(f"   upload overhead: {upload / cold:.2f}x the cold build (target <= 1.3x)")
print(f"   second checkout: {second / cold:.2f}x the cold build (target <= 0.3x)")
print(f"   downloaded {int(downloaded):,} bytes into its CAS for {int(published):,} bytes in berth-out/:"
      f" {downloaded / published:.2f}x (target <= 1.1x)")
PY

# 4. One image, fresh caches: no remote, remote down, remote hung.
one=//svc000:image
none=$(timed one-none "$work/c" "$work/cache-one-none" --no-remote-cache build "$one")
down_port=$(free_port)
down=$(timed one-down "$work/c" "$work/cache-one-down" --remote-cache "grpc://127.0.0.1:$down_port" build "$one")
hung_port=$(free_port)
python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(64)
held = []
while True:
    c, _ = s.accept(); held.append(c)
' "$hung_port" &
hung_pid=$!
sleep 0.5
hung=$(timed one-hung "$work/c" "$work/cache-one-hung" --remote-cache "grpc://127.0.0.1:$hung_port" build "$one")
echo "4. one image, cold: no remote ${none} s, remote down ${down} s, remote hung ${hung} s"
grep -h '^warning:' "$work/one-down.log" "$work/one-hung.log" | sed 's/^/   /'
python3 -c "import sys; n, d, h = map(float, sys.argv[1:]); print(f'   added: down {d - n:+.2f} s (target <= 0.5 s), hung {h - n:+.2f} s (target <= 5 s)')" "$none" "$down" "$hung"
