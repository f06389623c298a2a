#!/usr/bin/env bash
# Build the image from the Dockerfile without a Docker engine, start it and run its own HEALTHCHECK.
#
# Needs root on Debian/Ubuntu and network access to the Debian mirror and PyPI; no Docker engine,
# no registry. What it does (each stage is timed):
#   1. tools     apt-get install buildah debootstrap (when missing)
#   2. base      debootstrap --variant=minbase bookworm -> FROM scratch + ADD -> $BASE_IMAGE
#                (no python3 in it: the Dockerfile's first RUN installs it with apt, as on nvidia/cuda)
#   3. build     buildah bud --format docker (keeps HEALTHCHECK, which the OCI format drops) with
#                --build-arg BASE=$BASE_IMAGE; torch comes from a local CPU wheel when there is one
#   4. run       the image's CMD (ingest the sample handbook, then `kbloop serve`) with `buildah run`;
#                chroot isolation shares the host's network, so the server listens on $KBLOOP_PORT
#   5. health    the image's HEALTHCHECK command (read back from the image), run inside the container
#                until it succeeds or $HEALTH_TIMEOUT_S passes
# then PASS or FAIL with the timings, and cleanup (server stopped, container, images and storage
# removed; KEEP=1 keeps them).
#
# usage: sudo scripts/verify_image.sh
#   WORK=/var/tmp/kbloop-image  storage, base rootfs and logs (several GB with the vfs driver)
#   KBLOOP_PORT=8765            port the server listens on (the host's: pick a free one)
#   HEALTH_TIMEOUT_S=900        how long the first start (ingest + model load) may take
#   TORCH_WHEEL=/opt/wheels/torch-2.13.0+cpu-...whl   a local CPU torch wheel, mounted read-only into
#                               the build; found in /opt/wheels by default; none = the Dockerfile's
#                               default (download.pytorch.org's CPU index)
#   CA_BUNDLE=$PIP_CERT         a CA bundle for pip in the build, where HTTPS goes through an intercepting
#                               proxy (pip's own certifi bundle fails: CERTIFICATE_VERIFY_FAILED)
#   ISOLATION=chroot            buildah's isolation for RUN steps and the container (chroot needs no
#                               runc/cgroups, so it also works inside a VM or a container)
#   STORAGE_DRIVER=vfs          vfs works on any filesystem; overlay is faster where the kernel allows
#   KEEP=1                      keep the image, container and storage (inspect with the printed `buildah`)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${WORK:-/var/tmp/kbloop-image}"
SUITE="${SUITE:-bookworm}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
BASE_IMAGE="${BASE_IMAGE:-localhost/kbloop-base:$SUITE}"
IMAGE="${IMAGE:-localhost/kbloop:verify}"
KBLOOP_PORT="${KBLOOP_PORT:-8765}"
HEALTH_TIMEOUT_S="${HEALTH_TIMEOUT_S:-900}"
POLL_S="${POLL_S:-5}"
ISOLATION="${ISOLATION:-chroot}"
STORAGE_DRIVER="${STORAGE_DRIVER:-vfs}"
KEEP="${KEEP:-0}"
CONTAINER="kbloop-verify-$$"

[[ $EUID -eq 0 ]] || { echo "verify_image: run as root (debootstrap and buildah's chroot need it)" >&2; exit 2; }
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"
LOG="$WORK/logs"
mkdir -p "$LOG"

# buildah with this script's own storage, so nothing touches the host's default image store.
b() { buildah --root "$WORK/storage" --runroot "$WORK/runroot" --storage-driver "$STORAGE_DRIVER" "$@"; }

# --- timing -------------------------------------------------------------------------------------------
declare -a STAGES=()
T0=$(date +%s)
stage_start() { STAGE="$1"; STAGE_T=$(date +%s); echo "== $(date -u +%H:%M:%S) $STAGE" >&2; }
stage_end() { STAGES+=("$(printf '%-8s %6ss' "$STAGE" "$(($(date +%s) - STAGE_T))")"); }
summary() {
    echo "-- stages (wall clock, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg))"
    printf '   %s\n' "${STAGES[@]}"
    echo "   total    $(($(date +%s) - T0))s"
}

# --- cleanup ------------------------------------------------------------------------------------------
SERVER_PID=""
stop_server() {
    [[ -n "$SERVER_PID" ]] || return 0
    # `buildah run` was started in its own session: the process group holds buildah, its chroot helper
    # and the server. SIGTERM first (uvicorn shuts down gracefully), SIGKILL after 20 s.
    kill -TERM -- "-$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 20); do kill -0 -- "-$SERVER_PID" 2>/dev/null || break; sleep 1; done
    kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}
cleanup() {
    local rc=$?
    set +e
    stop_server
    if [[ "$KEEP" == 1 ]]; then
        echo "KEEP=1: kept $WORK; e.g. buildah --root $WORK/storage --runroot $WORK/runroot" \
            "--storage-driver $STORAGE_DRIVER images" >&2
        exit "$rc"
    fi
    b rm --all >/dev/null 2>&1
    b rmi --all --force >/dev/null 2>&1
    # Never `rm -rf` through a mount (chroot isolation bind-mounts /dev, /proc, /sys while it runs).
    if findmnt -rn -o TARGET | grep -q "^$WORK/"; then
        echo "verify_image: mounts remain under $WORK, not removing it:" >&2
        findmnt -rn -o TARGET | grep "^$WORK/" >&2
    elif [[ "$rc" == 0 ]]; then
        rm -rf "$WORK"
    else
        # a failed run keeps its logs
        find "$WORK" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} +
        echo "logs kept in $LOG" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 1. tools -----------------------------------------------------------------------------------------
stage_start tools
missing=()
command -v buildah >/dev/null || missing+=(buildah)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if ((${#missing[@]})); then
    apt-get update -q >"$LOG/apt.log"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >>"$LOG/apt.log"
fi
echo "   $(buildah --version)" >&2
stage_end

# --- 2. base: a Debian root filesystem from Debian's own packages ---------------------------------------
stage_start base
if ! b inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
    rm -rf "$WORK/rootfs" "$WORK/base"
    debootstrap --variant=minbase "$SUITE" "$WORK/rootfs" "$MIRROR" >"$LOG/debootstrap.log" 2>&1 \
        || { tail -20 "$LOG/debootstrap.log" >&2; exit 1; }
    mkdir -p "$WORK/base"
    tar -C "$WORK/rootfs" --numeric-owner -cf "$WORK/base/rootfs.tar" .
    rm -rf "$WORK/rootfs"
    printf 'FROM scratch\nADD rootfs.tar /\nCMD ["bash"]\n' >"$WORK/base/Containerfile"
    b bud --quiet --format docker -f "$WORK/base/Containerfile" -t "$BASE_IMAGE" "$WORK/base" >"$LOG/base.log"
    rm -rf "$WORK/base"
fi
stage_end

# --- 3. build: the repository's Dockerfile, unchanged, on that base ----------------------------------------
stage_start build
build_args=(--build-arg "BASE=$BASE_IMAGE")
mounts=()
TORCH_WHEEL="${TORCH_WHEEL-$(ls /opt/wheels/torch-2.13.0+cpu-cp311-*.whl 2>/dev/null | head -1)}"
if [[ -n "$TORCH_WHEEL" ]]; then
    # The base's python3 is Debian's 3.11: a cp311 CPU wheel fits. Mounted for the RUN steps only,
    # so no copy of it stays in a layer; TORCH_INDEX_URL= keeps pip off torch's index.
    mounts+=(--volume "$(dirname "$TORCH_WHEEL"):/opt/wheels:ro")
    build_args+=(--build-arg "TORCH_SPEC=/opt/wheels/$(basename "$TORCH_WHEEL")" --build-arg "TORCH_INDEX_URL=")
fi
CA_BUNDLE="${CA_BUNDLE-${PIP_CERT:-}}"
if [[ -n "$CA_BUNDLE" ]]; then
    # pip in the image's venv reads /etc/pip.conf; both files are mounted for the RUN steps only.
    mkdir -p "$WORK/buildconf"
    printf '[global]\ncert = /etc/pip-build-ca.crt\n' >"$WORK/buildconf/pip.conf"
    mounts+=(--volume "$WORK/buildconf/pip.conf:/etc/pip.conf:ro" --volume "$CA_BUNDLE:/etc/pip-build-ca.crt:ro")
fi
echo "   build args: ${build_args[*]}" >&2
echo "   mounts: ${mounts[*]}" >&2
if ! nice -n 19 buildah --root "$WORK/storage" --runroot "$WORK/runroot" --storage-driver "$STORAGE_DRIVER" \
        bud --layers --format docker --isolation "$ISOLATION" "${mounts[@]}" "${build_args[@]}" \
        -f "$REPO/Dockerfile" -t "$IMAGE" "$REPO" >"$LOG/build.log" 2>&1; then
    tail -30 "$LOG/build.log" >&2
    echo "FAIL: the build failed (log: $LOG/build.log)"
    exit 1
fi
SIZE="$(b images --format '{{.Size}}' "$IMAGE")"
echo "   image $IMAGE: $SIZE" >&2
stage_end

# --- 4. run: the image's own ENTRYPOINT + CMD, as `docker run` would start them -------------------------
stage_start start
# Read the command from the image's config (NUL-separated, so quoting survives) rather than repeat it here.
mapfile -d '' -t cmd < <(b inspect --type image \
    --format '{{range .Docker.Config.Entrypoint}}{{.}}{{"\x00"}}{{end}}{{range .Docker.Config.Cmd}}{{.}}{{"\x00"}}{{end}}' \
    "$IMAGE")
mapfile -d '' -t hc < <(b inspect --type image \
    --format '{{range .Docker.Config.Healthcheck.Test}}{{.}}{{"\x00"}}{{end}}' "$IMAGE")
hc_timeout_s="$(b inspect --type image --format '{{.Docker.Config.Healthcheck.Timeout.Seconds}}' "$IMAGE")"
hc_timeout_s="${hc_timeout_s%.*}"   # a Go duration in seconds, e.g. 5
((${#cmd[@]})) || { echo "FAIL: the image has no CMD"; exit 1; }
[[ "${hc[0]:-}" == CMD-SHELL && -n "${hc[1]:-}" ]] || { echo "FAIL: the image has no HEALTHCHECK CMD-SHELL (format docker?)"; exit 1; }
echo "   user $(b inspect --type image --format '{{.Docker.Config.User}}' "$IMAGE"), cmd: ${cmd[*]}" >&2
echo "   healthcheck: ${hc[1]} (timeout ${hc_timeout_s}s)" >&2
if (exec 3<>"/dev/tcp/127.0.0.1/$KBLOOP_PORT") 2>/dev/null; then
    echo "FAIL: port $KBLOOP_PORT is already taken on this host; set KBLOOP_PORT" >&2
    exit 1
fi
b from --name "$CONTAINER" "$IMAGE" >/dev/null
# The container's /data (owned by kbloop in the image) stands in for the volume: empty, so the first
# start ingests SEED_CORPUS. setsid: one process group to stop at the end.
setsid buildah --root "$WORK/storage" --runroot "$WORK/runroot" --storage-driver "$STORAGE_DRIVER" \
    run --isolation "$ISOLATION" -e "KBLOOP_PORT=$KBLOOP_PORT" "$CONTAINER" -- "${cmd[@]}" \
    >"$LOG/server.log" 2>&1 &
SERVER_PID=$!
stage_end

# --- 5. health: the HEALTHCHECK command, inside the same container, until it passes -----------------------
stage_start health
status=FAIL
checks=0
deadline=$(($(date +%s) + HEALTH_TIMEOUT_S))
while (($(date +%s) < deadline)); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "   the server exited before it was healthy" >&2
        break
    fi
    checks=$((checks + 1))
    # /bin/sh -c, as Docker runs a CMD-SHELL health check; same environment, user and working directory.
    if timeout "$((hc_timeout_s + 10))" buildah --root "$WORK/storage" --runroot "$WORK/runroot" \
            --storage-driver "$STORAGE_DRIVER" run --isolation "$ISOLATION" -e "KBLOOP_PORT=$KBLOOP_PORT" \
            "$CONTAINER" -- /bin/sh -c "${hc[1]}" >"$LOG/healthcheck.log" 2>&1; then
        status=PASS
        break
    fi
    sleep "$POLL_S"
done
HEALTHY_AFTER=$(($(date +%s) - STAGE_T))
stage_end
if [[ "$status" == PASS ]]; then
    # What the health check saw, from the host side (the container shares the host's network).
    echo "   /readyz: $(python3 - "$KBLOOP_PORT" 2>/dev/null <<'EOF' || true
import sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/readyz", timeout=5) as r:
    print(r.status, r.read(300).decode())
EOF
)" >&2
fi
stop_server

echo
summary
echo "-- image $IMAGE: $SIZE (storage driver $STORAGE_DRIVER: $(du -sh "$WORK/storage" | cut -f1) on disk)"
if [[ "$status" == PASS ]]; then
    echo "PASS: the image's HEALTHCHECK succeeded ${HEALTHY_AFTER}s after start (check $checks, polled every ${POLL_S}s)"
else
    echo "   last health check output:"; sed 's/^/   | /' "$LOG/healthcheck.log" 2>/dev/null | tail -5
    echo "   server log (tail):"; sed 's/^/   | /' "$LOG/server.log" | tail -30
    echo "FAIL: no healthy answer within ${HEALTH_TIMEOUT_S}s ($checks checks)"
    exit 1
fi
