"""The Istio manifests in envoy/istio, beyond their CRDs (test_istio_crds.py).

1. The manifests agree with each other and with the filter (phase, failStrategy, secrets, the
   Istio side of the target mode, the verified-claim header).
2. The EnvoyFilter patch values are real Envoy config: applied to an Istio-shaped cluster, route
   and filter chain, Envoy accepts them, and a live Envoy routes by the header, fails over on a
   dead endpoint and strips a forged claim header.
"""

from __future__ import annotations

import copy
import json
import socket
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from artifacts_support import ISTIO_DIR, ISTIO_KINDS, istio_documents, plugin_spec, require_envoy
from srdev import Envoy, validate

OVERRIDE_HOST = "envoy.load_balancing_policies.override_host"
DOCS = istio_documents()


# ---- the manifests agree with each other and with the filter ------------------------------------


def test_every_file_is_known_and_explained():
    files = sorted(ISTIO_DIR.glob("*.yaml"))
    assert len(files) >= 7
    for path in files:
        lines = path.read_text().splitlines()
        header = [line for line in lines[: next(i for i, l in enumerate(lines) if not l.startswith("#"))]]
        assert len(header) >= 5, f"{path.name}: needs a header comment explaining it"
    for where, doc in DOCS:
        kind = doc.get("kind")
        if kind is None:
            assert where.split("#")[0].endswith(".patch.yaml"), f"{where}: a document without kind"
        else:
            assert kind in ISTIO_KINDS | {"Service"}, f"{where}: unexpected kind {kind}"


PLUGINS = [(where, doc) for where, doc in DOCS if plugin_spec(doc) is not None]


@pytest.mark.parametrize("where,doc", PLUGINS, ids=[w for w, _ in PLUGINS])
def test_plugin_policy(where, doc):
    spec, wasm = doc["spec"], plugin_spec(doc)
    assert spec["phase"] == "AUTHZ", "after Istio's authentication filters (verified JWT claims)"
    assert wasm["failStrategy"] == "FAIL_CLOSE", "a bypassed filter must not let requests through"
    assert wasm["url"].startswith("oci://")
    assert wasm["pluginName"] == "session_router" and wasm.get("type", "HTTP") == "HTTP"
    labels = spec["selector"]["matchLabels"]
    if doc["metadata"]["namespace"] == "istio-system":
        assert labels == {"istio": "ingressgateway"} and "match" not in spec
    else:
        assert labels == {"app": "my-app"}
        assert [m["mode"] for m in spec["match"]] == ["CLIENT"], "the caller's outbound side picks the pod"
    cookie = wasm["pluginConfig"].get("sticky_cookie")
    if cookie:
        assert "secret" not in cookie, "the key comes from the proxy environment, not the resource"
        env = {e["name"]: e for e in wasm["vmConfig"]["env"]}
        assert env[cookie["secret_env"]] == {"name": cookie["secret_env"], "valueFrom": "HOST"}
        patch = yaml.safe_load((ISTIO_DIR / "proxy-secret-env.patch.yaml").read_text())
        (proxy,) = patch["spec"]["template"]["spec"]["containers"]
        assert proxy["name"] == "istio-proxy"
        (var,) = proxy["env"]
        assert var["name"] == cookie["secret_env"] and var["valueFrom"]["secretKeyRef"]["name"]


def _envoyfilters():
    return [d for _, d in DOCS if d.get("kind") == "EnvoyFilter"]


def _patches(apply_to, context):
    return [p for ef in _envoyfilters() for p in ef["spec"]["configPatches"]
            if p["applyTo"] == apply_to and p["match"].get("context") == context]


@pytest.mark.parametrize("where,doc", PLUGINS, ids=[w for w, _ in PLUGINS])
def test_istio_side_of_the_target_mode(where, doc):
    """Each plugin's target header is read by something on the Istio side."""
    config = plugin_spec(doc)["pluginConfig"]
    target = config["target"]
    context = "GATEWAY" if doc["metadata"]["namespace"] == "istio-system" else "SIDECAR_OUTBOUND"
    if target["header"] == "x-gateway-destination-endpoint":
        clusters = [p for p in _patches("CLUSTER", context)
                    if p["patch"]["value"].get("load_balancing_policy")]
        assert clusters, f"no override_host cluster patch for {context}"
        for patch in clusters:
            (policy,) = patch["patch"]["value"]["load_balancing_policy"]["policies"]
            ext = policy["typed_extension_config"]
            assert ext["name"] == OVERRIDE_HOST
            assert ext["typed_config"]["override_host_sources"] == [{"header": target["header"]}]
            assert patch["patch"]["operation"] == "MERGE_AND_REPLACE_LIST", "replace, not append to, the policy list"
        (route,) = _patches("HTTP_ROUTE", context)
        retry = route["patch"]["value"]["route"]["retry_policy"]
        assert "connect-failure" in retry["retry_on"] and "reset" in retry["retry_on"]
        assert retry["num_retries"] >= target.get("fallbacks", 0), "one retry per fallback address"
    elif target["header"] == "x-session-router-host":
        assert target["encoding"] == "base64" and target.get("fallbacks", 0) == 0
        services = [d for _, d in DOCS if d.get("kind") == "Service"]
        assert any(s["metadata"]["labels"].get("istio.io/persistent-session-header") == target["header"]
                   for s in services)
    else:
        pytest.fail(f"{where}: no Istio-side example for target header {target['header']}")


def test_verified_claim_header():
    """The header RequestAuthentication writes is a gateway session source, stripped first."""
    (ra,) = [d for _, d in DOCS if d.get("kind") == "RequestAuthentication"]
    headers = {o["header"] for rule in ra["spec"]["jwtRules"] for o in rule.get("outputClaimToHeaders", [])}
    assert headers == {"x-jwt-sub"}
    for where, doc in PLUGINS:
        if doc["metadata"]["namespace"] == "istio-system":
            sources = plugin_spec(doc)["pluginConfig"]["sources"]
            assert {"type": "header", "name": "x-jwt-sub"} in sources, where
    (strip,) = [p for p in _patches("HTTP_FILTER", "GATEWAY")]
    assert strip["patch"]["operation"] == "INSERT_FIRST"
    mutations = strip["patch"]["value"]["typed_config"]["mutations"]["request_mutations"]
    assert {"remove": "x-jwt-sub"} in mutations


# ---- the EnvoyFilter patches in a real Envoy ----------------------------------------------------


def _merge(dst, src, replace_lists):
    """Istio's proto merge of a patch value: maps merge, scalars replace, lists append (MERGE) or
    replace (MERGE_AND_REPLACE_LIST)."""
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _merge(dst[key], value, replace_lists)
        elif isinstance(value, list) and isinstance(dst.get(key), list) and not replace_lists:
            dst[key] = dst[key] + copy.deepcopy(value)
        else:
            dst[key] = copy.deepcopy(value)
    return dst


def _apply(target, patch):
    op = patch["patch"]["operation"]
    assert op in ("MERGE", "MERGE_AND_REPLACE_LIST"), op
    return _merge(target, patch["patch"]["value"], replace_lists=op == "MERGE_AND_REPLACE_LIST")


def istio_shaped_config(endpoints, context="GATEWAY"):
    """A listener, route and cluster shaped like the ones Istio generates (least-request cluster
    with common_lb_config, Istio's default retry policy on the route), with this repository's
    EnvoyFilter patches for `context` applied. STATIC endpoints stand in for EDS."""
    cluster = {
        "name": "outbound|8080||backend.shop.svc.cluster.local",
        "type": "STATIC",
        "connect_timeout": "1s",
        "lb_policy": "LEAST_REQUEST",
        "common_lb_config": {"healthy_panic_threshold": {"value": 50}},
        "circuit_breakers": {"thresholds": [{"max_connections": 4294967295, "max_pending_requests": 4294967295,
                                             "max_requests": 4294967295, "max_retries": 4294967295}]},
        "load_assignment": {
            "cluster_name": "outbound|8080||backend.shop.svc.cluster.local",
            "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}}
                for p in endpoints]}],
        },
    }
    route = {
        "match": {"prefix": "/"},
        "route": {
            "cluster": cluster["name"],
            "retry_policy": {  # Istio's default retry policy
                "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
                "num_retries": 2,
                "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"}}],
                "host_selection_retry_max_attempts": 5,
            },
        },
    }
    http_filters = [{"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]
    for patch in _patches("CLUSTER", context):
        _apply(cluster, patch)
    for patch in _patches("HTTP_ROUTE", context):
        _apply(route, patch)
    for patch in _patches("HTTP_FILTER", context):
        assert patch["patch"]["operation"] == "INSERT_FIRST"
        http_filters.insert(0, copy.deepcopy(patch["patch"]["value"]))
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [{
                "name": "gateway",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "gateway",
                        "route_config": {"virtual_hosts": [{"name": "shop", "domains": ["*"], "routes": [route]}]},
                        "http_filters": http_filters,
                    },
                }]}],
            }],
            "clusters": [cluster],
        },
    }


@pytest.mark.parametrize("context", ["GATEWAY", "SIDECAR_OUTBOUND"])
def test_envoyfilter_patches_are_valid_envoy_config(context, tmp_path):
    config = istio_shaped_config([8081, 8082], context)
    cluster = config["static_resources"]["clusters"][0]
    assert cluster["load_balancing_policy"]["policies"][0]["typed_extension_config"]["name"] == OVERRIDE_HOST
    result = validate(config, tmp_path, binary=require_envoy(), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_envoyfilter_patch_needs_a_cluster_without_locality_weights(tmp_path):
    """Pins the pitfall documented in envoyfilter-override-host.yaml: Envoy rejects the
    override_host policy on a cluster that also has locality_weighted_lb_config."""
    config = istio_shaped_config([8081], "GATEWAY")
    config["static_resources"]["clusters"][0]["common_lb_config"]["locality_weighted_lb_config"] = {}
    result = validate(config, tmp_path, binary=require_envoy(), timeout=120)
    assert result.returncode != 0
    assert "locality_weighted_lb_config" in result.stdout + result.stderr
    text = (ISTIO_DIR / "envoyfilter-override-host.yaml").read_text()
    assert "localityLbSetting: {enabled: false}" in text, "the workaround stays documented"


class _Echo(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        body = json.dumps({"port": self.server.server_address[1],
                           "x-jwt-sub": self.headers.get("x-jwt-sub")}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_envoyfilter_patches_route_by_header_and_fail_over(tmp_path):
    """A live Envoy with the GATEWAY patches: the header picks the pod, a dead first address is
    retried on the next one (no error), and a client's x-jwt-sub never reaches the backend."""
    binary = require_envoy()
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), _Echo) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    alive = [s.server_address[1] for s in servers]
    dead = _free_port()  # an endpoint of the cluster that refuses connections
    envoy = Envoy("istio-gateway", istio_shaped_config(alive + [dead]), tmp_path, 1, "warning", binary=binary,
                  component_log_level=None)
    try:
        envoy.wait_ready()
        port = envoy.port

        def get(header=None, **extra):
            headers = {"x-gateway-destination-endpoint": header} if header else {}
            headers.update(extra)
            req = urllib.request.Request(f"http://127.0.0.1:{port}/", headers=headers)
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read())

        for chosen in alive:
            for _ in range(5):
                status, body = get(f"127.0.0.1:{chosen}")
                assert (status, body["port"]) == (200, chosen)
        for _ in range(5):  # dead primary, then its fallback
            status, body = get(f"127.0.0.1:{dead},127.0.0.1:{alive[1]}")
            assert (status, body["port"]) == (200, alive[1])
        status, body = get(f"127.0.0.1:{alive[0]}", **{"x-jwt-sub": "forged"})
        assert body["x-jwt-sub"] is None, "client-sent x-jwt-sub must be stripped"
    finally:
        envoy.stop()
        for server in servers:
            server.shutdown()
