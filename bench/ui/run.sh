#!/usr/bin/env bash
# Web UI bench: load time of the services view with 1,000 services in headless Chromium.
# Builds concord (debug by default, PROFILE=release for a release build) and the bench,
# then prints a markdown table (docs/benchmarks.md, section "Web UI").
#
# Usage: bench/ui/run.sh [SERVICES] [RUNS]      (from the repository root)
# Needs: chromium and chromium-driver (Debian packages).
set -euo pipefail
PROFILE=${PROFILE:-debug}
TARGET=${CARGO_TARGET_DIR:-target}
flag=()
[[ $PROFILE == release ]] && flag=(--release)
cargo build -q "${flag[@]}" -p concord --bin concord
cargo build -q "${flag[@]}" -p concord-bench --bin ui_load
CONCORD_BIN=$TARGET/$PROFILE/concord "$TARGET/$PROFILE/ui_load" "$@"
