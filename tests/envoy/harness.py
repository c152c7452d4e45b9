"""Machinery for running the filter in a real Envoy against real upstream servers, with no
pytest in it: the integration tests (through conftest.py) and scripts/demo.py both use it.

`Upstream`: an echo server on 127.0.0.1. `render_config`: one of the example configs from
envoy/ ready to run. `Envoy`: a running Envoy with that config. `http`: one request to it.
`find_envoy` / `wasm_path`: where the Envoy binary and the filter's release build are.
"""

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
MODES = ("original_dst", "override_host", "stateful_session")
LOG_TAIL_LINES = 80
READY_TIMEOUT_S = 30


def find_envoy():
    """The Envoy binary: $ENVOY_BIN, else `envoy` on PATH; None when neither is set."""
    return os.environ.get("ENVOY_BIN") or shutil.which("envoy")


def wasm_path() -> Path:
    """Where the filter's release build is ($SESSION_ROUTER_WASM overrides); it may not exist."""
    default = REPO / "target/wasm32-wasip1/release/session_router.wasm"
    return Path(os.environ.get("SESSION_ROUTER_WASM") or default).resolve()


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


class Envoy:
    """A running Envoy: the config dict is written to workdir/envoy.yaml and Envoy's
    output to workdir/envoy.log. Call wait_ready() before sending requests and stop()
    when done.

    binary: the Envoy executable; None looks it up with find_envoy().
    url / admin_url: "http://127.0.0.1:<port>"; port: the listener's port.
    """

    def __init__(self, mode, config, workdir, concurrency=2, log_level="warning", extra_args=(), binary=None):
        binary = binary or find_envoy()
        if not binary:
            raise FileNotFoundError("no Envoy binary: set ENVOY_BIN or put `envoy` on PATH")
        self.mode = mode
        workdir = Path(workdir)
        self.config_path = workdir / "envoy.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "envoy.log"
        self._admin_address_path = workdir / "admin_address"
        command = [
            binary, "-c", str(self.config_path),
            "--concurrency", str(concurrency), "-l", log_level,
            # The filter's own lines (wasm component) at debug, Envoy's start-up listing left out.
            "--component-log-level", "wasm:debug",
            # No hot restart: no shared memory, so no --base-id to keep unique
            # (and nothing left in /dev/shm); any number of instances can run.
            "--disable-hot-restart",
            "--admin-address-path", str(self._admin_address_path),
            *extra_args,
        ]
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
        self.admin_url = self.url = None
        self.port = None

    def wait_ready(self):
        """Wait until admin /ready says LIVE and the listener accepts connections."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"Envoy exited with status {self._process.returncode}")
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
        raise TimeoutError(f"Envoy not ready after {READY_TIMEOUT_S}s")

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
