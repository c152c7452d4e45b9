"""Nothing fails open (issue 13): with no usable configuration, or when the target header cannot
be set, the request is answered 503 by the filter and never forwarded with the client's copy of
`target.header`. Proven with the test-only `fault-injection` build, whose
`x-session-router-test-fault` header forces either path (`no-config`, `set-fails`), in
ORIGINAL_DST mode with a forged `x-envoy-original-dst-host` naming a decoy server on 127.0.0.2:
the decoy is never reached.

Build: bash scripts/build.sh --fault
"""

import pytest
from conftest import http
from test_failure_policy import fault_build, filter_config  # noqa: F401 (fixture)
from trust_support import LoopbackUpstream

HEADERS = {"original_dst": "x-envoy-original-dst-host", "override_host": "x-gateway-destination-endpoint"}


@pytest.mark.parametrize("mode", ["original_dst", "override_host"])
@pytest.mark.parametrize("fault", ["no-config", "set-fails"])
def test_forced_failures_answer_503_and_never_reach_the_forged_address(upstreams, start_envoy, fault_build,  # noqa: F811
                                                                       mode, fault):
    ups = upstreams(3)
    decoy = LoopbackUpstream("decoy", "127.0.0.2")
    try:
        envoy = start_envoy(mode, filter_config(mode, ups), [u.addr for u in ups], concurrency=1)
        forged = (HEADERS[mode], decoy.addr)
        statuses = []
        for i in range(20):
            headers = [forged, ("x-user-id", f"u{i}"), ("x-session-router-test-fault", fault)]
            if i % 2:
                headers.insert(0, forged)  # the forged header twice
            status, response, body = http(envoy, "/", headers)
            statuses.append(status)
            assert ("x-session-router", "refused") in response, response
        assert set(statuses) == {503}
        assert decoy.requests == []
        # The VM is fine: the next normal request, forged header included, is routed as configured.
        status, _, body = http(envoy, "/", [forged, ("x-user-id", "alice")])
        assert status == 200 and body["name"] in {u.name for u in ups}
        assert decoy.requests == []
        log = envoy.log_text()
        assert "request refused with 503, not forwarded" in log
        # Envoy sends the local reply after the callback returns: the glue's contexts are never
        # re-entered (src/filter/abi.rs would log this and answer Continue).
        assert "re-entered" not in log
        print(f"{mode} {fault}: 20 forged requests, 20 × 503, decoy hits {len(decoy.requests)}")
    finally:
        decoy.stop()
