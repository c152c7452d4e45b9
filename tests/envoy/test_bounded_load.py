"""Bounded load in a real Envoy: one backend made slow while new sessions keep arriving. New
sessions stop landing on it while it is over the bound, no existing session moves, and the
sessions that spilled stay where they landed."""

import threading
from concurrent.futures import ThreadPoolExecutor

from conftest import filter_counters as counters
from conftest import http

SECRET = "bounded-load-secret-0123456789abcdef"
IDS = ["backend-a", "backend-b", "backend-c"]


def config(ups, bounded=True):
    cfg = {
        "hosts": [{"address": u.addr, "id": IDS[i]} for i, u in enumerate(ups)],
        "sources": [{"type": "header", "name": "x-user-id"}],
        "sticky_cookie": {"name": "srv", "ttl_seconds": 3600, "secret": SECRET, "secure": False},
        "target": {"header": "x-gateway-destination-endpoint", "encoding": "plain", "fallbacks": 2},
    }
    if bounded:
        cfg["bounded_load"] = {"factor": 1.25}
    return cfg


def request(envoy, headers):
    status, response_headers, body = http(envoy, "/", headers, timeout=20)
    cookies = [v.split(";")[0] for k, v in response_headers if k == "set-cookie"]
    return status, (body["name"] if isinstance(body, dict) else None), cookies


def test_a_slow_backend_gets_no_new_sessions_while_over_the_bound(upstreams, start_envoy):
    ups = upstreams(3)
    # One worker: the per-worker bound is then the bound.
    envoy = start_envoy("override_host", config(ups), [u.addr for u in ups], concurrency=1)
    slow = ups[1]

    # Unloaded owners of the keys new sessions will use (one at a time: nothing in flight, no spill).
    keys = [f"user-{i}" for i in range(150)]
    owner = {k: request(envoy, [("x-user-id", k)])[1] for k in keys}
    owned_by_slow = [k for k in keys if owner[k] == slow.name]
    assert len(owned_by_slow) > 20, owner

    # Existing sessions, pinned by cookie, some of them on the backend about to turn slow.
    existing = {}
    for i in range(30):
        status, name, cookies = request(envoy, [])
        assert status == 200 and cookies
        existing[cookies[0]] = name
    on_slow = [c for c, n in existing.items() if n == slow.name]
    assert on_slow

    slow.delay = 0.6
    stop = threading.Event()
    moved, errors = [], []

    def keep_existing_busy(cookie):
        # Pinned traffic keeps the slow backend over the bound; it must never move.
        while not stop.is_set():
            status, name, _ = request(envoy, [("cookie", cookie)])
            if status != 200:
                errors.append(status)
            elif name != existing[cookie]:
                moved.append((cookie, existing[cookie], name))

    landed = {}

    def new_session(key):
        status, name, cookies = request(envoy, [("x-user-id", key)])
        if status != 200 or not cookies:
            errors.append((key, status))
            return
        landed[key] = name
        # Its cookie pins it where it landed, whatever the load is now.
        for _ in range(2):
            status, again, _ = request(envoy, [("cookie", cookies[0]), ("x-user-id", key)])
            if status != 200 or again != name:
                moved.append((key, name, again))

    busy = [c for c in on_slow for _ in range(3)][:6]
    with ThreadPoolExecutor(len(busy) + 4) as pool:
        loaders = [pool.submit(keep_existing_busy, c) for c in busy]
        list(pool.map(new_session, keys))
        stop.set()
        for f in loaders:
            f.result()
    slow.delay = 0

    assert not errors, errors[:5]
    assert not moved, f"{len(moved)} sessions moved: {moved[:5]}"
    spilled = [k for k in owned_by_slow if landed.get(k) != slow.name]
    landed_on_slow = [k for k in keys if landed.get(k) == slow.name]
    # Most of the slow host's own keys went elsewhere; few new sessions landed on it at all.
    assert len(spilled) * 2 > len(owned_by_slow), (len(spilled), len(owned_by_slow))
    assert len(landed_on_slow) * 2 < len(owned_by_slow), (len(landed_on_slow), len(owned_by_slow))
    # Keys owned by the fast hosts were never pushed around (their hosts were under the bound).
    pushed = [k for k in keys if owner[k] != slow.name and landed.get(k) != owner[k]]
    assert len(pushed) * 10 < len(keys), pushed

    c = counters(envoy)
    assert c["session_router.bounded_load.spilled"] >= len(spilled)
    assert c["session_router.host.backend-b.spilled"] >= len(spilled)
    assert c["session_router.bounded_load.in_flight"] > 0
    print(f"\nbounded load: {len(owned_by_slow)} keys owned by the slow host, {len(spilled)} spilled, "
          f"{len(landed_on_slow)} new sessions landed on it; 0 of {len(existing)} existing sessions moved")


def test_off_by_default_a_slow_backend_keeps_its_new_sessions(upstreams, start_envoy):
    ups = upstreams(3)
    envoy = start_envoy("override_host", config(ups, bounded=False), [u.addr for u in ups], concurrency=1)
    keys = [f"user-{i}" for i in range(60)]
    owner = {k: request(envoy, [("x-user-id", k)])[1] for k in keys}
    ups[1].delay = 0.3
    with ThreadPoolExecutor(8) as pool:
        landed = dict(zip(keys, pool.map(lambda k: request(envoy, [("x-user-id", k)])[1], keys)))
    ups[1].delay = 0
    assert landed == owner
    assert "session_router.bounded_load.spilled" not in counters(envoy) or \
        counters(envoy)["session_router.bounded_load.spilled"] == 0
