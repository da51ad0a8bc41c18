#!/usr/bin/env bash
# Cluster write benchmark: a 3-server Concord cluster (127.0.48.1-3, release build) and a
# 3-member etcd 3.4 cluster (127.0.49.1-3, Debian `etcd-server`) on this machine, both
# fsyncing their log before they acknowledge, driven side by side by the same closed-loop
# load generator (bench/src/bin/kv_bench.rs, keep-alive HTTP/1.1, clients spread
# round-robin over the three servers): KV PUTs per second at 1, 16 and 64 clients with
# p50/p99 (etcd: `POST /v3/kv/put` on its JSON gateway), Concord catalog registrations at
# the same concurrency, then `kill -9` of each cluster's leader and the time until the
# survivors agree on a new one. Prints a markdown table (docs/benchmarks.md, "Server
# cluster").
#
# Usage: bench/cluster/run.sh            (from the repository root, as root for apt-get)
# Env:   DURATION=10 CONCURRENCY="1 16 64" VALUE_SIZE=128
#        LOGS=dir (keep the servers' logs there)
#        CONCORD=target/release/concord KV_BENCH=target/release/kv_bench
# Needs: etcd (Debian etcd-server; installed with apt-get when run as root), curl.
set -euo pipefail

DURATION=${DURATION:-10}
CONCURRENCY=${CONCURRENCY:-1 16 64}
VALUE_SIZE=${VALUE_SIZE:-128}
TARGET=${CARGO_TARGET_DIR:-target}
CONCORD=${CONCORD:-$TARGET/release/concord}
KV_BENCH=${KV_BENCH:-$TARGET/release/kv_bench}
CONCORD_NET=127.0.48
ETCD_NET=127.0.49

if ! command -v etcd >/dev/null 2>&1; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        echo "installing etcd-server" >&2
        apt-get install -y etcd-server >/dev/null
    else
        echo "missing: etcd (Debian: apt-get install etcd-server)" >&2
        exit 1
    fi
fi
if [[ ! -x $CONCORD || ! -x $KV_BENCH ]]; then
    echo "building (cargo build --release -p concord -p concord-bench)" >&2
    cargo build --release -p concord -p concord-bench --bin concord --bin kv_bench >&2
fi

# On the disk, not a tmpfs: the fsyncs must cost what they cost.
WORK=$(mktemp -d "$TARGET/bench-cluster.XXXXXX")
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ -n ${LOGS:-} ]]; then mkdir -p "$LOGS" && cp "$WORK"/*.log "$LOGS"/; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# --- etcd: three members, default timings (heartbeat 100 ms, election 1 s), fsync on.
cluster=""
for i in 1 2 3; do cluster+="${cluster:+,}e$i=http://$ETCD_NET.$i:2380"; done
ETCD_PIDS=()
for i in 1 2 3; do
    ip=$ETCD_NET.$i
    etcd --name "e$i" --data-dir "$WORK/etcd$i" \
        --listen-client-urls "http://$ip:2379" --advertise-client-urls "http://$ip:2379" \
        --listen-peer-urls "http://$ip:2380" --initial-advertise-peer-urls "http://$ip:2380" \
        --initial-cluster "$cluster" --initial-cluster-state new \
        --initial-cluster-token concord-bench --logger zap --log-level error \
        >"$WORK/etcd$i.log" 2>&1 &
    ETCD_PIDS+=($!)
    PIDS+=($!)
done

# --- Concord: three servers with production timings (heartbeat 0.5 s, election 1.5-3 s).
CONCORD_PIDS=()
for i in 1 2 3; do
    ip=$CONCORD_NET.$i
    joins=()
    for j in 1 2 3; do [[ $j != "$i" ]] && joins+=(-retry-join "$CONCORD_NET.$j"); done
    "$CONCORD" agent -server -node "s$i" -bind "$ip" -client "$ip" -dns-port -1 \
        -data-dir "$WORK/concord$i" -bootstrap-expect 3 -retry-interval 1s "${joins[@]}" \
        -log-level warn >"$WORK/concord$i.log" 2>&1 &
    CONCORD_PIDS+=($!)
    PIDS+=($!)
done

ETCD_ENDPOINTS="http://$ETCD_NET.1:2379,http://$ETCD_NET.2:2379,http://$ETCD_NET.3:2379"
CONCORD_ENDPOINTS="http://$CONCORD_NET.1:8500,http://$CONCORD_NET.2:8500,http://$CONCORD_NET.3:8500"

wait_for() { # what, command...
    local what=$1
    shift
    for _ in $(seq 600); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "timed out waiting for $what" >&2
    exit 1
}
etcd_ready() {
    for i in 1 2 3; do
        curl -sf -X POST "http://$ETCD_NET.$i:2379/v3/maintenance/status" -d '{}' |
            grep -q '"leader":"[1-9]'
    done
}
concord_ready() {
    for i in 1 2 3; do
        curl -sf "http://$CONCORD_NET.$i:8500/v1/status/leader" | grep -q 8300
        curl -sf -X PUT "http://$CONCORD_NET.$i:8500/v1/kv/bench-ready" -d x | grep -q true
    done
}
wait_for "etcd" etcd_ready
wait_for "Concord" concord_ready

echo "| What | Clients | Requests/s | p50 ms | p99 ms | Errors |"
echo "|---|---:|---:|---:|---:|---:|"
for c in $CONCURRENCY; do
    common=(--concurrency "$c" --duration "$DURATION" --value-size "$VALUE_SIZE")
    "$KV_BENCH" load --target etcd --endpoints "$ETCD_ENDPOINTS" "${common[@]}"
    "$KV_BENCH" load --target concord-kv --endpoints "$CONCORD_ENDPOINTS" "${common[@]}"
done
for c in $CONCURRENCY; do
    "$KV_BENCH" load --target concord-catalog --endpoints "$CONCORD_ENDPOINTS" \
        --concurrency "$c" --duration "$DURATION"
done
echo
printf 'etcd: '
"$KV_BENCH" failover --target etcd --endpoints "$ETCD_ENDPOINTS" \
    --pids "$(IFS=,; echo "${ETCD_PIDS[*]}")"
printf 'Concord: '
"$KV_BENCH" failover --target concord --endpoints "$CONCORD_ENDPOINTS" \
    --pids "$(IFS=,; echo "${CONCORD_PIDS[*]}")"
