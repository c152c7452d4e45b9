"""Machinery for running the filter in a real Envoy against real upstream servers, with no
pytest in it: the Envoy tests (through conftest.py), scripts/demo.py and scripts/soak.py use it.

`Upstream`: an echo server on 127.0.0.1. `render_config`: one of the example configs from
envoy/ ready to run. `Envoy`: a running Envoy with that config, and `envoy_bin` / `wasm_path`:
where the Envoy binary and the filter's build are (both from scripts/srdev.py, the one place
that knows). `http`: one request to Envoy.
"""

import json
import os
import socket
import sys
import threading
import time
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from srdev import LOG_TAIL_LINES, READY_TIMEOUT_S, REPO, Envoy, envoy_bin, wasm_path  # noqa: E402

__all__ = [
    "LOG_TAIL_LINES", "MODES", "READY_TIMEOUT_S", "REPO", "Envoy", "RegistryHandler", "Upstream", "envoy_bin",
    "example_filter_config", "filter_counters", "filter_plugin", "http", "render_config", "static_cluster",
    "wait_for", "wasm_path", "write_eds",
]

MODES = ("original_dst", "override_host", "stateful_session")


def render_config(mode, wasm, filter_config=None, upstream_addrs=None):
    """envoy/<mode>.yaml as a dict, with the wasm path made absolute and the
    listener and admin ports set to 0 (the OS picks free ones).

    filter_config (a dict) replaces the filter's JSON configuration, and
    upstream_addrs ("ip:port" strings) replace the endpoints of the `backends`
    cluster; None keeps what the example file has. ORIGINAL_DST has no
    endpoint list, so upstream_addrs does not apply to it.
    """
    config = yaml.safe_load((REPO / "envoy" / f"{mode}.yaml").read_text())
    config["admin"]["address"]["socket_address"]["port_value"] = 0
    (listener,) = config["static_resources"]["listeners"]
    listener["address"]["socket_address"]["port_value"] = 0
    plugin = filter_plugin(config)
    plugin["vm_config"]["code"]["local"]["filename"] = str(wasm)
    if filter_config is not None:
        plugin["configuration"]["value"] = json.dumps(filter_config)
    (cluster,) = [c for c in config["static_resources"]["clusters"] if c["name"] == "backends"]
    if upstream_addrs is not None and "load_assignment" in cluster:
        cluster["load_assignment"]["endpoints"] = [{"lb_endpoints": [_endpoint(a) for a in upstream_addrs]}]
    return config


def filter_plugin(config):
    """The wasm filter's `config` block (name, configuration, vm_config) in an Envoy config dict."""
    (listener,) = config["static_resources"]["listeners"]
    http_filters = listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
    (plugin,) = [f["typed_config"]["config"] for f in http_filters if f["name"] == "envoy.filters.http.wasm"]
    return plugin


def example_filter_config(mode):
    """The filter's own JSON configuration in envoy/<mode>.yaml, as a dict."""
    config = yaml.safe_load((REPO / "envoy" / f"{mode}.yaml").read_text())
    return json.loads(filter_plugin(config)["configuration"]["value"])


def _endpoint(addr):
    host, port = addr.rsplit(":", 1)
    return {"endpoint": {"address": {"socket_address": {"address": host, "port_value": int(port)}}}}


class Upstream:
    """An HTTP/1.1 server on 127.0.0.1 (ThreadingHTTPServer in a thread).

    It answers every request with 200 and the JSON
    {"name", "port", "method", "path", "headers"}, where headers maps each
    lowercased request header name to its value, or to a list of values when
    the header came more than once. Each such dict is also appended to
    `requests`. Request bodies are read (by content-length) and dropped.
    """

    def __init__(self, name):
        self.name = name
        self.port = 0
        self.requests = []
        # Seconds each answer waits before it is sent (a slow backend); 0 answers at once.
        self.delay = 0.0
        self._server = None
        self._connections = set()
        self._lock = threading.Lock()
        self.start()

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        """Listen again, on the same port as before."""
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _EchoHandler)
        server.upstream = self
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"upstream-{self.name}", daemon=True
        ).start()

    def stop(self):
        """Close the listening socket and every open connection, so the port
        refuses new connections and pooled ones are reset. Safe to call twice."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server = None
        with self._lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:  # already closed by the peer
                pass

    def _track(self, connection, is_open):
        with self._lock:
            if is_open:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)


class _EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.server.upstream._track(self.connection, True)

    def finish(self):
        self.server.upstream._track(self.connection, False)
        super().finish()

    def _echo(self):
        upstream = self.server.upstream
        self.rfile.read(int(self.headers.get("content-length", 0)))
        values = {}
        for name, value in self.headers.items():
            values.setdefault(name.lower(), []).append(value)
        seen = {
            "name": upstream.name,
            "port": upstream.port,
            "method": self.command,
            "path": self.path,
            "headers": {name: v[0] if len(v) == 1 else v for name, v in values.items()},
        }
        upstream.requests.append(seen)
        if upstream.delay > 0:
            time.sleep(upstream.delay)
        body = json.dumps(seen).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _echo

    def log_message(self, format, *args):
        pass


def http(envoy, path, headers=(), method="GET", body=None, timeout=10):
    """Send one HTTP/1.1 request to envoy's listener on a new connection.

    headers is a sequence of (name, value) pairs sent exactly as given, so a
    name may repeat (two `cookie` headers, two copies of one header). Returns
    (status, response headers as a list of (lowercased name, value) pairs
    with every set-cookie kept, body parsed as JSON or else as text).
    """
    if isinstance(body, str):
        body = body.encode()
    connection = HTTPConnection("127.0.0.1", envoy.port, timeout=timeout)
    try:
        has_host = any(name.lower() == "host" for name, _ in headers)
        connection.putrequest(method, path, skip_host=has_host, skip_accept_encoding=True)
        for name, value in headers:
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("content-length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        raw = response.read()
        response_headers = [(name.lower(), value) for name, value in response.getheaders()]
    finally:
        connection.close()
    try:
        content = json.loads(raw)
    except ValueError:
        content = raw.decode(errors="replace")
    return response.status, response_headers, content


def filter_counters(envoy):
    """The filter's metrics by their documented names (Envoy files them under `wasmcustom.`)."""
    prefix = "wasmcustom."
    return {k[len(prefix):]: v for k, v in envoy.stats().items() if k.startswith(prefix + "session_router.")}


def wait_for(predicate, timeout, step=0.05):
    """Poll `predicate` until it is true or `timeout` seconds pass; returns whether it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def static_cluster(name, address):
    """A STATIC cluster `name` with one endpoint at `address` ("ip:port")."""
    host, port = address.rsplit(":", 1)
    return {"name": name, "type": "STATIC", "connect_timeout": "1s", "load_assignment": {
        "cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": host, "port_value": int(port)}}}}]}]}}


def write_eds(path, cluster, addrs):
    """Atomically replace the EDS file Envoy watches (write, then rename into place); each
    endpoint's hostname `pod-<port>` becomes its host id."""
    resource = {
        "@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
        "cluster_name": cluster,
        "endpoints": [{"lb_endpoints": [
            {"endpoint": {"hostname": f"pod-{a.rsplit(':', 1)[1]}", "address": {"socket_address": {
                "address": "127.0.0.1", "port_value": int(a.rsplit(":", 1)[1])}}}} for a in addrs]}],
    }
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump({"resources": [resource]}))
    os.rename(tmp, path)


class RegistryHandler(BaseHTTPRequestHandler):
    """A fake registry (Consul): answers every GET with `server.answer` = (status, body bytes)
    and counts them in `server.hits`."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):
        status, body = self.server.answer
        self.server.hits += 1
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass
