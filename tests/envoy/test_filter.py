"""The release .wasm in a real Envoy, against real upstream servers, in all three target modes.

Each test names the behaviour (README "Behaviour" items 1-10) it proves.
"""

import base64
import json
import time

import pytest
from conftest import MODES, http, wait_for
from conftest import filter_counters as counters

SECRET = "integration-secret-0123456789abcdef"
TARGET = {
    "original_dst": {"header": "x-envoy-original-dst-host", "encoding": "plain"},
    "override_host": {"header": "x-gateway-destination-endpoint", "encoding": "plain", "fallbacks": 2},
    "stateful_session": {"header": "x-session-router-host", "encoding": "base64"},
}
SOURCES = [
    {"type": "cookie", "name": "JSESSIONID"},
    {"type": "jwt", "claim": "sub"},
    {"type": "header", "name": "x-user-id"},
    {"type": "query", "name": "sid"},
    {"type": "source_ip"},
]
# Without source_ip, a request with no key is a new session.
NO_CLIENT_IP = SOURCES[:-1]
# Frozen placement, shared with tests/ring.rs (golden_placement_shared_with_the_wasm_test):
# the shipped .wasm must place keys exactly as the native build does.
GOLDEN = {
    "alice": "backend-b", "bob": "backend-b", "carol": "backend-c", "dave": "backend-a",
    "erin": "backend-a", "frank": "backend-c", "grace": "backend-c", "heidi": "backend-b",
    "ivan": "backend-c", "judy": "backend-b",
}
# The same for the rendezvous placement, shared with tests/placement.rs
# (rendezvous_golden_placement_shared_with_the_wasm_test), with each key's full preference order
# (owner, then the fallbacks), which is also its failover order.
GOLDEN_RENDEZVOUS = {
    "alice": ["backend-c", "backend-a", "backend-b"], "bob": ["backend-a", "backend-c", "backend-b"],
    "carol": ["backend-a", "backend-c", "backend-b"], "dave": ["backend-a", "backend-b", "backend-c"],
    "erin": ["backend-a", "backend-b", "backend-c"], "frank": ["backend-a", "backend-b", "backend-c"],
    "grace": ["backend-b", "backend-a", "backend-c"], "heidi": ["backend-b", "backend-c", "backend-a"],
    "ivan": ["backend-a", "backend-b", "backend-c"], "judy": ["backend-c", "backend-b", "backend-a"],
}
IDS = ["backend-a", "backend-b", "backend-c"]


def filter_config(mode, ups, sources=SOURCES, sticky=True, placement="ring", **sticky_extra):
    # The tests below name hosts from the ring's golden table, so they pin the ring unless told.
    config = {
        "hosts": [{"address": u.addr, "id": IDS[i]} for i, u in enumerate(ups)],
        "sources": sources,
        "target": TARGET[mode],
        "placement": {"algorithm": placement},
    }
    if sticky:
        config["sticky_cookie"] = {
            "name": "srv", "ttl_seconds": 3600, "secret": SECRET, "secure": False, **sticky_extra,
        }
    return config


@pytest.fixture
def stack(upstreams, start_envoy):
    """start(mode, **filter options) -> (envoy, upstreams); three upstreams in the config."""
    def start(mode, extra_upstreams=0, **options):
        ups = upstreams(3)
        extra = upstreams(extra_upstreams) if extra_upstreams else []
        envoy = start_envoy(mode, filter_config(mode, ups, **options), [u.addr for u in ups])
        return envoy, ups, extra
    return start


def get(envoy, path="/", headers=()):
    status, response_headers, body = http(envoy, path, headers)
    return status, [v for k, v in response_headers if k == "set-cookie"], body


def sticky_value(set_cookies):
    (line,) = [c for c in set_cookies if c.startswith("srv=")]
    return line.split(";", 1)[0].split("=", 1)[1]


def jwt(payload):
    def part(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(payload)}.c2lnbmF0dXJl"


def target_seen(body, mode):
    return body["headers"][TARGET[mode]["header"]]


def decode_target(value, mode):
    return base64.b64decode(value).decode() if mode == "stateful_session" else value


@pytest.mark.parametrize("mode", MODES)
def test_1_client_supplied_target_header_is_replaced_never_followed(stack, mode):
    envoy, ups, (outsider,) = stack(mode, extra_upstreams=1)
    configured = {u.addr for u in ups}
    forged = outsider.addr if mode != "stateful_session" else base64.b64encode(outsider.addr.encode()).decode()
    header = TARGET[mode]["header"]
    # Forged values stay on loopback even if followed (network rule): a backend outside the config,
    # a port nothing listens on (in place of a metadata address, proven natively in tests/discovery.rs).
    for forged_value in [forged, "127.0.0.1:9", f"{forged},{forged}"]:
        for copies in (1, 3):
            status, _, body = get(envoy, headers=[(header.upper(), forged_value)] * copies + [("x-user-id", "u")])
            assert status == 200
            seen = target_seen(body, mode)
            assert isinstance(seen, str), f"upstream saw several copies: {seen}"
            first = decode_target(seen, mode).split(",")[0]
            assert first in configured and body["port"] == int(first.rsplit(":", 1)[1])
    assert outsider.requests == [], "a forged header reached a host outside the config"


@pytest.mark.parametrize("mode", MODES)
def test_2_and_4_new_session_gets_a_cookie_that_pins_it(stack, mode):
    envoy, ups, _ = stack(mode, sources=NO_CLIENT_IP)
    status, cookies, body = get(envoy)
    assert status == 200
    value = sticky_value(cookies)
    first_host = body["name"]
    for _ in range(20):
        status, cookies, body = get(envoy, headers=[("cookie", f"other=1; srv={value}")])
        assert status == 200 and body["name"] == first_host
        assert not any(c.startswith("srv=") for c in cookies), "a valid cookie was re-issued"
    stats = counters(envoy)
    assert stats["session_router.decision.new"] == 1
    assert stats["session_router.decision.pinned"] == 20
    assert stats["session_router.cookie.issued"] == 1


@pytest.mark.parametrize("mode", MODES)
def test_3_every_source_sticks(stack, mode):
    envoy, ups, _ = stack(mode, sticky=False)
    cases = {
        "cookie": [("cookie", "a=b; JSESSIONID=abc123; c=d")],
        "cookie split over two headers": [("cookie", "a=b"), ("cookie", "JSESSIONID=abc123")],
        "quoted cookie": [("cookie", 'JSESSIONID="abc123"')],
        "jwt": [("authorization", f"Bearer {jwt({'sub': 'user-7', 'exp': int(time.time()) + 600})}")],
        "header": [("x-user-id", "user-7")],
    }
    for name, headers in cases.items():
        hosts = {get(envoy, headers=headers)[2]["name"] for _ in range(10)}
        assert len(hosts) == 1, f"{name}: spread over {hosts}"
    # The same key from any source lands on the same host; and the JWT's sub is the key.
    host_of = lambda headers: get(envoy, headers=headers)[2]["name"]  # noqa: E731
    assert host_of(cases["cookie"]) == host_of(cases["cookie split over two headers"]) == host_of(cases["quoted cookie"])
    assert host_of(cases["jwt"]) == host_of(cases["header"])
    query_hosts = {get(envoy, "/p?x=1&sid=user%2D7")[2]["name"] for _ in range(5)}
    assert query_hosts == {host_of(cases["header"])}, "percent-decoded query key"
    source_ip_hosts = {get(envoy)[2]["name"] for _ in range(10)}
    assert len(source_ip_hosts) == 1, "source_ip: one client address, one host"
    assert counters(envoy)["session_router.decision.hashed"] >= 70
    assert counters(envoy).get("session_router.decision.new", 0) == 0


@pytest.mark.parametrize("mode", MODES)
def test_3_7_wasm_placement_matches_the_native_golden_table(stack, mode):
    envoy, ups, _ = stack(mode, sticky=False)
    by_id = dict(zip(IDS, [u.name for u in ups]))
    for key, host_id in GOLDEN.items():
        assert get(envoy, headers=[("x-user-id", key)])[2]["name"] == by_id[host_id], key


@pytest.mark.parametrize("mode", MODES)
def test_3_7_wasm_rendezvous_placement_matches_the_native_golden_table(stack, mode):
    envoy, ups, _ = stack(mode, sticky=False, placement="rendezvous")
    by_id = dict(zip(IDS, [u.name for u in ups]))
    addr_by_id = dict(zip(IDS, [u.addr for u in ups]))
    for key, order in GOLDEN_RENDEZVOUS.items():
        _, _, body = get(envoy, headers=[("x-user-id", key)])
        assert body["name"] == by_id[order[0]], key
        if mode == "override_host":
            # Two fallbacks: the rest of the key's preference order, in order.
            seen = decode_target(target_seen(body, mode), mode).split(",")
            assert seen == [addr_by_id[h] for h in order], key


def test_3_source_order_decides_and_expired_jwt_is_skipped(stack):
    envoy, ups, _ = stack("original_dst", sticky=False)
    expired = jwt({"sub": "alice", "exp": int(time.time()) - 120})  # past the 60 s leeway
    valid = jwt({"sub": "dave", "exp": int(time.time()) + 600})
    by_id = dict(zip(IDS, [u.name for u in ups]))
    # jwt comes before header in SOURCES: a valid token wins over x-user-id.
    assert get(envoy, headers=[("authorization", f"Bearer {valid}"), ("x-user-id", "alice")])[2]["name"] == by_id["backend-a"]
    # An expired token is not used; the header (alice → backend-b) decides.
    assert get(envoy, headers=[("authorization", f"Bearer {expired}"), ("x-user-id", "alice")])[2]["name"] == by_id["backend-b"]
    assert counters(envoy)["session_router.jwt.rejected"] == 1


@pytest.mark.parametrize("mode", MODES)
def test_5_target_header_encoding(stack, mode):
    envoy, ups, _ = stack(mode, sticky=False)
    status, _, body = get(envoy, headers=[("x-user-id", "carol")])
    seen = decode_target(target_seen(body, mode), mode)
    addresses = seen.split(",")
    assert addresses[0] == f"127.0.0.1:{body['port']}"
    if mode == "override_host":
        assert len(addresses) == 3 and len(set(addresses)) == 3, "chosen host then two distinct fallbacks"
        assert set(addresses) == {u.addr for u in ups}
    else:
        assert len(addresses) == 1


def test_6_cookie_attributes_and_opacity(stack):
    envoy, ups, _ = stack("override_host", secure=True, same_site="Strict", path="/app")
    _, cookies, body = get(envoy)
    (line,) = cookies
    attributes = [a.strip() for a in line.split(";")]
    assert attributes[1:] == ["Path=/app", "Max-Age=3600", "HttpOnly", "Secure", "SameSite=Strict"]
    value = sticky_value(cookies)
    address = f"127.0.0.1:{body['port']}"
    decoded = base64.urlsafe_b64decode(value + "==")
    for needle in [address.encode(), str(body["port"]).encode(), base64.b64encode(address.encode())]:
        assert needle not in decoded and needle not in value.encode()


@pytest.mark.parametrize("mode", MODES)
def test_6_tampered_truncated_and_foreign_cookies_are_replaced_never_5xx(stack, mode):
    envoy, ups, _ = stack(mode)
    _, cookies, _ = get(envoy, headers=[("x-user-id", "bob")])
    good = sticky_value(cookies)
    flipped = good[:10] + ("A" if good[10] != "A" else "B") + good[11:]
    bad_values = [flipped, good[:-1], good + "A", "", "10.0.0.1:8080", ups[0].addr, "%00%0d%0a", '"' + good]
    for bad in bad_values:
        status, cookies, body = get(envoy, headers=[("cookie", f"srv={bad}"), ("x-user-id", "bob")])
        assert status == 200, bad
        assert body["name"] in {u.name for u in ups}
        assert any(c.startswith("srv=") for c in cookies), f"{bad!r} was not replaced"
    assert counters(envoy)["session_router.cookie.rejected"] >= len(bad_values) - 1  # "" is no cookie at all


def test_6_expiry_is_enforced_by_the_filter(stack):
    envoy, ups, _ = stack("original_dst", ttl_seconds=2)
    _, cookies, body = get(envoy)
    value = sticky_value(cookies)
    assert get(envoy, headers=[("cookie", f"srv={value}")])[1] == []
    time.sleep(2.2)
    status, cookies, _ = get(envoy, headers=[("cookie", f"srv={value}")])
    assert status == 200 and sticky_value(cookies) != value
    assert counters(envoy)["session_router.cookie.rejected"] == 1


def test_6_idle_timeout_slides_for_active_sessions_and_expires_idle_ones(stack):
    envoy, ups, _ = stack("original_dst", ttl_seconds=3600, idle_timeout_seconds=4)
    _, cookies, body = get(envoy)
    value, host = sticky_value(cookies), body["name"]
    # Active: re-issued (sliding) once a quarter of the idle timeout has passed, same host.
    deadline = time.time() + 6
    while time.time() < deadline:
        time.sleep(1.1)
        status, cookies, body = get(envoy, headers=[("cookie", f"srv={value}")])
        assert status == 200 and body["name"] == host
        if cookies:
            value = sticky_value(cookies)
    assert counters(envoy)["session_router.decision.pinned"] >= 5
    assert counters(envoy).get("session_router.cookie.rejected", 0) == 0, "an active session expired"
    # Idle: past the timeout the cookie no longer pins.
    time.sleep(4.2)
    _, cookies, _ = get(envoy, headers=[("cookie", f"srv={value}")])
    assert sticky_value(cookies) != value
    assert counters(envoy)["session_router.cookie.rejected"] == 1


def test_2_cookie_for_a_host_no_longer_configured_is_replaced(upstreams, start_envoy):
    ups = upstreams(3)
    config = filter_config("original_dst", ups)
    first = start_envoy("original_dst", config)
    _, cookies, body = get(first)
    value, host = sticky_value(cookies), body["name"]
    gone = next(i for i, u in enumerate(ups) if u.name == host)
    config["hosts"] = [h for i, h in enumerate(config["hosts"]) if i != gone]
    second = start_envoy("original_dst", config)
    status, cookies, body = get(second, headers=[("cookie", f"srv={value}")])
    assert status == 200 and body["name"] != host
    assert sticky_value(cookies) != value


def test_2_two_envoys_with_one_config_agree_on_every_session(upstreams, start_envoy):
    ups = upstreams(3)
    config = filter_config("override_host", ups)
    a = start_envoy("override_host", config, [u.addr for u in ups], concurrency=4)
    b = start_envoy("override_host", config, [u.addr for u in ups], concurrency=1)
    for i in range(40):
        headers = [("x-user-id", f"user-{i}")]
        assert get(a, headers=headers)[2]["name"] == get(b, headers=headers)[2]["name"]
    _, cookies, body = get(a)
    value = sticky_value(cookies)
    for _ in range(5):
        assert get(b, headers=[("cookie", f"srv={value}")])[2]["name"] == body["name"], "replica honours the cookie"


def test_8_config_errors_reject_the_plugin_with_a_message(upstreams, tmp_path):
    import subprocess

    import yaml
    from conftest import envoy_bin, render_config, require_wasm

    bad = {"hosts": [{"address": "10.0.0"}], "sources": SOURCES, "target": TARGET["original_dst"]}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(render_config("original_dst", require_wasm(), bad)))
    result = subprocess.run([envoy_bin(), "--mode", "validate", "-c", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert 'hosts[0].address: "10.0.0" is not ip:port' in result.stdout + result.stderr


@pytest.mark.parametrize("mode", MODES)
def test_9_bad_request_input_is_never_a_5xx(stack, mode):
    envoy, ups, _ = stack(mode)
    token_parts = jwt({"sub": "x"}).split(".")
    bad_requests = [
        [("cookie", "JSESSIONID")],
        [("cookie", "=abc; ;;; JSESSIONID=")],
        [("cookie", "JSESSIONID=a; JSESSIONID=b")],
        [("cookie", "JSESSIONID=\"unterminated")],
        [("cookie", "x=" + "y" * 50_000)],
        [("cookie", "; ".join(f"c{i}=v{i}" for i in range(200)))],
        [("authorization", "Bearer")],
        [("authorization", "Bearer a.b")],
        [("authorization", "Bearer a.b.c.d.e")],
        [("authorization", "Bearer " + "A" * 10_000)],
        [("authorization", f"Bearer {token_parts[0]}.bm90IGpzb24.sig")],
        [("authorization", f"Bearer {jwt({'sub': 123})}")],
        [("authorization", f"Bearer {jwt({'sub': 'a', 'exp': '2030'})}")],
        [("authorization", "Bearer " + token_parts[0] + "." + base64.urlsafe_b64encode(b"[" * 5000).decode() + ".s")],
        [("x-user-id", "x" * 5000)],
        [("x-user-id", "a"), ("x-user-id", "b")],
        [("x-user-id", "caf\xe9")],
    ]
    for headers in bad_requests:
        status, _, body = get(envoy, headers=headers)
        assert status == 200, headers
        assert body["name"] in {u.name for u in ups}
    for path in ["/?sid=%zz", "/?sid=%", "/?sid=%E2%82", "/?sid=" + "a" * 5000, "/?&&&=&sid"]:
        assert get(envoy, path)[0] == 200, path
    stats = counters(envoy)
    assert stats["session_router.jwt.rejected"] >= 6
    assert stats["session_router.input.rejected"] >= 4
    assert "panic" not in envoy.log_text().lower()


@pytest.mark.parametrize("mode", MODES)
def test_10_counters_in_stats_and_prometheus_match_what_was_sent(stack, mode):
    envoy, ups, _ = stack(mode, sources=NO_CLIENT_IP)
    for i in range(7):
        get(envoy, headers=[("x-user-id", f"u{i}")])  # hashed, each gets a cookie
    _, cookies, _ = get(envoy)  # new
    value = sticky_value(cookies)
    for _ in range(3):
        get(envoy, headers=[("cookie", f"srv={value}")])  # pinned
    get(envoy, headers=[("cookie", "srv=garbage")])  # rejected cookie → new session, new cookie
    get(envoy, headers=[("authorization", "Bearer x.y")])  # rejected JWT → new
    stats = counters(envoy)
    expected = {
        "session_router.decision.hashed": 7,
        "session_router.decision.new": 3,
        "session_router.decision.pinned": 3,
        "session_router.cookie.issued": 10,
        "session_router.cookie.rejected": 1,
        "session_router.jwt.rejected": 1,
    }
    assert {k: stats.get(k, 0) for k in expected} == expected
    prometheus = envoy.prometheus()
    for name, value in expected.items():
        line = f"{name.replace('.', '_')}{{}} {value}"
        assert line in prometheus.splitlines(), f"{line} not in /stats/prometheus"


def test_per_host_counters_and_a_garbage_flood_does_not_flood_the_log(stack):
    envoy, ups, _ = stack("override_host", sources=NO_CLIENT_IP)
    served = {}
    for i in range(30):
        name = get(envoy, headers=[("x-user-id", f"u{i}")])[2]["name"]
        served[name] = served.get(name, 0) + 1
    by_name = {u.name: IDS[i] for i, u in enumerate(ups)}
    stats = counters(envoy)
    for name, n in served.items():
        # Host ids become metric-name-safe: `backend-a` stays, `10.0.0.1:80` becomes `10_0_0_1_80`.
        assert stats[f"session_router.host.{by_name[name]}.routed"] == n
    before = envoy.log_text().count("sticky cookie ignored")
    started = time.monotonic()
    for i in range(300):
        get(envoy, headers=[("cookie", f"srv=garbage{i}")])
    seconds = time.monotonic() - started
    logged = envoy.log_text().count("sticky cookie ignored") - before
    assert counters(envoy)["session_router.cookie.rejected"] == 300, "every one is counted"
    # At most 10 lines a second per worker (2 workers), whatever the request rate.
    assert 1 <= logged <= 10 * 2 * (int(seconds) + 2), f"{logged} log lines in {seconds:.1f}s"
    if logged < 300:
        assert wait_for(lambda: "log lines suppressed" in envoy.log_text() or not http(envoy, "/"), 3)


def test_the_documented_stats_tags_rule_turns_host_counters_into_a_label(upstreams, start_envoy):
    ups = upstreams(3)
    rule = {"tag_name": "session_router_host",
            "regex": r"^wasmcustom\.session_router\.host\.(([^.]+)\.)(?:routed|spilled)$"}  # as in the README

    def edit(config):
        config["stats_config"] = {"stats_tags": [rule]}

    envoy = start_envoy("override_host", filter_config("override_host", ups, sticky=False), [u.addr for u in ups],
                        edit=edit)
    host = get(envoy, headers=[("x-user-id", "alice")])[2]["name"]
    host_id = IDS[[u.name for u in ups].index(host)]
    assert f'session_router_host_routed{{session_router_host="{host_id}"}} 1' in envoy.prometheus().splitlines()
