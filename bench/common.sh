# Sourced by the bench scripts: what every result needs beside its numbers.

# bench_header REPO BERTH: prints the date, the commit the berth binary was
# built from (with `-dirty` if the worktree had changes), the machine and its
# load, so that a pasted result says when, what and under which contention.
bench_header() {
    local repo=$1 berth=$2 commit
    commit=$(git -C "$repo" describe --always --dirty --abbrev=12 2>/dev/null || echo unknown)
    echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "commit:  $commit ($berth)"
    echo "machine: $(nproc) cores, $(free -g | awk '/^Mem:/ { print $2 }') GiB, $(uname -sr)"
    bench_load
}

# bench_load: the load average now (other builds share the cores).
bench_load() {
    echo "load:   $(uptime)"
}
