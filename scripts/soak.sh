#!/usr/bin/env bash
# Soak: a real Envoy (4 workers, envoy/override_host.yaml loaded as a file-based LDS resource)
# running the release filter under steady churning traffic (new, returning, tampered and expired
# sticky cookies, header and JWT keys), a filter-config reload every minute, and one backend
# restarted in the middle. Prints Envoy's RSS and the wasm VMs' memory at start and end, VM
# restarts, reloads applied and failed requests; exits non-zero on a failure outside the restart
# window, a VM restart, a reload not applied, or RSS growth past the documented threshold
# (see scripts/soak.py).
#   bash scripts/soak.sh              # 10 minutes, a reload every 60 s
#   bash scripts/soak.sh --short      # ~45 s, a reload every 15 s (CI)
#   bash scripts/soak.sh --rate 100 --duration 3600
#   bash scripts/soak.sh --churn [--short]   # membership churn: two filters, hosts replaced on both
# Envoy and the module as scripts/srdev.py finds them ($ENVOY_BIN; $SESSION_ROUTER_WASM, else the
# release build, built here by scripts/build.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/build.sh >/dev/null
exec python3 scripts/soak.py "$@"
