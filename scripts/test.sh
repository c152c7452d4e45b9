#!/usr/bin/env bash
# The whole test suite: lint, native unit/property tests, the release .wasm, the Envoy tests that
# run it inside a real Envoy against real upstream servers, and the artifact tests (JSON Schema,
# Istio and Envoy Gateway manifests, dashboard, OCI image). Installs what it lacks first
# (scripts/setup.sh: the wasm target, the Python packages of tests/requirements.txt).
#   bash scripts/test.sh            # everything
#   SKIP_LINT=1 bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

source scripts/setup.sh
setup_all

if [ -z "${SKIP_LINT:-}" ]; then
  step "cargo fmt --check"
  cargo fmt --all -- --check
  step "cargo clippy (native and wasm32-wasip1)"
  cargo clippy --workspace --all-targets -- -D warnings
  cargo clippy --lib --target wasm32-wasip1 -- -D warnings
  step "layering: only src/filter/ calls proxy-wasm; no import cycle in the core"
  python3 scripts/check-layering.py
fi

step "native tests"
cargo test --all-targets

step "release build"
wasm=$(bash scripts/build.sh)
printf 'session_router.wasm: %s bytes\n' "$(wc -c < "$wasm")"

step "Envoy tests ($("$ENVOY_BIN" --version | grep -o 'version: [^ ]*'))"
python3 -m pytest -q tests/envoy

step "artifacts: JSON Schema, Istio and Envoy Gateway manifests, dashboard, OCI image"
python3 -m pytest -q tests/artifacts
