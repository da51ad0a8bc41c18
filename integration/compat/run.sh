#!/usr/bin/env bash
# Runs the client-compatibility suites against a concord binary:
#   - py/   : the real py-consul package (PyPI) under pytest
#   - node/ : the real npm `consul` package (silas/node-consul) under `node --test`
#
# Usage:  CONCORD_BIN=/path/to/concord integration/compat/run.sh [py|node]...
# Installs what is missing: a venv with py-consul + pytest under
# ${COMPAT_CACHE:-$HOME/.cache/concord-compat}, and `npm install` in node/.
# Exits non-zero if any suite fails.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${COMPAT_CACHE:-$HOME/.cache/concord-compat}"

if [[ -z "${CONCORD_BIN:-}" ]]; then
  echo "error: set CONCORD_BIN to the concord binary (e.g. target/debug/concord)" >&2
  exit 2
fi
if [[ ! -x "$CONCORD_BIN" ]]; then
  echo "error: CONCORD_BIN=$CONCORD_BIN is not executable" >&2
  exit 2
fi
CONCORD_BIN="$(cd "$(dirname "$CONCORD_BIN")" && pwd)/$(basename "$CONCORD_BIN")"
export CONCORD_BIN

# The suites talk to agents on loopback: never through a proxy from the environment (pip and
# npm still use it to reach their registries).
no_proxy="127.0.0.1,localhost,::1${no_proxy:+,$no_proxy}${NO_PROXY:+,$NO_PROXY}"
export no_proxy NO_PROXY="$no_proxy"

suites=("$@")
[[ ${#suites[@]} -eq 0 ]] && suites=(py node)

# The py-consul release these tests were written against; override to try another.
py_consul_version="${PY_CONSUL_VERSION:-1.8.0}"

run_py() {
  local venv="$cache/venv"
  if [[ ! -x "$venv/bin/python" ]]; then
    mkdir -p "$cache"
    python3 -m venv "$venv"
  fi
  if ! "$venv/bin/python" - "$py_consul_version" >/dev/null 2>&1 <<'PY'
import importlib.metadata as m, sys
import consul, pytest  # noqa: F401
sys.exit(m.version("py-consul") != sys.argv[1])
PY
  then
    "$venv/bin/pip" install --quiet --disable-pip-version-check "py-consul==$py_consul_version" pytest
  fi
  echo "== py-consul $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("py-consul"))')"
  (cd "$here/py" && "$venv/bin/python" -m pytest -p no:cacheprovider -q -rfE test_py_consul.py)
}

run_node() {
  if [[ ! -d "$here/node/node_modules/consul" ]]; then
    (cd "$here/node" && npm install --no-audit --no-fund --loglevel=error)
  fi
  echo "== npm consul $(node -p 'require("'"$here"'/node/node_modules/consul/package.json").version')"
  (cd "$here/node" && node --test --test-concurrency=1 test_node_consul.mjs)
}

status=0
for s in "${suites[@]}"; do
  case "$s" in
    py) run_py || status=1 ;;
    node) run_node || status=1 ;;
    *) echo "unknown suite: $s (expected py or node)" >&2; exit 2 ;;
  esac
done
exit "$status"
