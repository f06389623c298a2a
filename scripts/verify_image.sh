#!/usr/bin/env bash
# Build the image from the Dockerfile without a Docker engine, start it and run its own HEALTHCHECK.
#
# Needs root on Debian (bookworm here) and network access to the Debian mirror and PyPI; no Docker engine,
# no registry. What it does (each stage is timed):
#   1. tools     apt-get install buildah debootstrap (when missing)
#   2. base      debootstrap --variant=minbase bookworm -> FROM scratch + ADD -> $BASE_IMAGE
#                (no python3 in it: the Dockerfile's first RUN installs it with apt, as on nvidia/cuda)
#   3. build     buildah bud --format docker (keeps HEALTHCHECK, which the OCI format drops) with
#                --build-arg BASE=$BASE_IMAGE; torch comes from a local CPU wheel when there is one
#   4. create    `buildah from` the image: the container whose /data volume both starts share
#   5. first     the image's CMD with `buildah run` on the empty volume (it ingests the sample handbook,
#                then serves); chroot isolation shares the host's network, so it listens on $KBLOOP_PORT;
#                the image's HEALTHCHECK command (read back from the image) runs inside the container
#                every $POLL_S s until it succeeds or $HEALTH_TIMEOUT_S passes; then a graceful stop
#   6. restart   the same again on the now full volume (the CMD skips the ingest)
# then PASS or FAIL with the timings, and cleanup (container, images and storage removed; KEEP=1 keeps
# them; a failed run keeps its logs).
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
BUILDAH=(buildah --root "$WORK/storage" --runroot "$WORK/runroot" --storage-driver "$STORAGE_DRIVER")
b() { "${BUILDAH[@]}" "$@"; }

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

# --- the server ---------------------------------------------------------------------------------------
SERVER_PID=""   # `buildah run`, started in its own session: its process group holds buildah and the server
server_pids() {
    # The container's own processes: in that group, chrooted into the container, not buildah's helpers.
    local p
    for p in $(ps -eo pid=,pgid= | awk -v g="$SERVER_PID" '$2 == g {print $1}'); do
        [[ "$(readlink "/proc/$p/root" 2>/dev/null)" != / ]] || continue
        [[ "$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)" == buildah-chroot-exec* ]] && continue
        echo "$p"
    done
}
start_server() {  # the image's ENTRYPOINT + CMD, as `docker run` starts them; log to $1
    setsid "${BUILDAH[@]}" run --isolation "$ISOLATION" -e "KBLOOP_PORT=$KBLOOP_PORT" "$CONTAINER" -- "${cmd[@]}" >"$1" 2>&1 &
    SERVER_PID=$!
}
stop_server() {
    # Like `docker stop -t 20`: SIGTERM to the server (uvicorn shuts down gracefully), SIGKILL after 20 s.
    # Not to buildah: on SIGTERM its chroot runtime SIGKILLs the command ("subprocess exited on killed").
    [[ -n "$SERVER_PID" ]] || return 0
    local pids
    pids="$(server_pids)"
    # shellcheck disable=SC2086
    [[ -z "$pids" ]] || kill -TERM $pids 2>/dev/null || true
    for _ in $(seq 40); do kill -0 -- "-$SERVER_PID" 2>/dev/null || break; sleep 0.5; done
    if kill -0 -- "-$SERVER_PID" 2>/dev/null; then
        echo "   the server did not stop within 20 s: SIGKILL" >&2
        kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
    fi
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}
in_container() {  # a command in the container (the image's user, environment and workdir), like docker exec
    "${BUILDAH[@]}" run --isolation "$ISOLATION" -e "KBLOOP_PORT=$KBLOOP_PORT" "$CONTAINER" -- "$@"
}
wait_healthy() {  # the image's HEALTHCHECK, every $POLL_S s; sets CHECKS, returns 1 on timeout or exit
    local deadline=$(($(date +%s) + HEALTH_TIMEOUT_S))
    CHECKS=0
    while (($(date +%s) < deadline)); do
        kill -0 "$SERVER_PID" 2>/dev/null || { echo "   the server exited before it was healthy" >&2; return 1; }
        CHECKS=$((CHECKS + 1))
        # /bin/sh -c, as Docker runs a CMD-SHELL health check, with its timeout (+ buildah's start-up)
        if timeout "$((hc_timeout_s + 10))" "${BUILDAH[@]}" run --isolation "$ISOLATION" -e "KBLOOP_PORT=$KBLOOP_PORT" \
                "$CONTAINER" -- /bin/sh -c "${hc[1]}" >"$LOG/healthcheck.log" 2>&1; then
            return 0
        fi
        sleep "$POLL_S"
    done
    return 1
}
fail() {
    echo "   last health check output:"; sed 's/^/   | /' "$LOG/healthcheck.log" 2>/dev/null | tail -5
    echo "   server log (tail):"; sed 's/^/   | /' "$1" | tail -30
    summary
    echo "FAIL: $2"
    exit 1
}

# --- cleanup ------------------------------------------------------------------------------------------
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
# Build-time files reach the RUN steps through one read-only mount over /root, the home of the root
# user the RUN steps run as. /root exists in the base, so no empty mount point stays behind in a layer
# (mounting at new paths such as /etc/pip.conf or /opt/wheels leaves them there as empty files/folders).
BUILD_HOME="$WORK/build-home"
rm -rf "$BUILD_HOME"
mkdir -p "$BUILD_HOME/wheels"
mounts=(--volume "$BUILD_HOME:/root:ro")
TORCH_WHEEL="${TORCH_WHEEL-$(ls /opt/wheels/torch-2.13.0+cpu-cp311-*.whl 2>/dev/null | head -1)}"
if [[ -n "$TORCH_WHEEL" ]]; then
    # The base's python3 is Debian's 3.11: a cp311 CPU wheel fits. Its folder is mounted, so no copy of
    # it stays in a layer; TORCH_INDEX_URL= keeps pip off torch's index.
    mounts+=(--volume "$(dirname "$TORCH_WHEEL"):/root/wheels:ro")
    build_args+=(--build-arg "TORCH_SPEC=/root/wheels/$(basename "$TORCH_WHEEL")" --build-arg "TORCH_INDEX_URL=")
fi
CA_BUNDLE="${CA_BUNDLE-${PIP_CERT:-}}"
if [[ -n "$CA_BUNDLE" ]]; then
    # pip reads ~/.config/pip/pip.conf (HOME=/root in the RUN steps).
    mkdir -p "$BUILD_HOME/.config/pip"
    cp "$CA_BUNDLE" "$BUILD_HOME/pip-ca.crt"
    printf '[global]\ncert = /root/pip-ca.crt\n' >"$BUILD_HOME/.config/pip/pip.conf"
fi
echo "   build args: ${build_args[*]}" >&2
echo "   mounts: ${mounts[*]}" >&2
if ! nice -n 19 "${BUILDAH[@]}" bud --layers --format docker --isolation "$ISOLATION" "${mounts[@]}" "${build_args[@]}" \
        -f "$REPO/Dockerfile" -t "$IMAGE" "$REPO" >"$LOG/build.log" 2>&1; then
    tail -30 "$LOG/build.log" >&2
    echo "FAIL: the build failed (log: $LOG/build.log)"
    exit 1
fi
rm -rf "$BUILD_HOME"
SIZE="$(b images --format '{{.Size}}' "$IMAGE")"
echo "   image $IMAGE: $SIZE" >&2
stage_end

# --- 4. create: a container from the image --------------------------------------------------------------
stage_start create
# Read the command and the health check from the image's config (NUL-separated, so quoting survives)
# rather than repeat them here: what runs is what the Dockerfile says.
mapfile -d '' -t cmd < <(b inspect --type image \
    --format '{{range .Docker.Config.Entrypoint}}{{.}}{{"\x00"}}{{end}}{{range .Docker.Config.Cmd}}{{.}}{{"\x00"}}{{end}}' \
    "$IMAGE")
mapfile -d '' -t hc < <(b inspect --type image \
    --format '{{range .Docker.Config.Healthcheck.Test}}{{.}}{{"\x00"}}{{end}}' "$IMAGE")
hc_timeout_s="$(b inspect --type image --format '{{.Docker.Config.Healthcheck.Timeout.Seconds}}' "$IMAGE")"
hc_timeout_s="${hc_timeout_s%.*}"   # a Go duration in seconds, e.g. 5
((${#cmd[@]})) || { echo "FAIL: the image has no CMD"; exit 1; }
[[ "${hc[0]:-}" == CMD-SHELL && -n "${hc[1]:-}" ]] \
    || { echo "FAIL: the image has no HEALTHCHECK CMD-SHELL (built without --format docker?)"; exit 1; }
echo "   user $(b inspect --type image --format '{{.Docker.Config.User}}' "$IMAGE"), cmd: ${cmd[*]}" >&2
echo "   healthcheck: ${hc[1]} (timeout ${hc_timeout_s}s)" >&2
if (exec 3<>"/dev/tcp/127.0.0.1/$KBLOOP_PORT") 2>/dev/null; then
    echo "FAIL: port $KBLOOP_PORT is already taken on this host; set KBLOOP_PORT"
    exit 1
fi
# buildah run gives the image's VOLUME /data a folder of the container's own (kept across runs of the
# same container, like a named volume): empty at first, so the first start ingests SEED_CORPUS.
b from --name "$CONTAINER" "$IMAGE" >/dev/null
stage_end

# --- 5. first start: ingest + serve, until the HEALTHCHECK passes; then a graceful stop -------------------
stage_start first
start_server "$LOG/server-first.log"
wait_healthy || fail "$LOG/server-first.log" "no healthy answer on the first start within ${HEALTH_TIMEOUT_S}s ($CHECKS checks)"
FIRST_S=$(($(date +%s) - STAGE_T)); FIRST_CHECKS=$CHECKS
echo "   healthy after ${FIRST_S}s (check $FIRST_CHECKS); /readyz: $(in_container python -c \
    "import os, urllib.request as u; print(u.urlopen('http://127.0.0.1:%s/readyz' % os.environ['KBLOOP_PORT'], timeout=4).read().decode())")" >&2
grep -E '^  time:|published' "$LOG/server-first.log" | sed 's/^ */   ingest: /' >&2 || true
stop_t=$(date +%s)
stop_server
STOP_S=$(($(date +%s) - stop_t))
grep -q 'Application shutdown complete' "$LOG/server-first.log" && STOPPED="gracefully" || STOPPED="without uvicorn's shutdown message"
echo "   stopped ${STOPPED} in ${STOP_S}s" >&2
stage_end

# --- 6. restart on the same volume: no ingest this time ----------------------------------------------------
stage_start restart
start_server "$LOG/server-restart.log"
wait_healthy || fail "$LOG/server-restart.log" "no healthy answer on the restart within ${HEALTH_TIMEOUT_S}s ($CHECKS checks)"
RESTART_S=$(($(date +%s) - STAGE_T)); RESTART_CHECKS=$CHECKS
if grep -q 'empty index, ingesting' "$LOG/server-restart.log"; then
    fail "$LOG/server-restart.log" "the restart ingested again: the volume did not keep the index"
fi
stop_server
stage_end

echo
summary
echo "-- image $IMAGE: $SIZE (storage driver $STORAGE_DRIVER: $(du -sh "$WORK/storage" | cut -f1) on disk)"
echo "PASS: the image's HEALTHCHECK succeeded ${FIRST_S}s after the first start (ingest included; check" \
    "$FIRST_CHECKS, every ${POLL_S}s) and ${RESTART_S}s after a restart (check $RESTART_CHECKS); stopped $STOPPED in ${STOP_S}s"
