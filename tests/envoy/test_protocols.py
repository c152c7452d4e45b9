"""HTTP/1.1 and HTTP/2 clients, and several workers: the same session lands on the same host
whichever protocol carries it and whichever worker takes it."""

import json
import re
import shutil
import subprocess

import pytest
from conftest import http

SECRET = "protocols-secret-0123456789abcdef012"


def config(ups):
    return {
        "hosts": [{"address": u.addr} for u in ups],
        "sources": [{"type": "cookie", "name": "JSESSIONID"}, {"type": "header", "name": "x-user-id"}],
        "sticky_cookie": {"name": "srv", "ttl_seconds": 3600, "secret": SECRET, "secure": False},
        "target": {"header": "x-gateway-destination-endpoint", "fallbacks": 1},
    }


def curl_h2(envoy, headers):
    """One HTTP/2 (prior knowledge, cleartext) request; each header is sent as its own field,
    so two `cookie` headers arrive crumbled as HTTP/2 allows."""
    if not shutil.which("curl"):
        pytest.skip("curl not installed")
    args = ["curl", "-sS", "--http2-prior-knowledge", "-D", "-", f"{envoy.url}/"]
    for name, value in headers:
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=10, check=True).stdout
    head, _, body = out.partition("\n\n")
    assert head.startswith("HTTP/2 200"), head
    cookies = re.findall(r"^set-cookie: ([^;]+)", head, flags=re.M | re.I)
    return json.loads(body)["name"], cookies


def test_http2_crumbled_cookies_find_the_session(upstreams, start_envoy):
    ups = upstreams(3)
    envoy = start_envoy("override_host", config(ups), [u.addr for u in ups])
    for i in range(10):
        sid = f"session-{i}"
        _, _, h1 = http(envoy, "/", [("cookie", f"a=1; JSESSIONID={sid}; b=2")])
        h2_host, _ = curl_h2(envoy, [("cookie", "a=1"), ("cookie", f"JSESSIONID={sid}"), ("cookie", "b=2")])
        assert h2_host == h1["name"], sid
    # A sticky cookie issued over HTTP/1.1 pins over HTTP/2, in a crumbled cookie header too.
    status, headers, body = http(envoy, "/")
    sticky = next(v.split(";")[0] for k, v in headers if k == "set-cookie")
    for _ in range(5):
        host, cookies = curl_h2(envoy, [("cookie", "x=1"), ("cookie", sticky), ("cookie", "y=2")])
        assert host == body["name"] and cookies == []


def test_one_session_one_host_whichever_worker_takes_it(upstreams, start_envoy):
    ups = upstreams(3)
    envoy = start_envoy("override_host", config(ups), [u.addr for u in ups], concurrency=4)
    status, headers, body = http(envoy, "/")
    sticky = next(v.split(";")[0] for k, v in headers if k == "set-cookie")
    hosts = set()
    for i in range(60):  # every request on a new connection, spread over the workers
        hosts.add(http(envoy, "/", [("cookie", sticky)])[2]["name"])
        hosts.add(http(envoy, "/", [("x-user-id", "alice")])[2]["name"] + "/alice")
    assert len([h for h in hosts if not h.endswith("/alice")]) == 1
    assert len([h for h in hosts if h.endswith("/alice")]) == 1
    per_worker = [v for k, v in envoy.stats().items() if re.search(r"worker_\d+\.downstream_cx_total$", k)]
    busy = [v for v in per_worker if v > 0]
    assert len(busy) >= 2, f"connections per worker: {per_worker}"
