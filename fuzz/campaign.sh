#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) side by side, each until it has
# executed RUNS inputs or SECONDS_EACH seconds have passed, then prints per
# target the executions, the executions per second, and the crashes.
#
#   fuzz/campaign.sh [-r RUNS] [-t SECONDS_EACH] [TARGET...]
#
# Defaults: 10,000,000 runs, 3600 s. Built with `-s none` (no AddressSanitizer:
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
while getopts "r:t:m" flag; do
    case $flag in
        r) runs=$OPTARG ;;
        t) seconds=$OPTARG ;;
        m) merge=1 ;;
        *) echo "usage: $0 [-r RUNS] [-t SECONDS_EACH] [-m] [TARGET...]" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

build_flags=(-O -a -s none --codegen-units 4)
work=fuzz/target/campaign
mkdir -p "$work/logs"
tmp=$(mktemp -d /dev/shm/berth-fuzz.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

nice -n 19 cargo +nightly fuzz build "${build_flags[@]}"
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

started=$(date -u +%FT%TZ)
pids=()
for target in "${targets[@]}"; do
    mkdir -p "$work/corpus/$target" "$work/artifacts/$target"
    # Each target gets its own temp dir, so a crash leaves nothing in the others'.
    mkdir -p "$tmp/$target"
    TMPDIR="$tmp/$target" nice -n 19 "$binaries/$target" \
        "$work/corpus/$target" "fuzz/corpus/$target" \
        -runs="$runs" -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$work/artifacts/$target/" \
        >"$work/logs/$target.log" 2>&1 &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
    wait "$pid" || status=1
done

printf '%s  campaign started %s, runs=%s, seconds=%s\n' "$(date -u +%FT%TZ)" "$started" "$runs" "$seconds" \
    | tee -a "$work/summary.txt"
for target in "${targets[@]}"; do
    log="$work/logs/$target.log"
    executed=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | tail -1 | awk '{print $2}')
    rate=$(grep -o 'stat::average_exec_per_sec: [0-9]*' "$log" | tail -1 | awk '{print $2}')
    crashes=$(find "$work/artifacts/$target" -type f | wc -l)
    printf '%-20s executions %12s  exec/s %8s  crashes %s\n' "$target" "${executed:-?}" "${rate:-?}" "$crashes" \
        | tee -a "$work/summary.txt"
done
uptime | tee -a "$work/summary.txt"
exit $status
