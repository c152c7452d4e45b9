"""What a client sees when the filter's wasm VM fails, per Envoy failure policy.

The shipped module cannot be made to fail on purpose. These tests use a test-only build with the
`fault-injection` Cargo feature, in which a request carrying `x-session-router-test-fault: panic`
makes the filter panic, so the VM traps (a Rust panic is a wasm `unreachable`):

    bash scripts/build.sh --fault

The build is found at target/fault/wasm32-wasip1/release/session_router.wasm, or wherever
$SESSION_ROUTER_FAULT_WASM points (srdev.wasm_path(fault=True)); without it every test here is skipped. It is handed to the
`start_envoy` fixture through $SESSION_ROUTER_WASM (render_config's wasm path).

Policies (envoy.extensions.wasm.v3.PluginConfig in Envoy 1.40): `failure_policy` FAIL_CLOSED,
FAIL_OPEN or FAIL_RELOAD, and the older `fail_open` bool (Envoy refuses both set at once).
Every Envoy here runs one worker, so the request after the trap meets the failed VM (each worker
has its own VM; a trap fails only that worker's).

Each test sends, in order: a normal request carrying a *forged* target header naming an
"intruder" upstream that is not one of the configured hosts; the trapping request; then, for a
few seconds, normal requests with the same forged header. It records status codes and which
upstream answered.
"""

import time
from pathlib import Path

import pytest
from conftest import http
from harness import filter_plugin
from srdev import missing_wasm_hint, wasm_path

FAULT = ("x-session-router-test-fault", "panic")
SECRET = "failure-policy-secret-0123456789abcdef01"
TARGETS = {
    "original_dst": {"header": "x-envoy-original-dst-host", "encoding": "plain"},
    "override_host": {"header": "x-gateway-destination-endpoint", "encoding": "plain", "fallbacks": 2},
}
POLICIES = {
    "FAIL_CLOSED": {"failure_policy": "FAIL_CLOSED"},
    "FAIL_OPEN": {"failure_policy": "FAIL_OPEN"},
    "FAIL_RELOAD": {"failure_policy": "FAIL_RELOAD"},
    "fail_open=false": {"fail_open": False},
    "fail_open=true": {"fail_open": True},
    "unset": {},
}
# How long the requests after the trap are watched (FAIL_RELOAD's default backoff is 1 s).
WATCH_S = 4.0


def fault_wasm() -> Path:
    return wasm_path(fault=True)


@pytest.fixture
def fault_build(monkeypatch):
    path = fault_wasm()
    if not path.is_file():
        pytest.skip(missing_wasm_hint(fault=True))
    monkeypatch.setenv("SESSION_ROUTER_WASM", str(path))
    return path


def filter_config(mode, ups):
    return {
        "hosts": [{"address": u.addr, "id": f"backend-{i}"} for i, u in enumerate(ups)],
        "sources": [{"type": "header", "name": "x-user-id"}],
        "sticky_cookie": {"name": "srv", "ttl_seconds": 3600, "secret": SECRET, "secure": False},
        "target": TARGETS[mode],
    }


def set_policy(policy):
    def edit(config):
        plugin = filter_plugin(config)
        plugin.pop("fail_open", None)
        plugin.pop("failure_policy", None)
        plugin.update(POLICIES[policy])

    return edit


def send(envoy, headers):
    """(status, name of the upstream that answered or None); status 0 for a reset connection."""
    try:
        status, _, body = http(envoy, "/", headers, timeout=5)
    except OSError:
        return 0, None
    return status, (body.get("name") if isinstance(body, dict) else None)


def reload_stats(envoy):
    stats = envoy.stats()
    pick = lambda suffix: sum(v for k, v in stats.items() if k.startswith("wasm.") and k.endswith(suffix))  # noqa: E731
    return {
        "vms_created": stats.get("wasm.envoy.wasm.runtime.v8.created", 0),
        "vm_reload_success": pick(".vm_reload_success"),
        "vm_reload": pick(".vm_reload"),
    }


def observe(envoy, forged_header, intruder):
    """Normal request, trapping request, then WATCH_S seconds of normal requests; all forged."""
    forged = [forged_header, ("x-user-id", "alice")]
    before = send(envoy, forged)
    before_stats = reload_stats(envoy)
    trap = send(envoy, [*forged, FAULT])
    log = envoy.log_text()
    assert "fault injected by x-session-router-test-fault" in log, (
        f"{fault_wasm()} did not trap: is it a --features fault-injection build?"
    )
    after = []
    start = time.monotonic()
    while time.monotonic() - start < WATCH_S:
        after.append((round(time.monotonic() - start, 2), *send(envoy, forged)))
        time.sleep(0.2)
    return {
        "before": before,
        "trap": trap,
        "after": after,
        "intruder_hits": len(intruder.requests),
        "stats_before": before_stats,
        "stats_after": reload_stats(envoy),
    }


def describe(seen):
    statuses = [s for _, s, _ in seen["after"]]
    served = sorted({n for _, _, n in seen["after"] if n})
    return f"trap={seen['trap']} after={statuses} served_by={served} intruder_hits={seen['intruder_hits']}"


def watched(envoy, mode, policy, header, ups, intruder):
    """observe() with `header` forged to the intruder, printed; returns what the tests assert on:
    (seen, the configured backends' names, the statuses after the trap, who served them)."""
    seen = observe(envoy, (header, intruder.addr), intruder)
    print(f"\n{mode} {policy}: {describe(seen)}")
    return seen, {u.name for u in ups}, [s for _, s, _ in seen["after"]], [n for _, _, n in seen["after"]]


@pytest.mark.parametrize("policy", list(POLICIES))
def test_original_dst_after_a_trap(upstreams, start_envoy, fault_build, policy):
    """ORIGINAL_DST: fail closed keeps answering 503; fail open forwards the client's own header
    (the intruder is reached; with the legacy `fail_open: true` even the trapping request is);
    FAIL_RELOAD answers 503 for about a second (the reload backoff), then routes again."""
    *ups, intruder = upstreams(4)
    envoy = start_envoy(
        "original_dst", filter_config("original_dst", ups), concurrency=1, edit=set_policy(policy)
    )
    seen, configured, statuses, served = watched(envoy, "original_dst", policy, "x-envoy-original-dst-host", ups,
                                                 intruder)

    # A working filter replaces the forged header, whatever the policy.
    assert seen["before"][0] == 200 and seen["before"][1] in configured
    if policy == "fail_open=true":
        # The legacy bool forwards even the request that trapped, with the client's header.
        assert seen["trap"] == (200, intruder.name), describe(seen)
    else:
        assert seen["trap"] == (503, None), "the trapping request itself is answered 503 by Envoy"

    if policy in ("FAIL_CLOSED", "fail_open=false", "unset"):
        assert set(statuses) == {503}, describe(seen)
        assert seen["intruder_hits"] == 0
        assert seen["stats_after"]["vms_created"] == seen["stats_before"]["vms_created"], "no new VM"
    elif policy in ("FAIL_OPEN", "fail_open=true"):
        # The filter is skipped: the client's header reaches ORIGINAL_DST unfiltered.
        assert set(statuses) == {200} and set(served) == {intruder.name}, describe(seen)
        assert seen["intruder_hits"] == len(statuses) + (policy == "fail_open=true")
        assert seen["stats_after"]["vms_created"] == seen["stats_before"]["vms_created"], "no new VM"
    else:  # FAIL_RELOAD
        assert statuses[0] == 503, describe(seen)
        assert statuses[-1] == 200 and served[-1] in configured, describe(seen)
        first_ok = next(i for i, s in enumerate(statuses) if s == 200)
        assert set(statuses[first_ok:]) == {200} and set(served[first_ok:]) <= configured
        assert seen["intruder_hits"] == 0
        assert seen["stats_after"]["vm_reload_success"] >= 1
        assert seen["stats_after"]["vms_created"] > seen["stats_before"]["vms_created"]


@pytest.mark.parametrize("policy", ["FAIL_CLOSED", "FAIL_OPEN", "FAIL_RELOAD"])
def test_override_host_after_a_trap(upstreams, start_envoy, fault_build, policy):
    """override_host: fail open degrades to the cluster's fallback policy (round robin, sessions
    no longer sticky) and never leaves the cluster: a forged address that is not an endpoint is
    ignored. Fail closed answers 503; FAIL_RELOAD recovers."""
    *ups, intruder = upstreams(4)
    envoy = start_envoy(
        "override_host",
        filter_config("override_host", ups),
        [u.addr for u in ups],
        concurrency=1,
        edit=set_policy(policy),
    )
    seen, configured, statuses, served = watched(envoy, "override_host", policy, "x-gateway-destination-endpoint",
                                                 ups, intruder)
    assert seen["before"][0] == 200 and seen["before"][1] in configured
    assert seen["trap"] == (503, None)
    assert seen["intruder_hits"] == 0, "override_host never leaves the cluster"
    if policy == "FAIL_CLOSED":
        assert set(statuses) == {503}, describe(seen)
    elif policy == "FAIL_OPEN":
        assert set(statuses) == {200} and set(served) <= configured, describe(seen)
        # Unfiltered, the same user is spread round robin: the session no longer sticks.
        assert len(set(served)) > 1, describe(seen)
        # And a client may pick any endpoint of the cluster itself.
        assert send(envoy, [("x-gateway-destination-endpoint", ups[2].addr)]) == (200, ups[2].name)
    else:
        assert statuses[0] == 503 and statuses[-1] == 200, describe(seen)
        # Recovered: the filter routes again, so alice sticks to one host.
        first_ok = statuses.index(200)
        assert len(set(served[first_ok:])) == 1, describe(seen)


STRIP_BEFORE_FILTER = {
    "name": "envoy.filters.http.header_mutation",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
        "mutations": {"request_mutations": [{"remove": "x-envoy-original-dst-host"}]},
    },
}


def http_filters(config):
    (listener,) = config["static_resources"]["listeners"]
    return listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]


def test_original_dst_fail_open_with_the_header_stripped_before_the_filter(upstreams, start_envoy, fault_build):
    """The mitigation if an ORIGINAL_DST deployment must fail open: remove the client's copy of
    the header *before* the wasm filter. A bypassed filter then leaves no header, ORIGINAL_DST
    finds no host (the listener address is not an iptables-restored original destination), and
    Envoy answers 503 — closed, not open. While the filter works, routing is unchanged."""
    *ups, intruder = upstreams(4)

    def edit(config):
        set_policy("FAIL_OPEN")(config)
        http_filters(config).insert(0, STRIP_BEFORE_FILTER)

    envoy = start_envoy("original_dst", filter_config("original_dst", ups), concurrency=1, edit=edit)
    seen = observe(envoy, ("x-envoy-original-dst-host", intruder.addr), intruder)
    print(f"\noriginal_dst FAIL_OPEN + strip before the filter: {describe(seen)}")
    assert seen["before"][0] == 200 and seen["before"][1] in {u.name for u in ups}
    assert {s for _, s, _ in seen["after"]} == {503}, describe(seen)
    assert seen["intruder_hits"] == 0


def test_original_dst_header_removed_at_the_route_breaks_routing(upstreams, start_envoy):
    """Removing the header at the *route* (`request_headers_to_remove`) is not a mitigation: the
    router applies it after every decoder filter, so it also removes the header the filter set,
    and ORIGINAL_DST has nothing to route on. Shipped module, no fault needed."""
    ups = upstreams(3)

    def edit(config):
        (listener,) = config["static_resources"]["listeners"]
        hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        route = hcm["route_config"]["virtual_hosts"][0]["routes"][0]
        route["request_headers_to_remove"] = ["x-envoy-original-dst-host"]

    envoy = start_envoy("original_dst", filter_config("original_dst", ups), concurrency=1, edit=edit)
    status, name = send(envoy, [("x-user-id", "alice")])
    print(f"\noriginal_dst with the header removed at the route: status={status} served_by={name}")
    assert (status, name) == (503, None)
