"""Shared by the trust-boundary tests: an echo server on any loopback address (a decoy at
127.0.0.2 is still this machine), a fake Consul, and small helpers."""

import json
import socket
import threading
from http.server import ThreadingHTTPServer

from harness import RegistryHandler, Upstream, _EchoHandler, static_cluster  # noqa: F401


class LoopbackUpstream(Upstream):
    """harness.Upstream on another loopback address (127.0.0.0/8 only: tests never leave the host)."""

    def __init__(self, name, host="127.0.0.2"):
        assert host.startswith("127."), "tests send traffic to loopback only"
        self.host = host
        super().__init__(name)

    @property
    def addr(self):
        return f"{self.host}:{self.port}"

    def start(self):
        server = ThreadingHTTPServer((self.host, self.port), _EchoHandler)
        server.upstream = self
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


class Registry:
    """A fake Consul on 127.0.0.1 answering /v1/health/service/<anything> with `entries`."""

    def __init__(self):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), RegistryHandler)
        self.server.hits = 0
        self.set([])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.addr = f"127.0.0.1:{self.server.server_address[1]}"

    def set(self, entries):
        """entries: [(service id, "ip:port")]."""
        self.server.answer = (200, json.dumps([
            {"Node": {"Node": f"n{i}", "Address": "127.0.0.1"},
             "Service": {"ID": sid, "Service": "web", "Address": addr.rsplit(":", 1)[0],
                         "Port": int(addr.rsplit(":", 1)[1])}}
            for i, (sid, addr) in enumerate(entries)]).encode())

    @property
    def hits(self):
        return self.server.hits

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


