#!/usr/bin/env bash
# The filter in a real Envoy, end to end: builds the release .wasm, starts three echo backends
# and Envoy with envoy/override_host.yaml, and prints a short story (a sticky cookie, users
# sticking by header and JWT, a forged override header ignored, a backend stopped while its
# sessions fail over, the filter's counters). Exits non-zero if any step does not hold.
# Installs what it lacks first (scripts/setup.sh: the wasm target, Envoy 1.40 and the Python
# packages of tests/requirements.txt).
#   bash scripts/demo.sh                  # the story, then everything is stopped
#   bash scripts/demo.sh --keep-running   # then leave Envoy up for your own curl, until Ctrl-C
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

source scripts/setup.sh
setup_all
bash scripts/build.sh >/dev/null

echo "==> python3 scripts/demo.py $*"
exec python3 scripts/demo.py "$@"
