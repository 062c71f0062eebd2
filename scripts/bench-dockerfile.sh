#!/bin/sh
# Times one Dockerfile built by berth (`oci_dockerfile`) and by Docker's
# legacy builder (`DOCKER_BUILDKIT=0 docker build`) on the same busybox base:
# cold, no-op rebuild, and one changed COPY'd file. Needs root, runc, docker
# and /bin/busybox. Usage: scripts/bench-dockerfile.sh [path/to/berth]
set -eu
BERTH=${1:-$(dirname "$0")/../target/debug/berth}
BERTH=$(realpath "$BERTH")
WS=$(mktemp -d)
trap 'rm -rf "$WS"; docker rmi -f berth-bench-base:v1 berth-bench-docker >/dev/null 2>&1 || true' EXIT
cd "$WS"
: > WORKSPACE.star
mkdir -p base app/src
cp /bin/busybox base/busybox
cat > base/BUILD.star <<'STAR'
APPLETS = ["sh", "echo", "cat", "ls", "mkdir", "rm", "touch", "chmod", "cp", "seq", "sed", "wc", "sort"]
oci_layer(
    name = "root",
    files = {"/bin/busybox": "busybox"},
    symlinks = {"/bin/" + a: "busybox" for a in APPLETS},
    directories = ["/tmp", "/proc", "/sys", "/dev", "/etc"],
    mode = "0755",
)
oci_image_build(name = "bb", layers = [":root"], repository = "berth-bench-base", tag = "v1")
STAR
for i in $(seq 1 200); do echo "file $i" > "app/src/f$i.txt"; done
cat > app/Dockerfile <<'DF'
FROM berth-bench-base:v1
ENV APP=/app
WORKDIR /app
RUN mkdir -p /app/data && seq 1 20000 > /app/data/numbers
COPY src/ /app/src/
RUN cat /app/src/*.txt | wc -l > /app/count
RUN sort -r /app/data/numbers > /app/data/sorted
CMD ["cat", "/app/count"]
DF
echo 'oci_dockerfile(name = "img", srcs = glob(["**"]), bases = {"berth-bench-base:v1": "//base:bb"})' > app/BUILD.star
export BERTH_CACHE_DIR="$WS/.cache"
"$BERTH" -q export //base:bb --format docker-archive -o base.tar
docker load -q -i base.tar >/dev/null
now() { date +%s.%N; }
t() { s=$(now); "$@" >/dev/null 2>&1; e=$(now); echo "$e - $s" | bc; }
export DOCKER_BUILDKIT=0
dc=$(t docker build --no-cache -t berth-bench-docker app)
bc_=$(t "$BERTH" build //app:img)
dn=$(t docker build -t berth-bench-docker app)
bn=$(t "$BERTH" build //app:img)
echo "file 1 changed" > app/src/f1.txt
d1=$(t docker build -t berth-bench-docker app)
b1=$(t "$BERTH" build //app:img)
printf '%-22s %10s %10s %8s\n' case "docker(s)" "berth(s)" ratio
for row in "cold $dc $bc_" "no-op $dn $bn" "one-file $d1 $b1"; do
  set -- $row
  printf '%-22s %10.2f %10.2f %8.2f\n' "$1" "$2" "$3" "$(echo "$3 / $2" | bc -l)"
done
