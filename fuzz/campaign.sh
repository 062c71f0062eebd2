#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) side by side, each until it has
# executed RUNS inputs or SECONDS_EACH seconds have passed, then prints per
# target the executions, the executions per second, and the crashes.
#
#   fuzz/campaign.sh [-r RUNS] [-t SECONDS_EACH] [-f] [-n] [-m] [TARGET...]
#
# Defaults: 10,000,000 runs, 3600 s. `-f` starts a target again after an
# input that hit the harness's memory or time limit (set aside in
# fuzz/target/campaign/limits/; a crash still stops the target; each restart
# gets the runs and time left): the fuzz binaries lack berth's allocation
# guard, which refuses a single allocation over 1 GiB and ends a file past
# its deadline, so an input such as `[x] * (1 << 40)` is a clean error in
# berth but an out-of-memory or a timeout here (`-malloc_limit_mb=1024`
# stands in for the guard's single-allocation limit). Built with `-s none` (no AddressSanitizer:
# berth is safe Rust apart from its compression and allocator libraries, and
# the sanitizer costs two to three times the throughput), release with debug
# assertions and overflow checks on. The fuzzers run under `nice -n 19` with
# their temp dirs in /dev/shm. Inputs that add coverage land in
# fuzz/target/campaign/corpus/<target>; `-m` merges them into the committed
# corpus afterwards (libFuzzer's `-merge=1`, which keeps only inputs that add
# coverage, as `cargo fuzz cmin` does).
set -euo pipefail

cd "$(dirname "$0")/.."
runs=10000000
seconds=3600
merge=0
restart=0
build=1
while getopts "r:t:fmn" flag; do
    case $flag in
        r) runs=$OPTARG ;;
        t) seconds=$OPTARG ;;
        f) restart=1 ;;
        m) merge=1 ;;
        n) build=0 ;;
        *) echo "usage: $0 [-r RUNS] [-t SECONDS_EACH] [-f] [-n] [-m] [TARGET...]" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
limit=()
if [ $restart -eq 1 ]; then
    limit=(-malloc_limit_mb=1024)
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

build_flags=(-O -a -s none --codegen-units 4)
work=fuzz/target/campaign
mkdir -p "$work/logs"
tmp=$(mktemp -d /dev/shm/berth-fuzz.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# `-n`: run the binaries already built (a restart while others still fuzz).
[ $build -eq 1 ] && nice -n 19 cargo +nightly fuzz build "${build_flags[@]}"
binaries=fuzz/target/x86_64-unknown-linux-gnu/release

if [ $merge -eq 1 ]; then
    for target in "${targets[@]}"; do
        before=$(ls "fuzz/corpus/$target" | wc -l)
        nice -n 19 "$binaries/$target" -merge=1 "fuzz/corpus/$target" "$work/corpus/$target" \
            >"$work/logs/$target.merge.log" 2>&1
        echo "$target: corpus $before -> $(ls "fuzz/corpus/$target" | wc -l) inputs"
    done
    exit 0
fi

# One target until its time or runs are used up. With `-f`, an input that
# hits the harness's memory or time limit (an `oom-`, `timeout-` or `slow-`
# artifact) is set aside in limits/ and the fuzzer starts again for the time
# left; a crash stops the target.
fuzz_target() {
    local target=$1 deadline=$(( $(date +%s) + seconds )) round=0 left runs_left=$runs
    while left=$(( deadline - $(date +%s) )); [ "$left" -gt 5 ] && [ "$runs_left" -gt 0 ]; do
        round=$((round + 1))
        TMPDIR="$tmp/$target" nice -n 19 "$binaries/$target" \
            "$work/corpus/$target" "fuzz/corpus/$target" \
            -runs="$runs_left" "${limit[@]}" -max_total_time="$left" -timeout=25 -rss_limit_mb=2048 \
            -print_final_stats=1 -artifact_prefix="$work/artifacts/$target/" \
            >"$work/logs/$target.$round.log" 2>&1 || true
        runs_left=$(( runs_left - $(grep -o 'stat::number_of_executed_units: [0-9]*' \
            "$work/logs/$target.$round.log" | awk '{ sum += $2 } END { print sum + 0 }') ))
        [ $restart -eq 1 ] || break
        ls "$work/artifacts/$target" | grep -q '^crash-' && break
        local stops
        stops=$(find "$work/artifacts/$target" -type f | wc -l)
        [ "$stops" -gt 0 ] || break
        mkdir -p "$work/limits/$target"
        mv "$work/artifacts/$target"/* "$work/limits/$target/"
    done
}

started=$(date -u +%FT%TZ)
pids=()
for target in "${targets[@]}"; do
    mkdir -p "$work/corpus/$target" "$work/artifacts/$target"
    # Each target gets its own temp dir, so a crash leaves nothing in the others'.
    mkdir -p "$tmp/$target"
    rm -f "$work/logs/$target".*.log
    fuzz_target "$target" &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
    wait "$pid" || status=1
done

printf '%s  campaign started %s: %s, %s s each\n' "$(date -u +%FT%TZ)" "$started" "runs=$runs ${limit[*]}" "$seconds" \
    | tee -a "$work/summary.txt"
for target in "${targets[@]}"; do
    executed=$(cat "$work/logs/$target".*.log | grep -o 'stat::number_of_executed_units: [0-9]*' \
        | awk '{ sum += $2 } END { print sum + 0 }')
    runs_started=$(ls "$work/logs/$target".*.log | wc -l)
    crashes=$(find "$work/artifacts/$target" -type f -name 'crash-*' | wc -l)
    other=$(find "$work/artifacts/$target" -type f ! -name 'crash-*' | wc -l)
    limits=$(find "$work/limits/$target" -type f 2>/dev/null | wc -l)
    printf '%-20s executions %12s  crashes %s  other stops %s  memory/time limits set aside %s  (%s runs)\n' \
        "$target" "$executed" "$crashes" "$other" "$limits" "$runs_started" | tee -a "$work/summary.txt"
done
uptime | tee -a "$work/summary.txt"
exit $status
