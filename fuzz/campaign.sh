#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) side by side, each until it has
# executed RUNS inputs or SECONDS_EACH seconds have passed, then prints per
# target the executions, the executions per second, and the crashes.
#
#   fuzz/campaign.sh [-r RUNS] [-t SECONDS_EACH] [-f] [-m] [TARGET...]
#
# Defaults: 10,000,000 runs, 3600 s. `-f` runs each target in libFuzzer's
# fork mode, which goes on past inputs that hit the harness's memory or time
# limits (counted as oom/timeout; a crash still stops it; `-r` does not
# apply): the fuzz binaries lack berth's allocation guard, which refuses a
# single allocation over 1 GiB and ends a file past its deadline, so an
# input such as `[x] * (1 << 40)` is an error in berth but an out-of-memory
# or a timeout here (`-malloc_limit_mb=1024` stands in for the guard). Built with `-s none` (no AddressSanitizer:
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
mode=(-runs="$runs")
while getopts "r:t:fm" flag; do
    case $flag in
        r) runs=$OPTARG; mode=(-runs="$runs") ;;
        t) seconds=$OPTARG ;;
        f) mode=(-fork=1 -ignore_ooms=1 -ignore_timeouts=1 -malloc_limit_mb=1024) ;;
        m) merge=1 ;;
        *) echo "usage: $0 [-r RUNS] [-t SECONDS_EACH] [-f] [-m] [TARGET...]" >&2; exit 2 ;;
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
        "${mode[@]}" -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$work/artifacts/$target/" \
        >"$work/logs/$target.log" 2>&1 &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
    wait "$pid" || status=1
done

printf '%s  campaign started %s: %s, %s s each\n' "$(date -u +%FT%TZ)" "$started" "${mode[*]}" "$seconds" \
    | tee -a "$work/summary.txt"
for target in "${targets[@]}"; do
    log="$work/logs/$target.log"
    if grep -q '^#[0-9]*: cov' "$log"; then
        # Fork mode: the last progress line, `#N: ... exec/s: R oom/timeout/crash: O/T/C`.
        line=$(grep '^#[0-9]*: cov' "$log" | tail -1)
        executed=$(sed -E 's/^#([0-9]+):.*/\1/' <<<"$line")
        rate=$(sed -E 's/.*exec\/s: ([0-9]+).*/\1/' <<<"$line")
        limits=$(sed -E 's/.*oom\/timeout\/crash: ([0-9\/]+).*/\1/' <<<"$line")
    else
        executed=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | tail -1 | awk '{print $2}')
        rate=$(grep -o 'stat::average_exec_per_sec: [0-9]*' "$log" | tail -1 | awk '{print $2}')
        limits=-
    fi
    crashes=$(find "$work/artifacts/$target" -type f -name 'crash-*' | wc -l)
    stops=$(find "$work/artifacts/$target" -type f ! -name 'crash-*' | wc -l)
    printf '%-20s executions %12s  exec/s %8s  crashes %s  oom/timeout/crash %s  other stops %s\n' \
        "$target" "${executed:-?}" "${rate:-?}" "$crashes" "$limits" "$stops" | tee -a "$work/summary.txt"
done
uptime | tee -a "$work/summary.txt"
exit $status
