#!/usr/bin/env bash
# DNS benchmark: queries per second of one `concord agent -dev` answering
# `web.service.consul` A and SRV, side by side with dnsmasq serving the same records (the
# practical ceiling), load from dnsperf. With 1 and with 100 instances behind the name:
#   - max qps (dnsperf without -Q), median of $RUNS runs of $DURATION s;
#   - latency at half of concord's max rate, for both servers, from bench's own open-loop
#     generator (dns_latency: fixed send rate, every reply timed into a preallocated array,
#     nothing printed while it runs), the server pinned to core 0 and the generator to core
#     1 with taskset; p50/p99/max, median of $RUNS runs. (dnsperf -v prints a line per query
#     on the same cores, which inflated its p99.)
# Prints a markdown table (docs/benchmarks.md, section "DNS").
#
# Usage: bench/dns/run.sh            (from the repository root)
# Env:   RUNS=3 DURATION=5 SIZES="1 100" CONCORD=target/release/concord PORT_BASE=18500
#        LATENCY=target/release/dns_latency
#        ADDR=127.0.50.1 (concord: HTTP, DNS, RPC, gossip) MASQ_ADDR=127.0.50.2 (dnsmasq)
#        LOAD_ADDR=127.0.50.3 (source address of dnsperf and dns_latency); every socket the
#        run opens is on these addresses, so runs on other loopback addresses do not clash.
# Needs: dnsperf, dnsmasq (Debian packages), curl, python3; installs the Debian packages
# with apt-get when run as root, otherwise says what is missing.
set -euo pipefail

RUNS=${RUNS:-3}
DURATION=${DURATION:-5}
PORT_BASE=${PORT_BASE:-18500}
ADDR=${ADDR:-127.0.50.1}
MASQ_ADDR=${MASQ_ADDR:-127.0.50.2}
LOAD_ADDR=${LOAD_ADDR:-127.0.50.3}
HTTP_PORT=$PORT_BASE
CONCORD_DNS=$((PORT_BASE + 100))
MASQ_DNS=$((PORT_BASE + 153))
TARGET=${CARGO_TARGET_DIR:-target}
CONCORD=${CONCORD:-$TARGET/release/concord}
LATENCY=${LATENCY:-$TARGET/release/dns_latency}
# dnsperf shape: one thread (the machine has 2 cores: one for the load, one for the server),
# 8 client sockets, up to 200 queries outstanding, EDNS0 so 100-instance answers fit in UDP
# for both servers.
DNSPERF_ARGS=(-a "$LOAD_ADDR" -T 1 -c 8 -q 200 -e -t 2)

missing=()
for tool in dnsperf dnsmasq curl python3 taskset; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
    debs=()
    for tool in "${missing[@]}"; do
        case $tool in dnsperf | dnsmasq | curl) debs+=("$tool") ;; esac
    done
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null && ((${#debs[@]})); then
        echo "installing ${debs[*]}" >&2
        apt-get install -y "${debs[@]}" >/dev/null || {
            apt-get update >/dev/null && apt-get install -y "${debs[@]}" >/dev/null
        }
    else
        echo "missing: ${missing[*]} (Debian: apt-get install ${debs[*]})" >&2
        exit 1
    fi
fi
if [[ ! -x $CONCORD ]]; then
    echo "building $CONCORD (cargo build --release -p concord)" >&2
    cargo build --release -p concord >&2
fi
if [[ ! -x $LATENCY ]]; then
    echo "building $LATENCY (cargo build --release -p concord-bench --bin dns_latency)" >&2
    cargo build --release -p concord-bench --bin dns_latency >&2
fi

WAIT_SECS=30
source "$(dirname "$0")/../lib.sh"
chmod 755 "$WORK" # dnsmasq drops privileges and must still read its hosts file

# Number of A records answering web.service.consul at $1:$2 (EDNS, so none are trimmed).
a_count() {
    python3 - "$1" "$2" "$LOAD_ADDR" <<'EOF'
import socket, struct, sys
addr, port, source = sys.argv[1], int(sys.argv[2]), sys.argv[3]
q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 1)
q += b"".join(bytes([len(l)]) + l.encode() for l in "web.service.consul".split(".")) + b"\0"
q += struct.pack(">HH", 1, 1)
q += b"\0" + struct.pack(">HHIH", 41, 4096, 0, 0)  # OPT: 4096-byte payload
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((source, 0))
s.settimeout(1)
s.sendto(q, (addr, port))
r = s.recv(65535)
print(struct.unpack(">H", r[6:8])[0])
EOF
}
has_a_records() { [[ $(a_count "$1" "$2") == "$3" ]]; }

echo "starting concord agent -dev (HTTP $HTTP_PORT, DNS $CONCORD_DNS)" >&2
"$CONCORD" agent -dev -node bench -bind "$ADDR" -client "$ADDR" -http-port "$HTTP_PORT" \
    -dns-port "$CONCORD_DNS" -server-port "$((PORT_BASE + 1))" -serf-lan-port 0 -log-level err >"$WORK/concord.log" 2>&1 &
CONCORD_PID=$!
PIDS+=("$CONCORD_PID")
wait_for curl -sf "http://$ADDR:$HTTP_PORT/v1/status/leader"

# Registers web instances $1..$2-1, each on its own node web-<i> at 10.1.<i/256>.<i%256>.
register() {
    local i
    for ((i = $1; i < $2; i++)); do
        curl -sf -X PUT "http://$ADDR:$HTTP_PORT/v1/catalog/register" -d \
            "{\"Node\":\"web-$i\",\"Address\":\"$(addr "$i")\",\"Service\":{\"Service\":\"web\",\"Port\":80}}" \
            >/dev/null
    done
}
addr() { echo "10.1.$(($1 / 256)).$(($1 % 256))"; }

# Starts dnsmasq serving the same records as concord for $1 instances.
start_dnsmasq() {
    local n=$1 i srv=()
    : >"$WORK/hosts"
    for ((i = 0; i < n; i++)); do
        echo "$(addr "$i") web.service.consul web-$i.node.dc1.consul" >>"$WORK/hosts"
        srv+=("--srv-host=web.service.consul,web-$i.node.dc1.consul,80,1,1")
    done
    chmod 644 "$WORK/hosts"
    dnsmasq -k -C /dev/null --port="$MASQ_DNS" --listen-address="$MASQ_ADDR" --bind-interfaces \
        --no-resolv --no-hosts --edns-packet-max=4096 --addn-hosts="$WORK/hosts" \
        --pid-file="$WORK/dnsmasq.pid" \
        "${srv[@]}" >"$WORK/dnsmasq.log" 2>&1 &
    MASQ_PID=$!
    PIDS+=("$MASQ_PID")
    wait_for has_a_records "$MASQ_ADDR" "$MASQ_DNS" "$n"
}

median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

# Max qps at $1:$2 for query type $3.
max_qps() {
    echo "web.service.consul $3" >"$WORK/query"
    local run
    for ((run = 0; run < RUNS; run++)); do
        dnsperf "${DNSPERF_ARGS[@]}" -s "$1" -p "$2" -d "$WORK/query" -l "$DURATION" 2>/dev/null |
            awk '/Queries per second:/ {print $4}'
    done | median
}

# "p50 p99 max" latency in ms at $1:$2 (server pid $5), type $3, rate $4 qps: the server's
# threads pinned to core 0 and the generator to core 1 for the run, then unpinned.
latency_ms() {
    local run
    taskset -a -p -c 0 "$5" >/dev/null
    for ((run = 0; run < RUNS; run++)); do
        taskset -c 1 "$LATENCY" --bind "$LOAD_ADDR:0" --server "$1:$2" --type "$3" \
            --rate "$4" --duration "$DURATION" | tee -a "$WORK/latency.log" |
            awk '/^latency ms:/ {print $4, $6, $10}'
    done >"$WORK/latency"
    taskset -a -p -c 0-"$(($(nproc) - 1))" "$5" >/dev/null
    local col
    for col in 1 2 3; do
        awk -v c="$col" '{print $c}' "$WORK/latency" | median
    done | paste -sd' '
}

echo "| instances | type | concord qps | dnsmasq qps | ratio | latency at (qps) | concord p50 / p99 / max (ms) | dnsmasq p50 / p99 / max (ms) |"
echo "|---|---|---|---|---|---|---|---|"
registered=0
for n in ${SIZES:-1 100}; do
    register "$registered" "$n"
    registered=$n
    wait_for has_a_records "$ADDR" "$CONCORD_DNS" "$n"
    start_dnsmasq "$n"
    for qtype in A SRV; do
        concord=$(max_qps "$ADDR" "$CONCORD_DNS" "$qtype")
        masq=$(max_qps "$MASQ_ADDR" "$MASQ_DNS" "$qtype")
        half=$(awk -v q="$concord" 'BEGIN {printf "%d", q / 2}')
        read -r cp50 cp99 cmax <<<"$(latency_ms "$ADDR" "$CONCORD_DNS" "$qtype" "$half" "$CONCORD_PID")"
        read -r mp50 mp99 mmax <<<"$(latency_ms "$MASQ_ADDR" "$MASQ_DNS" "$qtype" "$half" "$MASQ_PID")"
        awk -v n="$n" -v t="$qtype" -v c="$concord" -v m="$masq" -v h="$half" \
            -v cl="$cp50 / $cp99 / $cmax" -v ml="$mp50 / $mp99 / $mmax" \
            'BEGIN {printf "| %d | %s | %d | %d | %.0f%% | %d | %s | %s |\n", n, t, c, m, 100 * c / m, h, cl, ml}'
    done
    kill "$MASQ_PID"
    wait "$MASQ_PID" 2>/dev/null || true
done
# The generator's own lines (lost replies, late sends), for the record.
cat "$WORK/latency.log" >&2
echo
echo "dnsperf $(dnsperf -h 2>&1 | awk '/^Version/ {print $2}'), dnsmasq $(dnsmasq --version | awk 'NR==1 {print $3}'), $(nproc) cores, RUNS=$RUNS DURATION=${DURATION}s"
