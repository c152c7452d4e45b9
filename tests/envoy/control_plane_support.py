"""What the control-plane tests (test_control_plane_envoy_gateway.py, test_control_plane_istio.py)
share: the golden Envoy Gateway output, file-based xDS, a `proxy` fixture that starts Envoys with
the environment a control plane gives them, and a `module_server` fixture serving the release
module over HTTP the way Envoy Gateway's Wasm cache does."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from conftest import REPO, Envoy, envoy_bin, http, require_wasm

GOLDEN = Path(__file__).resolve().parent / "golden" / "envoy-gateway"
EG_DIR = REPO / "envoy" / "envoy-gateway"
ISTIO_DIR = REPO / "envoy" / "istio"
SECRET_ENV = "SESSION_ROUTER_SECRET"
SECRET = "control-plane-secret-0123456789abcdef-0123"
HOST = "shop.example.com"
HEADER = "x-gateway-destination-endpoint"


def golden(name):
    return yaml.safe_load((GOLDEN / name).read_text())


def _keys(node, prefix=""):
    """Every key path of a nested dict/list (list items merged), for shape comparisons."""
    out = set()
    if isinstance(node, dict):
        for k, v in node.items():
            out.add(prefix + k)
            out |= _keys(v, prefix + k + ".")
    elif isinstance(node, list):
        for v in node:
            out |= _keys(v, prefix + "[].")
    return out


def write_resources(path: Path, resources):
    """A DiscoveryResponse file for a path_config_source, replaced by atomic rename."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"version_info": str(time.monotonic_ns()), "resources": resources}))
    os.rename(tmp, path)


def path_source(path: Path):
    return {"pathConfigSource": {"path": str(path)}, "resourceApiVersion": "V3"}


class Proxy:
    """Starts Envoy processes for one test and stops them afterwards."""

    def __init__(self, tmp_path, monkeypatch):
        self.tmp_path, self.monkeypatch, self.started = tmp_path, monkeypatch, []

    def start(self, label, config, concurrency=2, env=None):
        for name, value in (env or {}).items():
            self.monkeypatch.setenv(name, value)  # the Envoy process inherits it
        workdir = self.tmp_path / f"envoy{len(self.started)}-{label}"
        workdir.mkdir()
        envoy = Envoy(label, config, workdir, concurrency, "warning", binary=envoy_bin())
        self.started.append(envoy)
        envoy.wait_ready()
        return envoy

    def stop(self):
        for envoy in self.started:
            envoy.stop()


@pytest.fixture
def proxy(tmp_path, monkeypatch, request):
    p = Proxy(tmp_path, monkeypatch)
    yield p
    p.stop()
    for envoy in p.started:  # shown by pytest only when the test failed
        print(f"---- {envoy.log_path}\n{envoy.log_tail()}")


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def module_server(tmp_path):
    """The release module served over HTTP on loopback, named by its sha256 like Envoy Gateway's
    Wasm cache does: (uri, sha256, port)."""
    wasm = require_wasm()
    root = tmp_path / "wasm-cache"
    root.mkdir()
    data = wasm.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    (root / f"{sha}.wasm").write_bytes(data)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietFiles, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    yield f"http://127.0.0.1:{port}/{sha}.wasm", sha, port
    server.shutdown()


def served(envoy, path, headers=()):
    status, response_headers, body = http(envoy, path, [("host", HOST), *headers], timeout=10)
    cookies = [v for k, v in response_headers if k == "set-cookie"]
    return status, body if isinstance(body, dict) else {}, cookies
