#!/usr/bin/env bash
# Restart time on copies of one kept state, to compare builds: each binary
# in turn starts on a fresh copy of STATE, and the time from exec to
# /readyz answering is printed with what the daemon logged about it, then
# each binary's times sorted and its median. The binaries take turns, so a
# noisy VM slows them alike.
#
#   benches/restart.sh crash SECS     # the memory case's state, then SECS of
#                                     # load, then kill -9: kept as target/load/crashed
#   benches/restart.sh [-n RUNS] STATE [BIN...]
#                                     # default: 5 runs, target/release/faultline
#   benches/restart.sh resume SECS [BIN...]
#                                     # SECS of load, kill -9, restart at once,
#                                     # SECS more: RSS every 5 s, before and after
#
# `crash` starts from target/load/memory/state (left by `benches/load.sh
# memory`) and drives 10,000 devices at one reading each a second, INTERVAL
# (default 10s) of event time apart, as the memory case does. Each run's
# state is a copy, so the kept one stays as it was: after a kill -9 every
# run replays the same journal and sled reads back the same log.
#
# `resume` is what a crash costs in memory: on a copy of the memory case's
# state each binary takes SECS of that load, is killed and restarted at
# once, and takes SECS more whose event times go on from where the first
# ended (ahead of the clock: this configuration allows it), as if the
# crash had not happened. Each part's RSS every 5 s and high-water mark,
# and the restart time, are printed.
# Both take the memory case's configuration (target/load/memory/faultline.toml).
# Needs mosquitto and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$ROOT/target/load/restart
RUNS=5
mkdir -p "$WORK"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

# shellcheck source=benches/lib.sh
. benches/lib.sh

MQ=$(free_port)
printf 'persistence false\nmax_queued_messages 0\nmax_inflight_messages 0\nlistener %s 127.0.0.1\nallow_anonymous true\n' "$MQ" >"$WORK/mosquitto.conf"
mosquitto -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
PIDS+=($!)
HTTP=$(free_port)
# The memory case's configuration (the windows and limits its state was
# made with), on this directory and these ports.
CONFIG=target/load/memory/faultline.toml
[ -f "$CONFIG" ] || { echo "no $CONFIG: run benches/load.sh memory first" >&2; exit 1; }
sed "s#^dir = .*#dir = \"$WORK/state\"#; s#^listen = .*#listen = \"127.0.0.1:$HTTP\"#; s#^url = .*#url = \"mqtt://127.0.0.1:$MQ\"#" \
    "$CONFIG" >"$WORK/faultline.toml"

# bin -> DAEMON_PID, and READY: the seconds from exec to /readyz
start() {
    local t0 t1
    t0=$(date +%s.%N)
    FAULTLINE_LOG=${LOG:-faultline::daemon=info} "$1" run --config "$WORK/faultline.toml" >>"$WORK/faultline.log" 2>&1 &
    DAEMON_PID=$!
    PIDS+=("$DAEMON_PID")
    until curl -fsS "http://127.0.0.1:$HTTP/readyz" >/dev/null 2>&1; do
        kill -0 "$DAEMON_PID" 2>/dev/null || { tail "$WORK/faultline.log" >&2; exit 1; }
        sleep 0.01
    done
    t1=$(date +%s.%N)
    READY=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
}

if [ "${1:-}" = crash ]; then
    secs=${2:?seconds of load}
    [ -d target/load/memory/state ] || { echo "no target/load/memory/state: run benches/load.sh memory first" >&2; exit 1; }
    cargo build --release --locked --quiet --bin faultline
    rm -rf "$WORK/state" target/load/crashed
    cp -a target/load/memory/state "$WORK/state"
    : >"$WORK/faultline.log"
    start "$ROOT/target/release/faultline"
    echo "ready in $READY s; $secs s of load"
    "$ROOT/target/release/faultline" replay --devices 10000 --readings $((10000 * secs)) --rate 10000 \
        --interval "${INTERVAL:-10s}" --mqtt "mqtt://127.0.0.1:$MQ" --topic 'load/{device_id}'
    sleep 2
    kill -9 "$DAEMON_PID"
    wait "$DAEMON_PID" 2>/dev/null || true
    mv "$WORK/state" target/load/crashed
    du -sh target/load/crashed target/load/crashed/journal
    exit 0
fi

# Load from event time $1 (ms) for $2 s, as the memory case drives it; RSS
# of DAEMON_PID every 5 s meanwhile -> SAMPLES (MB)
load_from() {
    local pid
    "$ROOT/target/release/faultline" replay --devices 10000 --readings $((10000 * $2)) --rate 10000 \
        --interval "${INTERVAL:-10s}" --start "$1" --mqtt "mqtt://127.0.0.1:$MQ" --topic 'load/{device_id}' \
        >"$WORK/replay.log" 2>&1 &
    pid=$!
    SAMPLES=()
    while kill -0 "$pid" 2>/dev/null; do
        sleep 5
        SAMPLES+=("$(mb "$(rss_kb "$DAEMON_PID")" | cut -d' ' -f1)")
    done
    wait "$pid" || { cat "$WORK/replay.log" >&2; exit 1; }
}

hwm() { mb "$(hwm_kb "$DAEMON_PID")"; }

if [ "${1:-}" = resume ]; then
    secs=${2:?seconds of load}
    shift 2
    BINS=("$@")
    [ ${#BINS[@]} -gt 0 ] || BINS=("$ROOT/target/release/faultline")
    [ -d target/load/memory/state ] || { echo "no target/load/memory/state: run benches/load.sh memory first" >&2; exit 1; }
    cargo build --release --locked --quiet --bin faultline
    printf '[ingest]\nmax_future = "1d"\n' >>"$WORK/faultline.toml"
    step=$(awk -v i="${INTERVAL:-10s}" 'BEGIN { n = i + 0; if (i ~ /ms$/) n /= 1000; else if (i ~ /m$/) n *= 60; print n * 1000 }')
    : >"$WORK/faultline.log"
    for b in "${BINS[@]}"; do
        rm -rf "$WORK/state"
        cp -a target/load/memory/state "$WORK/state"
        # The first part's event times end about now; the second's go on.
        t0=$(( $(date +%s%3N) - secs * step + secs * 1000 ))
        start "$b"
        load_from "$t0" "$secs"
        echo "$b: before the crash, RSS every 5 s (MB): ${SAMPLES[*]}; high-water mark $(hwm)"
        kill -9 "$DAEMON_PID"
        wait "$DAEMON_PID" 2>/dev/null || true
        start "$b"
        echo "$b: ready again in $READY s; $(hwm) high-water mark by then"
        load_from $((t0 + secs * step)) "$secs"
        echo "$b: after the restart, RSS every 5 s (MB): ${SAMPLES[*]}; high-water mark $(hwm)"
        kill -TERM "$DAEMON_PID"
        wait "$DAEMON_PID" 2>/dev/null || true
    done
    exit 0
fi

[ "${1:-}" != -n ] || { RUNS=$2; shift 2; }
STATE=${1:?a state directory}
shift
BINS=("$@")
[ ${#BINS[@]} -gt 0 ] || BINS=("$ROOT/target/release/faultline")
declare -A TIMES
: >"$WORK/faultline.log"
for _ in $(seq 1 "$RUNS"); do
    for b in "${BINS[@]}"; do
        rm -rf "$WORK/state"
        cp -a "$STATE" "$WORK/state"
        sync
        start "$b"
        t=$READY
        kill -TERM "$DAEMON_PID"
        wait "$DAEMON_PID" 2>/dev/null || true
        TIMES[$b]="${TIMES[$b]:-} $t"
        opened=$(grep 'database opened' "$WORK/faultline.log" | tail -1 | sed 's/.* in //')
        restored=$(grep 'state restored' "$WORK/faultline.log" | tail -1 | sed 's/.* in \([^ ]*\) \(.*\)/\1; \2/')
        echo "$b: ready in $t s (database opened in $opened, state restored in $restored)"
    done
done
for b in "${BINS[@]}"; do
    # shellcheck disable=SC2086
    sorted=$(printf '%s\n' ${TIMES[$b]} | sort -n)
    echo "$b: $(echo $sorted) s; median $(echo "$sorted" | sed -n "$(( (RUNS + 1) / 2 ))p") s"
done
