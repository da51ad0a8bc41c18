# Shared by the bench scripts (`source "$(dirname "$0")/../lib.sh"`): a work directory
# removed at exit, with every process whose pid is added to PIDS stopped first; wait_for;
# ok_backend_cfg (an haproxy that answers 200 itself); register (an agent service).

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# Waits until `cmd...` succeeds, up to WAIT_SECS seconds (default 60); on timeout prints
# the tails of the work directory's logs and exits.
wait_for() {
    local deadline=$((SECONDS + ${WAIT_SECS:-60}))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS > deadline)); then
            echo "timed out waiting for: $*" >&2
            tail -n 20 "$WORK"/*.log >&2 || true
            exit 1
        fi
        sleep 0.2
    done
}

# An haproxy configuration for a backend that answers `200 ok` itself on $1:$2 (never the
# bottleneck of what is measured in front of it).
ok_backend_cfg() {
    cat <<CFG
global
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend backend
    bind $1:$2
    http-request return status 200 content-type text/plain string ok
CFG
}

# Registers the agent service definition $1 (JSON) with the agent at $HOST:$AGENT_HTTP.
register() {
    curl -sf -X PUT "http://$HOST:$AGENT_HTTP/v1/agent/service/register" -d "$1" >/dev/null
}
