"""No backend address in responses (issue 13). Envoy's header-based stateful session writes
base64(upstream address) into the *response* whenever it served another host than the one the
request named — on every failover. The filter removes its target header from every response, in
every mode. Here the pinned backend dies (Envoy's outlier detection then serves its sessions
elsewhere, so Envoy does write the header) and no response carries any backend address in any
header, plain or base64. A control run with the filter placed after the stateful-session filter
(where it cannot see that header) shows Envoy does write it."""

import base64

from conftest import http, wait_for
from harness import filter_plugin  # noqa: F401

SECRET = "trust-response-secret-0123456789abcdef01"


def filter_config(ups):
    return {
        "hosts": [{"address": u.addr, "id": f"backend-{i}"} for i, u in enumerate(ups)],
        "sources": [{"type": "header", "name": "x-user-id"}],
        "sticky_cookie": {"name": "srv", "ttl_seconds": 3600, "secret": SECRET, "secure": False},
        "target": {"header": "x-session-router-host", "encoding": "base64"},
        "health": {"passive": {"consecutive_failures": 3, "ejection_seconds": 30}},
    }


def with_outlier_detection(filter_after_stateful_session=False):
    def edit(config):
        (cluster,) = [c for c in config["static_resources"]["clusters"] if c["name"] == "backends"]
        cluster["outlier_detection"] = {"consecutive_5xx": 1, "consecutive_gateway_failure": 1,
                                        "interval": "0.1s", "base_ejection_time": "30s",
                                        "max_ejection_percent": 100}
        if filter_after_stateful_session:
            (listener,) = config["static_resources"]["listeners"]
            filters = listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
            wasm = filters.pop(0)
            filters.insert(1, wasm)
    return edit


def leaks(response, ups):
    forms = set()
    for u in ups:
        forms |= {u.addr, base64.b64encode(u.addr.encode()).decode(), str(u.port)}
    return [(k, v) for k, v in response if k == "x-session-router-host" or any(f in v for f in forms)]


def run(envoy, ups):
    """A session pinned by cookie, its backend killed, then requests until it is served elsewhere."""
    status, response, body = http(envoy, "/")
    assert status == 200
    cookie = next(v.split(";")[0] for k, v in response if k == "set-cookie")
    pinned = next(u for u in ups if u.name == body["name"])
    seen = [response]
    pinned.stop()
    served = []

    def one():
        status, response, body = http(envoy, "/", [("cookie", cookie), ("x-user-id", "alice")])
        seen.append(response)
        served.append((status, body.get("name") if isinstance(body, dict) else None))
        return status == 200

    assert wait_for(lambda: one() and one(), 10, step=0.1), served
    for _ in range(20):
        one()
    return seen, served, pinned


def test_no_backend_address_in_any_response_header_after_a_failover(upstreams, start_envoy):
    ups = upstreams(3)
    envoy = start_envoy("stateful_session", filter_config(ups), [u.addr for u in ups], edit=with_outlier_detection())
    seen, served, pinned = run(envoy, ups)
    found = [leak for response in seen for leak in leaks(response, ups)]
    print(f"stateful_session failover: {len(seen)} responses, {sum(s == 200 for s, _ in served)} served "
          f"by a successor, backend addresses in headers: {len(found)}")
    assert found == []
    assert {n for s, n in served if s == 200} <= {u.name for u in ups if u is not pinned}


def test_control_envoy_writes_the_address_when_the_filter_cannot_remove_it(upstreams, start_envoy):
    ups = upstreams(3)
    envoy = start_envoy("stateful_session", filter_config(ups), [u.addr for u in ups],
                        edit=with_outlier_detection(filter_after_stateful_session=True))
    status, response, _ = http(envoy, "/")
    seen = [response]
    for i in range(10):
        seen.append(http(envoy, "/", [("x-user-id", f"u{i}")])[1])
    found = [leak for response in seen for leak in leaks(response, ups)]
    print(f"control (filter after stateful_session): {len(found)} headers carry a backend address")
    assert found, "Envoy wrote no address: the main test above would prove nothing"
