"""Rotating the sticky-cookie secret across a fleet (issue 13): two Envoy replicas, restarted one
at a time (a rolling deploy) through the README's three steps, under steady traffic of 1,000
sticky sessions spread over both. No session moves, no cookie is rejected, no request fails,
and by the end every cookie is signed with the new key (checked here with the MAC's own recipe).

The new key comes from the proxy's environment (`secret_env` + `vm_config.environment_variables`),
the old one inline, so both ways of giving a key are exercised."""

import base64
import hashlib
import hmac
import struct
from concurrent.futures import ThreadPoolExecutor

from conftest import filter_counters as counters
from conftest import http
from harness import filter_plugin

OLD = "rotation-old-secret-0123456789abcdef0123"
NEW = "rotation-new-secret-0123456789abcdef0123"
SESSIONS = 1000
COOKIE = "srv"


def filter_config(ups, step):
    sticky = {"name": COOKIE, "ttl_seconds": 3600, "secure": False}
    sticky.update({
        0: {"secret": OLD},
        1: {"secret": OLD, "verify_secrets": [{"secret_env": "SR_NEW_KEY"}]},
        2: {"secret_env": "SR_NEW_KEY", "verify_secrets": [{"secret": OLD}]},
        3: {"secret_env": "SR_NEW_KEY"},
    }[step])
    return {
        "hosts": [{"address": u.addr, "id": f"backend-{i}"} for i, u in enumerate(ups)],
        "sources": [{"type": "header", "name": "x-user-id"}],
        "sticky_cookie": sticky,
        "target": {"header": "x-gateway-destination-endpoint", "fallbacks": 1},
    }


def signed_with(value, secret):
    raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    body, tag = raw[:-16], raw[-16:]
    msg = b"cookie-name\0" + struct.pack(">H", len(COOKIE)) + COOKIE.encode() + body
    return hmac.compare_digest(hmac.new(secret.encode(), msg, hashlib.sha256).digest()[:16], tag)


def test_three_step_rolling_rotation_loses_no_session(upstreams, start_envoy):
    ups = upstreams(3)

    def env(config):
        filter_plugin(config)["vm_config"]["environment_variables"] = {"key_values": {"SR_NEW_KEY": NEW}}

    def start(step):
        return start_envoy("override_host", filter_config(ups, step), [u.addr for u in ups],
                           concurrency=1, edit=env)

    replicas = [start(0), start(0)]
    totals = {"rejected": 0, "issued": 0, "requests": 0, "failed": 0, "moved": 0}
    jar = {}  # session -> [cookie value, upstream name]

    def one(session, envoy):
        headers = [("cookie", f"{COOKIE}={jar[session][0]}")] if session in jar else []
        status, response, body = http(envoy, "/", headers)
        new = next((v.split(";")[0].split("=", 1)[1] for k, v in response if k == "set-cookie"), None)
        return session, status, (body.get("name") if isinstance(body, dict) else None), new

    rounds = [0]

    def round_(live):
        # Each session alternates between the replicas from one round to the next.
        rounds[0] += 1
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda s: one(s, live[(s + rounds[0]) % len(live)]), range(SESSIONS)))
        for session, status, name, new in results:
            totals["requests"] += 1
            totals["failed"] += status != 200
            if session not in jar:
                jar[session] = [new, name]
                continue
            totals["moved"] += name != jar[session][1]
            if new:
                jar[session][0] = new

    def retire(envoy):
        c = counters(envoy)
        totals["rejected"] += c.get("session_router.cookie.rejected", 0)
        totals["issued"] += c.get("session_router.cookie.issued", 0)
        envoy.stop()

    round_(replicas)  # 1,000 new sessions, each with a cookie signed with the old key
    assert len(jar) == SESSIONS and all(v for v, _ in jar.values())
    assert all(signed_with(v, OLD) for v, _ in jar.values())
    for step in (1, 2, 3):
        for i in (0, 1):
            round_(replicas)
            retire(replicas[i])
            round_([replicas[1 - i]])  # the other replica carries everything meanwhile
            replicas[i] = start(step)
        round_(replicas)
    for envoy in replicas:
        retire(envoy)
    on_new = sum(signed_with(v, NEW) for v, _ in jar.values())
    print(f"rotation: {totals['requests']} requests over 2 replicas and 6 restarts; sessions moved "
          f"{totals['moved']}, cookies rejected {totals['rejected']}, failed {totals['failed']}, "
          f"cookies issued {totals['issued']}; signed with the new key at the end: {on_new}/{SESSIONS}")
    assert totals["failed"] == 0
    assert totals["moved"] == 0
    assert totals["rejected"] == 0
    assert on_new == SESSIONS
    assert not any(signed_with(v, OLD) for v, _ in jar.values())
