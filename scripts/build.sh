#!/usr/bin/env bash
# Builds the filter's module and prints its path (cargo's output goes to stderr), so a script can
# write `wasm=$(bash scripts/build.sh)`. The one build command of the repository: the rule lives in
# scripts/srdev.py, which the Python tests, benchmarks and scripts use directly.
#   bash scripts/build.sh            # release: target/wasm32-wasip1/release/session_router.wasm
#   bash scripts/build.sh --fault    # the test-only fault-injection build, in target/fault/
# $SESSION_ROUTER_WASM ($SESSION_ROUTER_FAULT_WASM with --fault) names a prebuilt module instead:
# then nothing is built and that path is printed.
set -euo pipefail
exec python3 "$(dirname "${BASH_SOURCE[0]}")/srdev.py" build "$@"
