# Sourced by the registry and release benchmarks (after bench/common.sh):
# local registries to push to, and timing and summary helpers. The caller
# sets `work` (its scratch directory) first; each registry keeps its files
# under "$work/registries/NAME".

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_registry NAME: a fresh plain-HTTP docker-registry on 127.0.0.1 with
# its access log (on by default) in "$work/registries/NAME/log"; prints its
# host:port. Its pid is kept in a file beside it: start_registry runs in a
# command substitution's subshell, where a variable set would be lost.
start_registry() {
    local dir="$work/registries/$1" port
    port=$(free_port)
    mkdir -p "$dir"
    cat >"$dir/config.yml" <<YAML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $dir/storage
http:
  addr: 127.0.0.1:$port
  secret: berth-bench
YAML
    docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
    echo $! >"$dir/pid"
    for _ in $(seq 100); do
        python3 -c 'import sys, urllib.request; urllib.request.urlopen("http://%s/v2/" % sys.argv[1])' "127.0.0.1:$port" \
            2>/dev/null && break
        sleep 0.05
    done
    echo "127.0.0.1:$port"
}

# stop_registries: kills every registry started under "$work" (for a trap).
stop_registries() {
    for pid in "$work"/registries/*/pid; do [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null; done
    return 0
}

ms() { python3 -c 'import sys; print(round((float(sys.argv[2]) - float(sys.argv[1])) * 1000))' "$@"; }
now() { date +%s.%N; }
# timed COMMAND...: prints the wall time in ms of the command; a failure
# prints its stderr and stops the benchmark.
timed() {
    sync
    local start end
    start=$(now)
    if ! "$@" >/dev/null 2>"$work/step.err"; then
        echo "error: $* failed:" >&2; cat "$work/step.err" >&2; kill $$
    fi
    end=$(now)
    ms "$start" "$end"
}

# log_lines REGISTRY: the lines of its access log so far.
log_lines() { wc -l <"$work/registries/$1/log"; }
# uploads REGISTRY FROM_LINE: the blob uploads it logged after FROM_LINE.
uploads() { tail -n "+$(($2 + 1))" "$work/registries/$1/log" | awk '$6 == "\"POST" && $7 ~ /\/blobs\/uploads\// { n++ } END { print n + 0 }'; }
# manifest_puts REGISTRY FROM_LINE: the manifest PUTs it logged after FROM_LINE.
manifest_puts() { tail -n "+$(($2 + 1))" "$work/registries/$1/log" | awk '$6 == "\"PUT" && $7 ~ /\/manifests\// { n++ } END { print n + 0 }'; }

median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
ratio() { python3 -c 'import sys; print("%.2fx" % (float(sys.argv[1]) / float(sys.argv[2])))' "$1" "$2"; }
