#!/usr/bin/env bash
# Sidecar proxy benchmark: HTTP requests from wrk over keep-alive connections to
#   - direct:  the backend itself;
#   - concord: web's upstream listener -> mTLS -> db's sidecar -> backend (two
#              `concord connect proxy` processes and a `concord agent -dev`), tcp mode;
#   - concord-http: the same through a second pair of sidecars in http mode (the L7 engine:
#              per-request routing, intentions, metrics; webh -> dbh);
#   - haproxy: haproxy (tcp, TLS 1.3 client cert) -> haproxy (tcp, TLS 1.3, client cert
#              required) -> backend;
#   - haproxy-http: the same pair in http mode (each parses every request and response, and
#              the client side reuses its TLS connections to the server side across
#              requests);
#   - haproxy-http-fwd: that pair with its server side also telling the app who called, as
#              Concord's (and Consul's Envoy's) inbound side does: X-Forwarded-For,
#              X-Forwarded-Proto and an X-Forwarded-Client-Cert with the caller's
#              certificate: the like-for-like peer of concord-http.
# The backend is a third haproxy answering `200 ok` itself (http-request return), so it is
# never the bottleneck of the proxied rows. For each row: max req/s, p50/p90/p99 latency and
# the added p50/p99 over direct, CPU seconds per 10k requests and RSS (idle, after load) of
# each proxy process; then at fixed rates (RATES, req/s, with the same connection count):
# achieved rate, p50/p99 and the added p50/p99. Prints two markdown tables
# (docs/benchmarks.md, "Sidecar proxy"). The fixed rates come from `paced`
# (bench/src/bin/paced.rs: arrivals spread evenly over the second, as wrk2 and oha pace
# them); RATE_TOOL=hey uses hey instead (its workers fire together, a burst of CONNECTIONS
# requests at a time).
#
# Usage: bench/proxy/run.sh            (from the repository root)
# Env:   DURATION=10 (each max-load row) CONNECTIONS=64 THREADS=1 RATES="1000 5000"
#        ROUNDS=5 RATE_DURATION=5 (fixed rates: rounds, seconds per row and round)
#        RATE_ROWS="concord concord-http haproxy haproxy-http haproxy-http-fwd" (the rows
#        measured at fixed rates) MAX_LOAD=1 (0 skips the max-load table) PORT_BASE=26200
#        HOST=127.0.46.1 (the loopback address every process binds) PROXY_ARGS= (more
#        `concord connect proxy` flags) CONCORD=target/release/concord
#        PACED=target/release/paced RATE_TOOL=paced|hey
#        PERF_DIR= (a directory: `perf record` both L7 sidecars during their max-load run,
#        into PERF_DIR/webh.data and dbh.data)
# Needs: wrk, hey, haproxy (Debian packages), openssl, curl, python3; installs the Debian
# packages with apt-get when run as root, otherwise says what is missing.
set -euo pipefail

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1}
RATES=${RATES:-1000 5000}
ROUNDS=${ROUNDS:-5}
RATE_DURATION=${RATE_DURATION:-5}
RATE_ROWS=${RATE_ROWS:-concord concord-http haproxy haproxy-http haproxy-http-fwd}
MAX_LOAD=${MAX_LOAD:-1}
PORT_BASE=${PORT_BASE:-26200}
HOST=${HOST:-127.0.46.1}
PROXY_ARGS=${PROXY_ARGS:-}
TARGET=${CARGO_TARGET_DIR:-target}
CONCORD=${CONCORD:-$TARGET/release/concord}
PACED=${PACED:-$TARGET/release/paced}
RATE_TOOL=${RATE_TOOL:-paced}

BACKEND=$PORT_BASE
AGENT_HTTP=$((PORT_BASE + 1))
DB_PUBLIC=$((PORT_BASE + 2))
WEB_UPSTREAM=$((PORT_BASE + 3))
HA_CLIENT=$((PORT_BASE + 4))
HA_SERVER=$((PORT_BASE + 5))
WEB_APP=$((PORT_BASE + 6)) # registered for web, never called
WEB_METRICS=$((PORT_BASE + 7))
DB_METRICS=$((PORT_BASE + 8))
# PORT_BASE + 9: web's sidecar public port (registered, unused).
DBH_PUBLIC=$((PORT_BASE + 10))
WEBH_UPSTREAM=$((PORT_BASE + 11))
WEBH_METRICS=$((PORT_BASE + 12))
DBH_METRICS=$((PORT_BASE + 13))
WEBH_PUBLIC=$((PORT_BASE + 14))
HAH_CLIENT=$((PORT_BASE + 15))
HAH_SERVER=$((PORT_BASE + 16))
HAF_CLIENT=$((PORT_BASE + 17))
HAF_SERVER=$((PORT_BASE + 18))

# The rows of the fixed-rate table (RATE_ROWS), with the port each is loaded on.
ENTRIES=()
for entry in "concord:$WEB_UPSTREAM" "concord-http:$WEBH_UPSTREAM" "haproxy:$HA_CLIENT" "haproxy-http:$HAH_CLIENT" "haproxy-http-fwd:$HAF_CLIENT"; do
    [[ " $RATE_ROWS " == *" ${entry%%:*} "* ]] && ENTRIES+=("$entry")
done
NROWS=${#ENTRIES[@]}
if ((NROWS == 0)); then
    echo "RATE_ROWS names none of: concord concord-http haproxy haproxy-http haproxy-http-fwd" >&2
    exit 1
fi

missing=()
for tool in wrk hey haproxy openssl curl python3; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
    debs=()
    for tool in "${missing[@]}"; do
        case $tool in wrk | hey | haproxy | openssl | curl) debs+=("$tool") ;; esac
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
if [[ $RATE_TOOL == paced && ! -x $PACED ]]; then
    echo "building $PACED (cargo build --release -p concord-bench --bin paced)" >&2
    cargo build --release -p concord-bench --bin paced >&2
fi

source "$(dirname "$0")/../lib.sh"

# CPU seconds (user + system) of a process so far.
cpu_secs() {
    python3 - "$1" <<'PY'
import os, sys
fields = open(f"/proc/{sys.argv[1]}/stat").read().rsplit(")", 1)[1].split()
print((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
PY
}

# Resident set size of a process, MiB.
rss_mib() {
    awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"
}

# Runs wrk against port $1; prints "rps p50_ms p90_ms p99_ms requests".
load() {
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://$HOST:$1/" >"$WORK/wrk.out"
    python3 - "$WORK/wrk.out" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def ms(v):
    n, unit = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
pct = dict(re.findall(r"^\s+(\d+)%\s+(\S+)", text, re.M))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
reqs = int(re.search(r"(\d+) requests in", text).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", text)
if errors:
    print(f"wrk reported errors: {errors.group(0)}", file=sys.stderr)
print(f"{rps:.0f} {ms(pct['50']):.3f} {ms(pct['90']):.3f} {ms(pct['99']):.3f} {reqs}")
PY
}

# Loads port $1 at $2 req/s in total for $3 seconds; prints "achieved_rps p50_ms p99_ms".
rate_load() {
    if [[ $RATE_TOOL == paced ]]; then
        local rps p50 p99 errors
        read -r rps p50 p99 errors < <("$PACED" "http://$HOST:$1/" "$2" "$3" "$CONNECTIONS")
        if [[ $errors != 0 ]]; then echo "paced reported $errors errors" >&2; fi
        echo "$rps $p50 $p99"
        return
    fi
    local per_worker
    per_worker=$(python3 -c "print($2 / $CONNECTIONS)")
    hey -z "${3}s" -c "$CONNECTIONS" -q "$per_worker" "http://$HOST:$1/" >"$WORK/hey.out"
    python3 - "$WORK/hey.out" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
pct = dict(re.findall(r"^\s+(\d+)% in ([\d.]+) secs", text, re.M))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
codes = re.findall(r"\[(\d+)\]\s+(\d+) responses", text)
bad = [c for c in codes if c[0] != "200"]
if bad or "Error distribution" in text:
    print(f"hey reported errors: {bad}", file=sys.stderr)
print(f"{rps:.0f} {float(pct['50']) * 1000:.3f} {float(pct['99']) * 1000:.3f}")
PY
}

echo "certificates for the haproxy pair (one CA, P-256, TLS 1.3 both ways)" >&2
(
    cd "$WORK"
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
    openssl req -x509 -new -key ca.key -subj /CN=bench-ca -days 2 -out ca.pem 2>/dev/null
    for who in client server; do
        openssl ecparam -name prime256v1 -genkey -noout -out "$who.key" 2>/dev/null
        openssl req -new -key "$who.key" -subj "/CN=$who" -out "$who.csr" 2>/dev/null
        printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$who" >"$who.ext"
        openssl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
            -extfile "$who.ext" -out "$who.crt" 2>/dev/null
        cat "$who.crt" "$who.key" >"$who.pem"
    done
)

ok_backend_cfg "$HOST" "$BACKEND" >"$WORK/backend.cfg"
cat >"$WORK/ha-client.cfg" <<CFG
global
    maxconn 4096
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend upstream
    bind $HOST:$HA_CLIENT
    default_backend peer
backend peer
    server db $HOST:$HA_SERVER ssl verify required ca-file $WORK/ca.pem crt $WORK/client.pem sni str(server) ssl-min-ver TLSv1.3
CFG
cat >"$WORK/ha-server.cfg" <<CFG
global
    maxconn 4096
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend public
    bind $HOST:$HA_SERVER ssl crt $WORK/server.pem ca-file $WORK/ca.pem verify required ssl-min-ver TLSv1.3
    default_backend app
backend app
    server app $HOST:$BACKEND
CFG

# The same pair in http mode: both ends parse HTTP, as Concord's L7 sidecars do.
sed -e 's/mode tcp/mode http/' -e "s/$HA_CLIENT/$HAH_CLIENT/" -e "s/$HA_SERVER/$HAH_SERVER/" \
    "$WORK/ha-client.cfg" >"$WORK/hah-client.cfg"
sed -e 's/mode tcp/mode http/' -e "s/$HA_SERVER/$HAH_SERVER/" \
    "$WORK/ha-server.cfg" >"$WORK/hah-server.cfg"
# And once more with the headers Concord's inbound side adds for the app (forwarded.rs):
# the caller's address and scheme, and an XFCC element with the hash of the caller's
# certificate, the certificate and its chain (base64 DER here, a little shorter than the
# URL-encoded PEM Envoy and Concord send) and its URI.
sed -e 's/mode tcp/mode http/' -e "s/$HA_CLIENT/$HAF_CLIENT/" -e "s/$HA_SERVER/$HAF_SERVER/" \
    "$WORK/ha-client.cfg" >"$WORK/haf-client.cfg"
sed -e 's/mode tcp/mode http/' -e "s/$HA_SERVER/$HAF_SERVER/" \
    -e '/default_backend app/i\    option forwardfor\n    http-request set-header X-Forwarded-Proto https\n    http-request set-header X-Forwarded-Client-Cert "By=spiffe://bench/svc/db;Hash=%[ssl_c_der,sha2(256),hex];Cert=\\"%[ssl_c_der,base64]\\";Chain=\\"%[ssl_c_der,base64]\\";Subject=\\"\\";URI=spiffe://bench/svc/web"' \
    "$WORK/ha-server.cfg" >"$WORK/haf-server.cfg"

# Starts haproxy on $WORK/$1.cfg, logging to $WORK/$1.log; its pid in HA_PID.
start_haproxy() {
    haproxy -f "$WORK/$1.cfg" -db >"$WORK/$1.log" 2>&1 &
    HA_PID=$!
    PIDS+=($HA_PID)
}
start_haproxy backend
start_haproxy ha-client && HA_CLIENT_PID=$HA_PID
start_haproxy ha-server && HA_SERVER_PID=$HA_PID
start_haproxy hah-client && HAH_CLIENT_PID=$HA_PID
start_haproxy hah-server && HAH_SERVER_PID=$HA_PID
start_haproxy haf-client && HAF_CLIENT_PID=$HA_PID
start_haproxy haf-server && HAF_SERVER_PID=$HA_PID

echo "concord agent and two sidecars (tcp)" >&2
"$CONCORD" agent -dev -node bench -http-port "$AGENT_HTTP" -dns-port -1 -server-port 0 \
    -serf-lan-port 0 -client "$HOST" -bind "$HOST" >"$WORK/agent.log" 2>&1 &
PIDS+=($!)
wait_for curl -sf "http://$HOST:$AGENT_HTTP/v1/agent/connect/ca/leaf/db"
register "{\"Name\":\"db\",\"Port\":$BACKEND}"
register "{\"Name\":\"web\",\"Port\":$WEB_APP}"
register "{\"Kind\":\"connect-proxy\",\"ID\":\"db-sidecar-proxy\",\"Name\":\"db-sidecar-proxy\",
  \"Port\":$DB_PUBLIC,\"Address\":\"$HOST\",\"Proxy\":{\"DestinationServiceName\":\"db\",
  \"DestinationServiceID\":\"db\",\"LocalServiceAddress\":\"$HOST\",\"LocalServicePort\":$BACKEND,\"Config\":{\"bind_address\":\"$HOST\"}}}"
register "{\"Kind\":\"connect-proxy\",\"ID\":\"web-sidecar-proxy\",\"Name\":\"web-sidecar-proxy\",
  \"Port\":$((PORT_BASE + 9)),\"Address\":\"$HOST\",\"Proxy\":{\"DestinationServiceName\":\"web\",
  \"DestinationServiceID\":\"web\",\"LocalServiceAddress\":\"$HOST\",\"LocalServicePort\":$WEB_APP,\"Config\":{\"bind_address\":\"$HOST\"},
  \"Upstreams\":[{\"DestinationName\":\"db\",\"LocalBindAddress\":\"$HOST\",\"LocalBindPort\":$WEB_UPSTREAM}]}}"
"$CONCORD" connect proxy -sidecar-for db -http-addr "$HOST:$AGENT_HTTP" \
    -metrics-addr "$HOST:$DB_METRICS" -log-level warn $PROXY_ARGS >"$WORK/db-proxy.log" 2>&1 &
DB_PID=$!
PIDS+=($DB_PID)
"$CONCORD" connect proxy -sidecar-for web -http-addr "$HOST:$AGENT_HTTP" \
    -metrics-addr "$HOST:$WEB_METRICS" -log-level warn $PROXY_ARGS >"$WORK/web-proxy.log" 2>&1 &
WEB_PID=$!
PIDS+=($WEB_PID)

echo "two more sidecars in http mode (L7)" >&2
register "{\"Name\":\"dbh\",\"Port\":$BACKEND}"
register "{\"Name\":\"webh\",\"Port\":$WEB_APP}"
register "{\"Kind\":\"connect-proxy\",\"ID\":\"dbh-sidecar-proxy\",\"Name\":\"dbh-sidecar-proxy\",
  \"Port\":$DBH_PUBLIC,\"Address\":\"$HOST\",\"Proxy\":{\"DestinationServiceName\":\"dbh\",
  \"DestinationServiceID\":\"dbh\",\"LocalServiceAddress\":\"$HOST\",\"LocalServicePort\":$BACKEND,
  \"Config\":{\"bind_address\":\"$HOST\",\"protocol\":\"http\"}}}"
register "{\"Kind\":\"connect-proxy\",\"ID\":\"webh-sidecar-proxy\",\"Name\":\"webh-sidecar-proxy\",
  \"Port\":$WEBH_PUBLIC,\"Address\":\"$HOST\",\"Proxy\":{\"DestinationServiceName\":\"webh\",
  \"DestinationServiceID\":\"webh\",\"LocalServiceAddress\":\"$HOST\",\"LocalServicePort\":$WEB_APP,
  \"Config\":{\"bind_address\":\"$HOST\",\"protocol\":\"http\"},
  \"Upstreams\":[{\"DestinationName\":\"dbh\",\"LocalBindAddress\":\"$HOST\",\"LocalBindPort\":$WEBH_UPSTREAM,
  \"Config\":{\"protocol\":\"http\"}}]}}"
"$CONCORD" connect proxy -sidecar-for dbh -http-addr "$HOST:$AGENT_HTTP" \
    -metrics-addr "$HOST:$DBH_METRICS" -log-level warn $PROXY_ARGS >"$WORK/dbh-proxy.log" 2>&1 &
DBH_PID=$!
PIDS+=($DBH_PID)
"$CONCORD" connect proxy -sidecar-for webh -http-addr "$HOST:$AGENT_HTTP" \
    -metrics-addr "$HOST:$WEBH_METRICS" -log-level warn $PROXY_ARGS >"$WORK/webh-proxy.log" 2>&1 &
WEBH_PID=$!
PIDS+=($WEBH_PID)

wait_for curl -sf "http://$HOST:$BACKEND/"
wait_for curl -sf "http://$HOST:$HA_CLIENT/"
wait_for curl -sf "http://$HOST:$HAH_CLIENT/"
wait_for curl -sf "http://$HOST:$HAF_CLIENT/"
wait_for curl -sf "http://$HOST:$WEB_UPSTREAM/"
wait_for curl -sf "http://$HOST:$WEBH_UPSTREAM/"

# One max-load row: wrk on `port`, CPU and RSS of the client-side (`cpid`) and server-side
# (`spid`) proxy, added latency against direct's (D50, D99).
row() {
    local name=$1 port=$2 cpid=$3 spid=$4
    local idle_c idle_s c0 s0 c1 s1 reqs
    idle_c=$(rss_mib "$cpid")
    idle_s=$(rss_mib "$spid")
    c0=$(cpu_secs "$cpid")
    s0=$(cpu_secs "$spid")
    if [[ -n ${PERF_DIR:-} && $port == "$WEBH_UPSTREAM" ]]; then
        perf record -F 999 -p "$cpid" -o "$PERF_DIR/webh.data" -- sleep $((DURATION - 2)) \
            >/dev/null 2>&1 &
        perf record -F 999 -p "$spid" -o "$PERF_DIR/dbh.data" -- sleep $((DURATION - 2)) \
            >/dev/null 2>&1 &
    fi
    read -r rps p50 p90 p99 reqs < <(load "$port")
    c1=$(cpu_secs "$cpid")
    s1=$(cpu_secs "$spid")
    python3 - "$name" "$rps" "$p50" "$p90" "$p99" "$D50" "$D99" "$c0" "$c1" "$s0" "$s1" "$reqs" \
        "$idle_c" "$(rss_mib "$cpid")" "$idle_s" "$(rss_mib "$spid")" <<'PY'
import sys
(name, rps, p50, p90, p99, d50, d99, c0, c1, s0, s1, reqs, ic, lc, is_, ls) = sys.argv[1:]
f = float
per10k = lambda a, b: (f(b) - f(a)) / int(reqs) * 10000
print(f"| {name} | {rps} | {p50} | {p90} | {p99} | {f(p50) - f(d50):.3f} | {f(p99) - f(d99):.3f} "
      f"| {per10k(c0, c1):.3f}, {per10k(s0, s1):.3f} | {ic} → {lc}, {is_} → {ls} |")
PY
}

if ((MAX_LOAD)); then
    echo "| path | max req/s | p50 ms | p90 ms | p99 ms | added p50 ms | added p99 ms | CPU s / 10k req (client-side, server-side proxy) | RSS MiB idle → loaded (client-side, server-side) |"
    echo "|---|---|---|---|---|---|---|---|---|"
    read -r rps p50 p90 p99 _ < <(load "$BACKEND")
    D50=$p50
    D99=$p99
    echo "| direct | $rps | $p50 | $p90 | $p99 | – | – | – | – |"
    row "concord (2 sidecars, tcp, mTLS)" "$WEB_UPSTREAM" "$WEB_PID" "$DB_PID"
    row "concord (2 sidecars, http/L7, mTLS)" "$WEBH_UPSTREAM" "$WEBH_PID" "$DBH_PID"
    row "haproxy (2 proxies, tcp, mTLS)" "$HA_CLIENT" "$HA_CLIENT_PID" "$HA_SERVER_PID"
    row "haproxy (2 proxies, http, mTLS)" "$HAH_CLIENT" "$HAH_CLIENT_PID" "$HAH_SERVER_PID"
    row "haproxy (2 proxies, http + forwarded headers, mTLS)" "$HAF_CLIENT" "$HAF_CLIENT_PID" "$HAF_SERVER_PID"
fi

echo
# Fixed rates in ROUNDS rounds: each round measures direct and every row once per rate, for
# RATE_DURATION seconds each, the rows' order rotated from round to round; a row's added
# latency in a round is its percentile minus direct's of that round. The table gives each
# row's medians over the rounds (the machine is noisy: a single 10 s measurement of a p99
# moved by a factor of ten between runs), and each round's added p50 / p99 in order.
for ((round = 0; round < ROUNDS; round++)); do
    for rate in $RATES; do
        read -r rps p50 p99 < <(rate_load "$BACKEND" "$rate" "$RATE_DURATION")
        echo "$rate $round direct $rps $p50 $p99" >>"$WORK/rates.raw"
        for ((i = 0; i < NROWS; i++)); do
            entry=${ENTRIES[$(((i + round) % NROWS))]}
            read -r rps p50 p99 < <(rate_load "${entry#*:}" "$rate" "$RATE_DURATION")
            echo "$rate $round ${entry%%:*} $rps $p50 $p99" >>"$WORK/rates.raw"
        done
    done
done
python3 - "$WORK/rates.raw" <<'PY'
import sys
from statistics import median as med
rows = [l.split() for l in open(sys.argv[1])]
direct = {(r[0], r[1]): r for r in rows if r[2] == "direct"}
print("| path | offered req/s | achieved req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | added p50 / p99 ms per round |")
print("|---|---|---|---|---|---|---|---|")
for rate in dict.fromkeys(r[0] for r in rows):
    for name in dict.fromkeys(r[2] for r in rows):
        mine = [r for r in rows if r[0] == rate and r[2] == name]
        rps, p50, p99 = (med([float(r[k]) for r in mine]) for k in (3, 4, 5))
        if name == "direct":
            print(f"| direct | {rate} | {rps:.0f} | {p50:.3f} | {p99:.3f} | – | – | – |")
            continue
        a50 = [float(r[4]) - float(direct[(rate, r[1])][4]) for r in mine]
        a99 = [float(r[5]) - float(direct[(rate, r[1])][5]) for r in mine]
        each = "; ".join(f"{a:.3f} / {b:.3f}" for a, b in zip(a50, a99))
        print(f"| {name} | {rate} | {rps:.0f} | {p50:.3f} | {p99:.3f} | {med(a50):.3f} | {med(a99):.3f} | {each} |")
PY
