#!/usr/bin/env bash
# Builds the release .wasm and packs it into the OCI image Istio's WasmPlugin/TrafficExtension pull:
# FROM scratch, one layer, /plugin.wasm. Uses the local Docker engine; nothing is pulled.
#
#   bash oci/build.sh                        # image session-router:dev
#   bash oci/build.sh registry.example.com/session-router:0.1.0
#   IMAGE=my/tag bash oci/build.sh
#   SKIP_CARGO=1 bash oci/build.sh           # pack the .wasm already built
#   SESSION_ROUTER_WASM=path.wasm bash oci/build.sh   # pack another build (implies SKIP_CARGO)
#
# Then: docker push <tag>, and use `url: oci://<tag>` in the manifests under envoy/istio/.
set -euo pipefail
cd "$(dirname "$0")/.."

tag="${1:-${IMAGE:-session-router:dev}}"
# The module as scripts/build.sh builds it (nothing is built when SESSION_ROUTER_WASM names one).
if [ -z "${SKIP_CARGO:-}" ]; then
  wasm=$(bash scripts/build.sh)
else
  wasm=$(python3 scripts/srdev.py wasm)
fi
if [ ! -s "$wasm" ]; then
  echo "oci/build.sh: $wasm not found; build it with bash scripts/build.sh" >&2
  exit 1
fi
version="$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)"

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp oci/Dockerfile "$context/Dockerfile"
cp "$wasm" "$context/plugin.wasm"

docker build --build-arg "VERSION=${version:-dev}" -t "$tag" "$context"

printf 'built %s: plugin.wasm %s bytes, sha256 %s\n' "$tag" "$(wc -c < "$wasm" | tr -d ' ')" \
  "$(sha256sum "$wasm" | cut -d' ' -f1)"
echo "WasmPlugin/TrafficExtension 'sha256' pins the image manifest digest: read it after 'docker push $tag'"
echo "(docker inspect --format '{{index .RepoDigests 0}}' $tag)."
