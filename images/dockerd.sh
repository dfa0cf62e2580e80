#!/usr/bin/env bash
# Start or stop a Docker engine without systemd (CI, containers, dev machines): as root, overlay2,
# falling back to vfs where overlay mounts are refused.
#   images/dockerd.sh start          start dockerd unless an engine already answers; wait until it does
#   images/dockerd.sh stop [--purge] stop the dockerd this script started (--purge: remove its data root)
#   images/dockerd.sh status         exit 0 when an engine answers
# MLENGINE_DOCKER_ROOT (default /var/lib/docker) is the engine's data root; .ci/run points it into the clone.
set -euo pipefail

STATE_DIR="${MLENGINE_DOCKER_STATE:-/run/mlengine-dockerd}"
DATA_ROOT="${MLENGINE_DOCKER_ROOT:-/var/lib/docker}"
PIDFILE="$STATE_DIR/dockerd.pid"
LOG="$STATE_DIR/dockerd.log"
WAIT_SECONDS="${MLENGINE_DOCKER_WAIT:-60}"

answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

wait_for_engine() {
    local pid=$1 i
    for ((i = 0; i < WAIT_SECONDS * 2; i++)); do
        answers && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.5
    done
    return 1
}

start_with() {
    local driver=$1
    mkdir -p "$STATE_DIR" "$DATA_ROOT"
    # setsid: the engine outlives this script but not an explicit stop; its log stays beside the pidfile
    setsid dockerd --storage-driver "$driver" --data-root "$DATA_ROOT" --pidfile "$PIDFILE" \
        >>"$LOG" 2>&1 </dev/null &
    local pid=$!
    echo "$pid" >"$STATE_DIR/launched.pid"
    if wait_for_engine "$pid"; then
        echo "dockerd: running (pid $pid, storage driver $driver, data root $DATA_ROOT, log $LOG)"
        return 0
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -f "$STATE_DIR/launched.pid" "$PIDFILE"
    return 1
}

start() {
    if answers; then
        echo "dockerd: an engine already answers; leaving it alone"
        return 0
    fi
    command -v dockerd >/dev/null || { echo "dockerd: not installed (apt-get install -y docker.io)" >&2; exit 2; }
    [ "$(id -u)" = 0 ] || { echo "dockerd: must run as root" >&2; exit 2; }
    start_with overlay2 && return 0
    echo "dockerd: overlay2 did not start (see $LOG); trying vfs" >&2
    start_with vfs && return 0
    echo "dockerd: the engine did not start; last lines of $LOG:" >&2
    tail -n 20 "$LOG" >&2 || true
    exit 1
}

stop() {
    local pid=""
    [ -f "$STATE_DIR/launched.pid" ] && pid=$(cat "$STATE_DIR/launched.pid")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        # containers first, so nothing is left running when the engine goes
        local running
        running=$(docker ps -q 2>/dev/null || true)
        [ -n "$running" ] && docker kill $running >/dev/null 2>&1 || true
        kill -TERM "$pid"
        for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
        echo "dockerd: stopped (pid $pid)"
    else
        echo "dockerd: not started by this script; nothing to stop"
    fi
    rm -f "$STATE_DIR/launched.pid" "$PIDFILE"
    if [ "${1:-}" = "--purge" ]; then
        # only a data root that is not the system default is removed, and only once its engine is gone
        if [ "$DATA_ROOT" != /var/lib/docker ] && [ -d "$DATA_ROOT" ]; then
            umount -R "$DATA_ROOT" 2>/dev/null || true
            rm -rf "$DATA_ROOT"
            echo "dockerd: removed data root $DATA_ROOT"
        fi
        rm -rf "$STATE_DIR"
    fi
}

case "${1:-}" in
    start) start ;;
    stop) shift; stop "$@" ;;
    status) answers ;;
    *) echo "usage: $0 start|stop [--purge]|status" >&2; exit 2 ;;
esac
