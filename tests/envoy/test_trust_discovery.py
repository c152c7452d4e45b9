"""Discovery is a trust boundary (issue 13): a registry answer or an Envoy admin listing that
names Envoy's own admin listener, a loopback address outside `allowed_cidrs`, or a registrant
squatting a configured host's id never gets a request; Envoy's /stats say why.

Every address here is on this machine's loopback: the decoy is a real server on 127.0.0.2, which
`allowed_cidrs: ["127.0.0.1/32"]` leaves out. Link-local, metadata and private forms are proven
natively (tests/discovery.rs), never with traffic."""

import time

from conftest import filter_counters as counters
from conftest import http, wait_for
from trust_support import LoopbackUpstream, Registry, free_port, static_cluster

SECRET = "trust-discovery-secret-0123456789abcdef"
INTERVAL_MS = 300


def skipped(envoy, reason):
    return counters(envoy).get(f"session_router.discovery.skipped.{reason}", 0)


def membership_is(envoy, n, timeout=5):
    ok = wait_for(lambda: counters(envoy).get("session_router.membership.hosts") == n, timeout)
    time.sleep(INTERVAL_MS / 1000)  # every worker picks it up within half an interval
    return ok


def names(envoy, requests):
    """Who answered each request (every answer must be a 200 from an echo server)."""
    seen = []
    for headers in requests:
        status, _, body = http(envoy, "/", headers)
        assert status == 200 and isinstance(body, dict), (status, body)
        seen.append(body["name"])
    return seen


def new_cookies(envoy, n):
    out = []
    for _ in range(n):
        status, headers, body = http(envoy, "/")
        assert status == 200
        cookie = next(v.split(";")[0] for k, v in headers if k == "set-cookie")
        out.append((cookie, body["name"]))
    return out


def test_consul_answer_with_admin_decoy_and_squatter_in_original_dst_mode(upstreams, start_envoy):
    ups = upstreams(3)
    (squatter,) = upstreams(1)
    decoy = LoopbackUpstream("decoy", "127.0.0.2")
    registry = Registry()
    admin_port = free_port()
    good = [("backend-0", ups[0].addr), ("web-1", ups[1].addr), ("web-2", ups[2].addr)]
    registry.set(good)
    config = {
        "hosts": [{"address": ups[0].addr, "id": "backend-0"}],
        "sources": [{"type": "header", "name": "x-user-id"}],
        "sticky_cookie": {"name": "srv", "ttl_seconds": 3600, "secret": SECRET, "secure": False},
        "target": {"header": "x-envoy-original-dst-host"},
        "discovery": {"type": "json", "cluster": "consul", "path": "/v1/health/service/web?passing",
                      "format": "consul", "interval_ms": INTERVAL_MS,
                      "allowed_cidrs": ["127.0.0.1/32"], "denied_ports": [admin_port]},
    }

    def edit(c):
        c["admin"]["address"]["socket_address"]["port_value"] = admin_port
        c["static_resources"]["clusters"].append(static_cluster("consul", registry.addr))

    try:
        envoy = start_envoy("original_dst", config, edit=edit)
        assert membership_is(envoy, 3)
        sessions = new_cookies(envoy, 90)
        on_backend0 = [c for c, name in sessions if name == ups[0].name]
        assert on_backend0, "no session landed on backend-0"

        # The registry now also names Envoy's admin listener, a decoy on 127.0.0.2 and a
        # registrant squatting backend-0's id.
        registry.set(good + [("envoy-admin", f"127.0.0.1:{admin_port}"), ("decoy", decoy.addr),
                             ("backend-0", squatter.addr)])
        hits = registry.hits
        assert wait_for(lambda: registry.hits >= hits + 3, 5)
        assert membership_is(envoy, 3)
        requests = [[("cookie", c)] for c, _ in sessions] + [[("x-user-id", f"u{i}")] for i in range(150)]
        requests += [[] for _ in range(60)]
        answered = names(envoy, requests)
        assert set(answered) <= {u.name for u in ups}
        assert names(envoy, [[("cookie", c)] for c in on_backend0]) == [ups[0].name] * len(on_backend0)
        assert decoy.requests == [] and squatter.requests == []
        reasons = {r: skipped(envoy, r) for r in ("denied_port", "loopback", "id_collision")}
        assert reasons == {"denied_port": 1, "loopback": 1, "id_collision": 1}, reasons
        log = envoy.log_text()
        assert log.count(f"127.0.0.1:{admin_port} (\"envoy-admin\") left out: denied_port") == 1, "logged once"
        assert f"{decoy.addr} (\"decoy\") left out: loopback" in log

        # backend-0 leaves the registry while the squatter keeps claiming its id: backend-0's
        # sessions move to their ring successors, never to the squatter.
        registry.set(good[1:] + [("backend-0", squatter.addr), ("decoy", decoy.addr)])
        assert membership_is(envoy, 2)
        moved = names(envoy, [[("cookie", c)] for c in on_backend0])
        assert set(moved) <= {ups[1].name, ups[2].name}, moved
        assert decoy.requests == [] and squatter.requests == []
        print(f"consul: {len(requests) + 2 * len(on_backend0)} requests, 0 to admin/decoy/squatter; "
              f"skipped {reasons}")
    finally:
        registry.stop()
        decoy.stop()


def test_envoy_admin_listing_with_its_own_admin_and_a_decoy(upstreams, start_envoy):
    ups = upstreams(3)
    decoy = LoopbackUpstream("decoy", "127.0.0.2")
    admin_port = free_port()
    admin = f"127.0.0.1:{admin_port}"
    config = {
        "hosts": [{"address": ups[0].addr, "id": "backend-0"}],
        "sources": [{"type": "header", "name": "x-user-id"}],
        "sticky_cookie": {"name": "srv", "ttl_seconds": 3600, "secret": SECRET, "secure": False},
        "target": {"header": "x-gateway-destination-endpoint", "fallbacks": 1},
        "discovery": {"type": "envoy_admin", "cluster": "envoy_admin", "target_cluster": "backends",
                      "interval_ms": INTERVAL_MS, "allowed_cidrs": ["127.0.0.1/32"],
                      "denied_ports": [admin_port]},
    }

    def edit(c):
        c["admin"]["address"]["socket_address"]["port_value"] = admin_port
        c["static_resources"]["clusters"].append(static_cluster("envoy_admin", admin))

    try:
        # `backends` itself lists the admin listener and the decoy: Envoy's view includes them.
        envoy = start_envoy("override_host", config, [u.addr for u in ups] + [admin, decoy.addr], edit=edit)
        assert membership_is(envoy, 3)
        answered = names(envoy, [[("x-user-id", f"u{i}")] for i in range(200)] + [[] for _ in range(100)])
        assert set(answered) == {u.name for u in ups}
        assert decoy.requests == []
        c = counters(envoy)
        assert skipped(envoy, "denied_port") == 1 and skipped(envoy, "loopback") == 1, c
        assert "admin/" not in "".join(answered)
        print(f"envoy_admin: 300 requests, 0 to admin/decoy; skipped denied_port=1 loopback=1")
    finally:
        decoy.stop()
