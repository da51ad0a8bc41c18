#!/usr/bin/env bash
# Records which functions a sidecar executes and writes them to cli/sidecar.order, the
# symbol ordering file the release build hands to LLD (see cli/build.rs): two tcp-mode and
# two http-mode (L7) sidecars run under valgrind's callgrind behind a `concord agent -dev`
# while requests go through both pairs; every function callgrind saw that the binary
# defines is listed, in the binary's current address order.
#
# Usage: bench/proxy/order.sh            (from the repository root, after
#        cargo build --release -p concord && cargo build --release -p concord-bench --bin paced;
#        concord built alone, as `cargo run --release` builds it: building it together with
#        another package unifies other features into its dependencies, which renames many of
#        their functions, and the list would not match the binary users run)
# Env:   CONCORD=target/release/concord PACED=target/release/paced HOST=127.0.46.1
#        PORT_BASE=26400
# Needs: valgrind, haproxy, curl, nm (binutils); installs them with apt-get as root.
set -euo pipefail

HOST=${HOST:-127.0.46.1}
PORT_BASE=${PORT_BASE:-26400}
TARGET=${CARGO_TARGET_DIR:-target}
CONCORD=${CONCORD:-$TARGET/release/concord}
PACED=${PACED:-$TARGET/release/paced}
OUT=${OUT:-cli/sidecar.order}

missing=()
for tool in valgrind haproxy curl nm; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        apt-get install -y valgrind haproxy curl binutils >/dev/null
    else
        echo "missing: ${missing[*]}" >&2
        exit 1
    fi
fi

BACKEND=$PORT_BASE
AGENT_HTTP=$((PORT_BASE + 1))
WAIT_SECS=120 # the sidecars start under valgrind
source "$(dirname "$0")/../lib.sh"

ok_backend_cfg "$HOST" "$BACKEND" >"$WORK/backend.cfg"
haproxy -f "$WORK/backend.cfg" -db >"$WORK/backend.log" 2>&1 &
PIDS+=($!)
"$CONCORD" agent -dev -node order -http-port "$AGENT_HTTP" -dns-port -1 -server-port 0 \
    -serf-lan-port 0 -client "$HOST" -bind "$HOST" >"$WORK/agent.log" 2>&1 &
PIDS+=($!)
wait_for curl -sf "http://$HOST:$AGENT_HTTP/v1/agent/connect/ca/leaf/db"

# One pair per protocol: <name>'s sidecar takes requests on its upstream listener and
# sends them to <name>-db's sidecar, which passes them to the backend.
SIDECARS=()
pair() { # name protocol public_port upstream_port
    local name=$1 protocol=$2 public=$3 upstream=$4
    register "{\"Name\":\"$name-db\",\"Port\":$BACKEND}"
    register "{\"Name\":\"$name\",\"Port\":$((upstream + 50))}"
    register "{\"Kind\":\"connect-proxy\",\"ID\":\"$name-db-sidecar-proxy\",\"Name\":\"$name-db-sidecar-proxy\",
      \"Port\":$public,\"Address\":\"$HOST\",\"Proxy\":{\"DestinationServiceName\":\"$name-db\",
      \"DestinationServiceID\":\"$name-db\",\"LocalServiceAddress\":\"$HOST\",\"LocalServicePort\":$BACKEND,
      \"Config\":{\"bind_address\":\"$HOST\",\"protocol\":\"$protocol\"}}}"
    register "{\"Kind\":\"connect-proxy\",\"ID\":\"$name-sidecar-proxy\",\"Name\":\"$name-sidecar-proxy\",
      \"Port\":$((public + 1)),\"Address\":\"$HOST\",\"Proxy\":{\"DestinationServiceName\":\"$name\",
      \"DestinationServiceID\":\"$name\",\"LocalServiceAddress\":\"$HOST\",\"LocalServicePort\":$((upstream + 50)),
      \"Config\":{\"bind_address\":\"$HOST\",\"protocol\":\"$protocol\"},
      \"Upstreams\":[{\"DestinationName\":\"$name-db\",\"LocalBindAddress\":\"$HOST\",\"LocalBindPort\":$upstream,
      \"Config\":{\"protocol\":\"$protocol\"}}]}}"
    for svc in "$name-db" "$name"; do
        valgrind --tool=callgrind --demangle=no --callgrind-out-file="$WORK/$svc.cg" \
            "$CONCORD" connect proxy -sidecar-for "$svc" -http-addr "$HOST:$AGENT_HTTP" \
            -metrics-addr "$HOST:$((public + 2 + ${#SIDECARS[@]}))" -log-level warn \
            >"$WORK/$svc.log" 2>&1 &
        PIDS+=($!)
        SIDECARS+=($!)
    done
}
pair web tcp $((PORT_BASE + 10)) $((PORT_BASE + 20))
pair webh http $((PORT_BASE + 30)) $((PORT_BASE + 40))

for upstream in $((PORT_BASE + 20)) $((PORT_BASE + 40)); do
    wait_for curl -sf "http://$HOST:$upstream/"
    # Paced requests over 64 connections, then as fast as they go, then the metrics.
    "$PACED" "http://$HOST:$upstream/" 100 5 64 >/dev/null
    "$PACED" "http://$HOST:$upstream/" 2000 5 64 >/dev/null
done
for port in $(seq $((PORT_BASE + 12)) $((PORT_BASE + 15))) $(seq $((PORT_BASE + 32)) $((PORT_BASE + 35))); do
    curl -s "http://$HOST:$port/metrics" >/dev/null || true
done
# A graceful stop, so that callgrind writes its profiles.
for pid in "${SIDECARS[@]}"; do kill -TERM "$pid"; done
for pid in "${SIDECARS[@]}"; do wait "$pid" || true; done

python3 - "$CONCORD" "$OUT" "$WORK"/*.cg <<'PY'
import re, subprocess, sys
binary, out, profiles = sys.argv[1], sys.argv[2], sys.argv[3:]
names = set()
for path in profiles:
    with open(path, errors="replace") as f:
        for line in f:
            m = re.match(r"c?fn=\(\d+\)\s+(\S+)", line)
            if m:
                names.add(m.group(1))
text = {}
for line in subprocess.run(["nm", "--defined-only", binary], capture_output=True,
                           text=True, check=True).stdout.splitlines():
    parts = line.split()
    if len(parts) == 3 and parts[1] in "tTwW":
        text[parts[2]] = int(parts[0], 16)
listed = sorted((n for n in names if n in text), key=text.get)
if len(listed) < 500:
    sys.exit(f"only {len(listed)} functions recorded: did the sidecars serve requests?")
with open(out, "w") as f:
    f.write("".join(n + "\n" for n in listed))
print(f"{out}: {len(listed)} functions", file=sys.stderr)
PY
