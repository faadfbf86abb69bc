#!/usr/bin/env bash
# End-to-end load runs of the release binary against real brokers on
# loopback: throughput, loss, alert latency, memory and restart time, as
# one table. Not part of the test suite (timings belong here, not in tests).
#
#   benches/load.sh [CASE...]      # default: all of them, in this order
#
# Cases:
#   mqtt        QoS 1, one reading per message, as fast as it goes
#   mqtt-batch  QoS 1, 100 readings per message
#   kafka       one reading per record (tansu, in memory, 2 partitions)
#   latency     MQTT at LATENCY_RATE readings/s (half of max), alerts to Kafka:
#               alert record made -> broker's ack, p50 / p99
#   memory      DEVICES_MEM devices x 8 signals at one reading per device per
#               second for SOAK (default 3m; the issue's soak is 30m), RSS sampled;
#               ends with kill -9. INTERVAL (default 1s) is the event time
#               between a device's readings: 10s runs event time 10 times
#               faster than the clock (windows close every 12 s; the window
#               history reaches its default bound, 100 starts, in 20 minutes)
#   late        DEVICES_MEM devices for 60 s at 10s of event time a second, then
#               the same 60 s again: its first ~50 s come late, every reading
#               past the allowed lateness, so the late store (10,000) turns
#               over every second; peak RSS
#   restart     the memory case's state (every device with open windows):
#               start -> /readyz answering, once after the kill -9 (the
#               journal replayed), then median of 5 after clean stops
#   ceilings    the brokers alone: mosquitto (replay -> mosquitto_sub), tansu
#               (replay, then examples/kafka_drain reading it back)
#
# WRAP runs the daemon under a profiler, e.g. WRAP="perf record -g -o perf.data"
# or WRAP="heaptrack -o target/load/heap" (its RSS figures are then the wrapper's).
# FAULTLINE_LOG sets the daemon's log filter (default warn), e.g. faultline=debug.
# Environment: READINGS (default 2000000), DEVICES (1000), SOAK (3m),
# DEVICES_MEM (10000), LATENCY_RATE (25000), KAFKA_WAIT_MS (10),
# KAFKA_OPTIONS (TOML for the daemon's Kafka source), LIMITS (TOML lines
# added to the daemon's [limits], e.g. "window_history_total = 30000"),
# FAULTLINE_TANSU (default
# target/tools/bin/tansu). Needs mosquitto; mosquitto_sub (Debian
# mosquitto-clients) for the MQTT ceiling; curl.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

READINGS=${READINGS:-2000000}
DEVICES=${DEVICES:-1000}
SOAK=${SOAK:-3m}
DEVICES_MEM=${DEVICES_MEM:-10000}
INTERVAL=${INTERVAL:-1s}
LATENCY_RATE=${LATENCY_RATE:-25000}
TANSU=${FAULTLINE_TANSU:-$ROOT/target/tools/bin/tansu}
# tansu answers a fetch only when its wait (librdkafka's fetch.wait.max.ms,
# 500 ms by default) is over, even with records waiting; Apache Kafka
# answers as soon as there is something to read. So against tansu the
# wait is short, for the daemon (KAFKA_OPTIONS, TOML) and the read ceiling.
KAFKA_WAIT_MS=${KAFKA_WAIT_MS:-10}
KAFKA_OPTIONS=${KAFKA_OPTIONS:-"[source.options]
\"fetch.wait.max.ms\" = \"$KAFKA_WAIT_MS\""}
BIN=$ROOT/target/release/faultline
WORK=$ROOT/target/load
CASES=("$@")
[ ${#CASES[@]} -gt 0 ] || CASES=(ceilings mqtt mqtt-batch kafka latency memory late restart)

cargo build --release --locked --quiet --bin faultline --example kafka_drain
mkdir -p "$WORK"
PIDS=()
cleanup() {
    # Children first: a WRAP (perf, heaptrack) runs the daemon under it.
    for p in "${PIDS[@]}"; do pkill -9 -P "$p" 2>/dev/null || true; kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

say() { printf '%s\n' "$*" >&2; }
# CPU time the hypervisor gave to others (steal), as a share of all CPU time since a mark:
# on a shared VM it shows how much of the machine the run really had.
cpu_mark() { awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print $9, t }' /proc/stat; }
steal_since() { # "steal total" from cpu_mark
    local now; now=$(cpu_mark)
    awk -v a="$1" -v b="$now" 'BEGIN { split(a, x, " "); split(b, y, " "); d = y[2] - x[2]; printf "%.0f %%", (d > 0 ? 100 * (y[1] - x[1]) / d : 0) }'
}
START_MARK=$(cpu_mark)
RESULTS=()
CASE_MARK=$(cpu_mark)
result() {
    local d; d="$3; CPU steal $(steal_since "$CASE_MARK")"
    RESULTS+=("$(printf '| %s | %s | %s |' "$1" "$2" "$d")"); say "  => $1: $2 ($d)"
}

# shellcheck source=benches/lib.sh
. benches/lib.sh

wait_port() {
    for _ in $(seq 1 500); do
        (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
        sleep 0.02
    done
    say "nothing listens on port $1"; exit 1
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
per_s() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", n / s }'; }
human() { awk -v n="$1" 'BEGIN { if (n >= 1e6) printf "%.2f M", n / 1e6; else if (n >= 1e3) printf "%.0f k", n / 1e3; else printf "%d", n }'; }

start_mosquitto() { # dir -> MQ_PORT, MOSQUITTO_PID
    local dir=$1 port
    port=$(free_port)
    cat >"$dir/mosquitto.conf" <<EOF
persistence false
max_queued_messages 0
max_inflight_messages 0
listener $port 127.0.0.1
allow_anonymous true
EOF
    mosquitto -c "$dir/mosquitto.conf" >"$dir/mosquitto.log" 2>&1 &
    PIDS+=($!)
    MOSQUITTO_PID=$!
    wait_port "$port"
    MQ_PORT=$port
}

start_tansu() { # dir -> K_PORT
    local dir=$1 port
    [ -x "$TANSU" ] || { say "no tansu at $TANSU: cargo install --locked tansu --version 0.6.0 --features dynostore --root target/tools"; exit 1; }
    port=$(free_port)
    RUST_LOG=warn "$TANSU" broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine memory://tansu/ >"$dir/tansu.log" 2>&1 &
    PIDS+=($!)
    wait_port "$port"
    K_PORT=$port
}

topic() { # port name partitions
    "$TANSU" topic create --broker "tcp://127.0.0.1:$1" --partitions "$3" "$2" >/dev/null
}

# config dir http_port source_toml [sink_toml]
write_config() {
    cat >"$1/faultline.toml" <<EOF
[state]
dir = "$1/state"
checkpoint_interval = "${CHECKPOINT:-1s}"
[http]
listen = "127.0.0.1:$2"
[window]
size = "2m"
max_out_of_orderness = "10s"
allowed_lateness = "1m"
idle_timeout = "10m"
[limits]
max_devices = 100000
${LIMITS:-}
[model]
path = "$ROOT/models/pump-skab"
$3
${4:-}
EOF
}

# The daemon's MQTT source on the test broker.
mqtt_source() { # port
    printf '[[source]]\ntype = "mqtt"\nurl = "mqtt://127.0.0.1:%s"\ntopics = ["load/+"]\nclient_id = "faultline-load"\n' "$1"
}

# mosquitto and a daemon subscribed to it, in dir: sets MQ_PORT, HTTP_PORT,
# MOSQUITTO_PID and DAEMON_PID.
mqtt_daemon() { # dir [more TOML, e.g. a [[sink]]]
    start_mosquitto "$1"
    HTTP_PORT=$(free_port)
    write_config "$1" "$HTTP_PORT" "$(mqtt_source "$MQ_PORT")" "${2:-}"
    start_daemon "$1" "$HTTP_PORT"
    wait_connected "$HTTP_PORT" mqtt
}

stop_daemon() { kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true; }

start_daemon() { # dir http_port -> pid in DAEMON_PID
    FAULTLINE_LOG=${FAULTLINE_LOG:-warn} ${WRAP:-} "$BIN" run --config "$1/faultline.toml" >>"$1/faultline.log" 2>&1 &
    DAEMON_PID=$!
    PIDS+=("$DAEMON_PID")
    for _ in $(seq 1 1000); do
        curl -fsS "http://127.0.0.1:$2/readyz" >/dev/null 2>&1 && return 0
        kill -0 "$DAEMON_PID" 2>/dev/null || { say "faultline exited:"; tail "$1/faultline.log" >&2; exit 1; }
        sleep 0.01
    done
    say "faultline not ready"; exit 1
}

# Waits until the daemon's source is connected (and subscribed: half a second more).
wait_connected() { # http_port source
    for _ in $(seq 1 500); do
        [ "$(metric "$1" "faultline_source_connected{source=\"$2\"}")" != 1 ] || { sleep 0.5; return 0; }
        sleep 0.02
    done
    say "the daemon's $2 source did not connect"; exit 1
}

metric() { # http_port name{labels} -> value (0 when absent)
    curl -fsS "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m { v = $2 } END { print v + 0 }'
}

# Quantile q of a Prometheus histogram: the upper bound of the bucket it falls in.
quantile() { # http_port name q
    curl -fsS "http://127.0.0.1:$1/metrics" | awk -v m="$2_bucket" -v q="$3" '
        index($1, m "{") == 1 { split($1, a, "le=\""); split(a[2], b, "\""); le[n] = b[1]; c[n++] = $2 }
        END {
            if (n == 0 || c[n - 1] == 0) { print "-"; exit }
            for (i = 0; i < n; i++) if (c[i] >= q * c[n - 1]) { print le[i]; exit }
        }'
}

# Waits until readings_total{source} reaches want or stops moving for 20 s; prints the time it got there.
wait_counted() { # http_port source want
    local last=-1 same=0 got
    while :; do
        got=$(metric "$1" "faultline_readings_total{source=\"$2\"}")
        if [ "${got%.*}" -ge "$3" ]; then now; return; fi
        if [ "$got" = "$last" ]; then same=$((same + 1)); else same=0; last=$got; fi
        [ $same -lt 100 ] || { now; return; }
        sleep 0.2
    done
}

# When the first reading of a source is counted (polling every 10 ms).
wait_first() { # http_port source
    while [ "$(metric "$1" "faultline_readings_total{source=\"$2\"}")" = 0 ]; do sleep 0.01; done
    now
}

# CPU time (user + system) of a process so far, in seconds.
cpu_s() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"; }
us_per() { awk -v s="$1" -v n="$2" 'BEGIN { printf "%.1f", s * 1e6 / n }'; }

# RSS split: anonymous (heap, stacks) and file-backed (the binary's code and data).
rss_split() { awk '/^RssAnon/ { a = $2 } /^RssFile/ { f = $2 } END { printf "%.1f MB anonymous + %.1f MB file-backed", a / 1024, f / 1024 }' "/proc/$1/status"; }

# One throughput run over MQTT: batch -> result row.
run_mqtt() { # name batch
    local dir=$WORK/$1 port http t0 t1 counted rejected replay_out
    rm -rf "$dir"; mkdir -p "$dir"
    mqtt_daemon "$dir"; port=$MQ_PORT http=$HTTP_PORT
    say "$1: $READINGS readings of $DEVICES devices, $2 per message"
    t0=$(now)
    replay_out=$("$BIN" replay --devices "$DEVICES" --readings "$READINGS" --batch "$2" \
        --mqtt "mqtt://127.0.0.1:$port" --topic 'load/{device_id}' 2>&1)
    say "  $replay_out"
    t1=$(wait_counted "$http" mqtt "$READINGS")
    counted=$(metric "$http" 'faultline_readings_total{source="mqtt"}')
    rejected=$(curl -fsS "http://127.0.0.1:$http/metrics" | awk '$1 ~ /^faultline_readings_rejected_total/ { s += $2 } END { print s + 0 }')
    local secs; secs=$(elapsed "$t0" "$t1")
    local cpu; cpu=$(cpu_s "$DAEMON_PID")
    result "MQTT QoS 1, $2 reading(s)/message, $DEVICES devices" "$(human "$(per_s "$counted" "$secs")") readings/s" \
        "$counted of $READINGS counted in $secs s, $((READINGS - ${counted%.*})) lost, $rejected refused; daemon CPU $(us_per "$cpu" "$counted") µs/reading; peak RSS $(mb "$(hwm_kb "$DAEMON_PID")")"
    stop_daemon
    kill "$MOSQUITTO_PID"
}

case_kafka() {
    local dir=$WORK/kafka kport http t0 t1 counted replay_out
    rm -rf "$dir"; mkdir -p "$dir"
    start_tansu "$dir"; kport=$K_PORT
    topic "$kport" load 2
    http=$(free_port)
    write_config "$dir" "$http" "[[source]]
type = \"kafka\"
brokers = \"127.0.0.1:$kport\"
topics = [\"load\"]
group_id = \"faultline-load\"
$KAFKA_OPTIONS"
    # Produce first, then let the daemon read the backlog: the daemon's rate, not the producer's.
    say "kafka: producing $READINGS readings of $DEVICES devices"
    replay_out=$("$BIN" replay --devices "$DEVICES" --readings "$READINGS" --kafka "127.0.0.1:$kport" --topic load 2>&1)
    say "  $replay_out"
    t0=$(now)
    start_daemon "$dir" "$http"
    # Joining the consumer group takes seconds (the broker waits for more
    # members): the rate counts from the first reading, the total from start.
    local tf; tf=$(wait_first "$http" kafka)
    t1=$(wait_counted "$http" kafka "$READINGS")
    counted=$(metric "$http" 'faultline_readings_total{source="kafka"}')
    local secs; secs=$(elapsed "$tf" "$t1")
    local cpu; cpu=$(cpu_s "$DAEMON_PID")
    result "Kafka, one reading per record, $DEVICES devices (backlog read)" "$(human "$(per_s "$counted" "$secs")") readings/s" \
        "$counted of $READINGS counted in $secs s from the first ($(elapsed "$t0" "$t1") s from start, joining the group included), $((READINGS - ${counted%.*})) lost; daemon CPU $(us_per "$cpu" "$counted") µs/reading; peak RSS $(mb "$(hwm_kb "$DAEMON_PID")")"
    stop_daemon
}

case_latency() {
    local dir=$WORK/latency port kport http n secs replay_out
    rm -rf "$dir"; mkdir -p "$dir"
    start_tansu "$dir"; kport=$K_PORT
    topic "$kport" alert-signals 1
    mqtt_daemon "$dir" "[[sink]]
type = \"kafka\"
brokers = \"127.0.0.1:$kport\"
topic = \"alert-signals\""
    port=$MQ_PORT http=$HTTP_PORT
    n=$((LATENCY_RATE * 40))
    say "latency: $n readings of $DEVICES devices at $LATENCY_RATE/s, alerts to Kafka"
    replay_out=$("$BIN" replay --devices "$DEVICES" --readings "$n" --rate "$LATENCY_RATE" \
        --mqtt "mqtt://127.0.0.1:$port" --topic 'load/{device_id}' 2>&1)
    say "  $replay_out"
    wait_counted "$http" mqtt "$n" >/dev/null
    sleep 2
    local alerts p50 p99 close99
    alerts=$(metric "$http" 'faultline_alert_delivery_seconds_count')
    say "  delivery buckets: $(curl -fsS "http://127.0.0.1:$http/metrics" | awk '/^faultline_alert_delivery_seconds_bucket/ { split($1, a, "le=\""); sub(/".*/, "", a[2]); printf "≤%s:%s ", a[2], $2 }')"
    p50=$(quantile "$http" faultline_alert_delivery_seconds 0.5)
    p99=$(quantile "$http" faultline_alert_delivery_seconds 0.99)
    close99=$(quantile "$http" faultline_checkpoint_seconds 0.99)
    result "alert latency at $LATENCY_RATE readings/s (MQTT in, Kafka out)" "p50 ≤ ${p50} s, p99 ≤ ${p99} s" \
        "$alerts alerts delivered; bucket upper bounds; checkpoint p99 ≤ ${close99} s"
    stop_daemon
    kill "$MOSQUITTO_PID"
}

case_memory() {
    local dir=$WORK/memory port http secs n replay_pid start_rss peak=0 samples=() r
    rm -rf "$dir"; mkdir -p "$dir"
    mqtt_daemon "$dir"; port=$MQ_PORT http=$HTTP_PORT
    start_rss=$(rss_kb "$DAEMON_PID")
    secs=$(awk -v s="$SOAK" 'BEGIN { n = s + 0; if (s ~ /m$/) n *= 60; if (s ~ /h$/) n *= 3600; print n }')
    n=$((DEVICES_MEM * secs))
    say "memory: $DEVICES_MEM devices, one reading each per second ($INTERVAL of event time apart), for $SOAK ($n readings)"
    "$BIN" replay --devices "$DEVICES_MEM" --readings "$n" --rate "$DEVICES_MEM" --interval "$INTERVAL" \
        --mqtt "mqtt://127.0.0.1:$port" --topic 'load/{device_id}' >"$dir/replay.log" 2>&1 &
    replay_pid=$!
    PIDS+=("$replay_pid")
    while kill -0 "$replay_pid" 2>/dev/null; do
        sleep 10
        r=$(rss_kb "$DAEMON_PID")
        samples+=("$((r / 1024))")
        [ "$r" -le "$peak" ] || peak=$r
    done
    wait "$replay_pid" || { cat "$dir/replay.log" >&2; exit 1; }
    wait_counted "$http" mqtt "$n" >/dev/null
    local devices open; devices=$(metric "$http" faultline_devices); open=$(metric "$http" faultline_open_windows)
    say "  RSS every 10 s (MB): ${samples[*]}"
    local q=$(( ${#samples[@]} / 4 ))
    # The kernel's high-water mark catches what the 10 s samples miss (the
    # burst when 10,000 windows close together).
    result "memory, $DEVICES_MEM devices × 8 signals, $SOAK at $DEVICES_MEM readings/s$([ "$INTERVAL" = 1s ] || echo ", $INTERVAL of event time a second")" "peak RSS $(mb "$(hwm_kb "$DAEMON_PID")")" \
        "highest 10 s sample $(mb "$peak"); at ready $(mb "$start_rss"); after the first quarter $(( ${samples[$q]:-0} )) MB, at the end ${samples[-1]:-?} MB ($(rss_split "$DAEMON_PID")); $devices devices, $open open windows; state $(du -sh "$dir/state" | cut -f1)"
    # A crash, not a stop: the restart case's first run replays the journal.
    kill -9 "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true
    # Under a WRAP the daemon is the wrapper's child: it goes down the same way.
    pkill -9 -f -- "run --config $dir/faultline.toml" 2>/dev/null || true
    kill "$MOSQUITTO_PID"
    MEMORY_PORT=$port
}

case_late() {
    local dir=$WORK/late port http n=$((DEVICES_MEM * 60)) i late
    rm -rf "$dir"; mkdir -p "$dir"
    mqtt_daemon "$dir"; port=$MQ_PORT http=$HTTP_PORT
    say "late: $DEVICES_MEM devices, 60 s at 10s of event time a second, twice (the second mostly late)"
    for i in 1 2; do
        "$BIN" replay --devices "$DEVICES_MEM" --readings "$n" --rate "$DEVICES_MEM" --interval 10s \
            --mqtt "mqtt://127.0.0.1:$port" --topic 'load/{device_id}' >"$dir/replay.log" 2>&1 || { cat "$dir/replay.log" >&2; exit 1; }
    done
    wait_counted "$http" mqtt $((2 * n)) >/dev/null
    sleep 2
    late=$(metric "$http" faultline_readings_late_total)
    result "late readings, $DEVICES_MEM devices at $DEVICES_MEM readings/s" "peak RSS $(mb "$(hwm_kb "$DAEMON_PID")")" \
        "${late%.*} of $((2 * n)) readings late (the late store keeps 10,000); RSS at the end $(mb "$(rss_kb "$DAEMON_PID")")"
    stop_daemon
    kill "$MOSQUITTO_PID"
}

case_restart() {
    local dir=$WORK/memory http port t0 t1 runs=() i
    [ -d "$dir/state" ] || case_memory
    start_mosquitto "$dir"; port=$MQ_PORT
    http=$(free_port)
    sed -i "s/^listen = .*/listen = \"127.0.0.1:$http\"/; s#^url = .*#url = \"mqtt://127.0.0.1:$port\"#" "$dir/faultline.toml"
    # Run 0 follows the memory case's kill -9 (snapshots plus journal);
    # runs 1-5 follow a clean stop (snapshots only).
    local crash
    for i in 0 1 2 3 4 5; do
        t0=$(now)
        start_daemon "$dir" "$http"
        t1=$(now)
        if [ "$i" = 0 ]; then
            crash=$(elapsed "$t0" "$t1"); devices=$(metric "$http" faultline_devices)
        else
            runs+=("$(elapsed "$t0" "$t1")")
        fi
        stop_daemon
    done
    local median; median=$(printf '%s\n' "${runs[@]}" | sort -n | sed -n 3p)
    result "restart with $devices devices of state ($(du -sh "$dir/state" | cut -f1) in sled)" "$median s to /readyz (median of 5); $crash s after kill -9" \
        "runs: ${runs[*]} s; from exec, polling every 10 ms; after kill -9 the journal is replayed"
    kill "$MOSQUITTO_PID"
}

case_ceilings() {
    local dir=$WORK/ceilings port kport t0 t1 out n=$((READINGS / 2))
    rm -rf "$dir"; mkdir -p "$dir"
    start_mosquitto "$dir"; port=$MQ_PORT
    if command -v mosquitto_sub >/dev/null; then
        mosquitto_sub -p "$port" -q 1 -c -i ceiling -t 'load/+' -C "$n" >/dev/null &
        local sub=$!
        PIDS+=("$sub")
        sleep 0.5
        t0=$(now)
        "$BIN" replay --devices "$DEVICES" --readings "$n" --mqtt "mqtt://127.0.0.1:$port" --topic 'load/{device_id}' 2>/dev/null
        wait "$sub"
        t1=$(now)
        result "mosquitto alone (replay → mosquitto → mosquitto_sub, QoS 1, one reading per message)" \
            "$(human "$(per_s "$n" "$(elapsed "$t0" "$t1")")") messages/s" "$n messages in $(elapsed "$t0" "$t1") s"
    else
        say "ceilings: no mosquitto_sub (apt-get install mosquitto-clients): MQTT ceiling skipped"
    fi
    t0=$(now)
    "$BIN" replay --devices "$DEVICES" --readings "$n" --mqtt "mqtt://127.0.0.1:$port" --topic 'load/{device_id}' 2>/dev/null
    t1=$(now)
    result "mosquitto, no subscriber (replay → PUBACK)" "$(human "$(per_s "$n" "$(elapsed "$t0" "$t1")")") messages/s" "$n messages"
    kill "$MOSQUITTO_PID"
    start_tansu "$dir"; kport=$K_PORT
    topic "$kport" ceiling 2
    t0=$(now)
    "$BIN" replay --devices "$DEVICES" --readings "$n" --kafka "127.0.0.1:$kport" --topic ceiling 2>/dev/null
    t1=$(now)
    result "tansu alone (replay → acks=all, in memory)" "$(human "$(per_s "$n" "$(elapsed "$t0" "$t1")")") records/s" "$n records"
    # Reading them back: librdkafka with the daemon's fetch settings, records dropped.
    out=$("$ROOT/target/release/examples/kafka_drain" "127.0.0.1:$kport" ceiling 2 "$n" "fetch.wait.max.ms=$KAFKA_WAIT_MS")
    result "tansu alone, read back (examples/kafka_drain, the daemon's fetch settings)" \
        "$(human "$(per_s "$n" "$(awk '{ print $(NF - 9) }' <<<"$out")")") records/s" "$out"
}

for c in "${CASES[@]}"; do
    CASE_MARK=$(cpu_mark)
    case $c in
        mqtt) run_mqtt mqtt 1 ;;
        mqtt-batch) READINGS=$((READINGS * 5)) run_mqtt mqtt-batch 100 ;;
        kafka) case_kafka ;;
        latency) case_latency ;;
        memory) case_memory ;;
        late) case_late ;;
        restart) case_restart ;;
        ceilings) case_ceilings ;;
        *) say "unknown case $c"; exit 2 ;;
    esac
done

echo
echo "$(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); $(git rev-parse --short HEAD); $(date -u +%FT%TZ); CPU steal during the runs: $(steal_since "$START_MARK")"
echo "| what | measured | details |"
echo "|---|---|---|"
printf '%s\n' "${RESULTS[@]}"
