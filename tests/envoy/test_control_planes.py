"""The filter delivered the way control planes deliver it, in a real Envoy.

Envoy Gateway (test_envoy_gateway_*): the Envoy configuration its translator renders for an
EnvoyExtensionPolicy with a `wasm` entry and a BackendTrafficPolicy with `endpointOverride` — taken
from Envoy Gateway's own golden output (tests/envoy/golden/envoy-gateway/) with only our module,
our filter config, loopback addresses, and file-based xDS in place of ADS substituted:

- the Wasm filters listed `disabled: true` in the connection manager, one per policy, each with
  its own `vm_id` `envoyextensionpolicy/<namespace>/<name>/wasm/0`, code fetched over HTTP and
  checked by sha256 (as Envoy Gateway serves it from its cache), the cookie key from the proxy's
  environment through `host_env_keys`;
- each enabled on its own route only, through `typed_per_filter_config` with
  `envoy.config.route.v3.FilterConfig`; a third route enables none;
- the routes' clusters as Envoy Gateway renders `endpointOverride` (the override_host policy with
  a fallback policy), over EDS, and the BackendTrafficPolicy's retry as Envoy Gateway renders it.

Istio (test_istio_ecds_*): a WasmPlugin as istiod delivers it — extension config discovery (the HTTP
filter carries `config_discovery`; the Wasm config is a TypedExtensionConfig resource, here served
from a file and replaced by atomic rename), `pluginConfig` as a protobuf Struct serialized to JSON
the way istiod does (golang/protobuf jsonpb: sorted keys, every number a double), `vmConfig.env`
HOST entries as `host_env_keys`, the key_values istiod adds; the cluster and route patched by
envoy/istio/envoyfilter-override-host.yaml. Then a changed WasmPlugin (a host added) is applied
in place: no new VM, no cookie session moves, hashed sessions move only to the new host.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from conftest import REPO, Envoy, envoy_bin, filter_counters, http, require_wasm, wait_for

GOLDEN = Path(__file__).resolve().parent / "golden" / "envoy-gateway"
EG_DIR = REPO / "envoy" / "envoy-gateway"
ISTIO_DIR = REPO / "envoy" / "istio"
SECRET_ENV = "SESSION_ROUTER_SECRET"
SECRET = "control-plane-secret-0123456789abcdef-0123"
HOST = "shop.example.com"
HEADER = "x-gateway-destination-endpoint"


def golden(name):
    return yaml.safe_load((GOLDEN / name).read_text())


def _keys(node, prefix=""):
    """Every key path of a nested dict/list (list items merged), for shape comparisons."""
    out = set()
    if isinstance(node, dict):
        for k, v in node.items():
            out.add(prefix + k)
            out |= _keys(v, prefix + k + ".")
    elif isinstance(node, list):
        for v in node:
            out |= _keys(v, prefix + "[].")
    return out


def write_resources(path: Path, resources):
    """A DiscoveryResponse file for a path_config_source, replaced by atomic rename."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"version_info": str(time.monotonic_ns()), "resources": resources}))
    os.rename(tmp, path)


def path_source(path: Path):
    return {"pathConfigSource": {"path": str(path)}, "resourceApiVersion": "V3"}


class Proxy:
    """Starts Envoy processes for one test and stops them afterwards."""

    def __init__(self, tmp_path, monkeypatch):
        self.tmp_path, self.monkeypatch, self.started = tmp_path, monkeypatch, []

    def start(self, label, config, concurrency=2, env=None):
        for name, value in (env or {}).items():
            self.monkeypatch.setenv(name, value)  # the Envoy process inherits it
        workdir = self.tmp_path / f"envoy{len(self.started)}-{label}"
        workdir.mkdir()
        envoy = Envoy(label, config, workdir, concurrency, "warning", binary=envoy_bin())
        self.started.append(envoy)
        envoy.wait_ready()
        return envoy

    def stop(self):
        for envoy in self.started:
            envoy.stop()


@pytest.fixture
def proxy(tmp_path, monkeypatch, request):
    p = Proxy(tmp_path, monkeypatch)
    yield p
    p.stop()
    for envoy in p.started:  # shown by pytest only when the test failed
        print(f"---- {envoy.log_path}\n{envoy.log_tail()}")


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def module_server(tmp_path):
    """The release module served over HTTP on loopback, named by its sha256 like Envoy Gateway's
    Wasm cache does: (uri, sha256, port)."""
    wasm = require_wasm()
    root = tmp_path / "wasm-cache"
    root.mkdir()
    data = wasm.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    (root / f"{sha}.wasm").write_bytes(data)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietFiles, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    yield f"http://127.0.0.1:{port}/{sha}.wasm", sha, port
    server.shutdown()


def served(envoy, path, headers=()):
    status, response_headers, body = http(envoy, path, [("host", HOST), *headers], timeout=10)
    cookies = [v for k, v in response_headers if k == "set-cookie"]
    return status, body if isinstance(body, dict) else {}, cookies


# ---- Envoy Gateway ------------------------------------------------------------------------------


def eep_wasm():
    """The `wasm` entry of the shipped EnvoyExtensionPolicy."""
    (doc,) = [d for d in yaml.safe_load_all((EG_DIR / "envoyextensionpolicy.yaml").read_text())]
    (wasm,) = doc["spec"]["wasm"]
    return doc, wasm


def btp_spec():
    (doc,) = list(yaml.safe_load_all((EG_DIR / "backendtrafficpolicy.yaml").read_text()))
    return doc["spec"]


def eg_filter_name(namespace, policy, index=0):
    return f"envoy.filters.http.wasm/envoyextensionpolicy/{namespace}/{policy}/wasm/{index}"


def eg_wasm_filter(namespace, policy, wasm, filter_config, uri, sha):
    """The HTTP filter Envoy Gateway renders for `wasm` (one entry of EnvoyExtensionPolicy
    namespace/policy): the golden filter that has every optional part (environmentVariables),
    with our values substituted."""
    (listener,) = golden("wasm.listeners.yaml")
    hcm = listener["defaultFilterChain"]["filters"][0]["typedConfig"]
    template = next(f for f in hcm["httpFilters"]
                    if "environmentVariables" in f.get("typedConfig", {}).get("config", {}).get("vmConfig", {}))
    f = copy.deepcopy(template)
    name = eg_filter_name(namespace, policy)
    f["name"] = name
    config = f["typedConfig"]["config"]
    config["name"] = wasm.get("name") or name.split("/", 1)[1]
    if wasm.get("rootID"):
        config["rootId"] = wasm["rootID"]
    if wasm.get("failOpen"):
        config["failOpen"] = True
    # Envoy Gateway passes `config` on as JSON text (as the API server stored it: sorted keys).
    config["configuration"]["value"] = json.dumps(filter_config, sort_keys=True, separators=(",", ":"))
    vm = config["vmConfig"]
    vm["vmId"] = name.split("/", 1)[1]
    vm["code"]["remote"]["httpUri"].update(uri=uri, cluster="wasm_cluster")
    vm["code"]["remote"]["sha256"] = sha
    vm["environmentVariables"]["hostEnvKeys"] = list(wasm["env"]["hostKeys"])
    assert _keys(f) - _keys(template) <= {"typedConfig.config.rootId", "typedConfig.config.failOpen"}
    assert f["disabled"] is True
    return f


def eg_retry_policy(retry):
    """route.retryPolicy as Envoy Gateway's translator renders a BackendTrafficPolicy `retry`
    (buildRetryPolicy: previous_hosts predicate, 5 host selection attempts, the triggers joined)."""
    return {
        "retryOn": ",".join(retry["retryOn"]["triggers"]),
        "numRetries": retry["numRetries"],
        "retryHostPredicate": [{"name": "envoy.retry_host_predicates.previous_hosts", "typedConfig": {
            "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"}}],
        "hostSelectionRetryMaxAttempts": "5",
    }


def eg_cluster(name, eds_path, override_header=None):
    """A route's cluster as Envoy Gateway renders it: the golden LeastRequest cluster, or with
    `endpointOverride` the golden override_host cluster whose fallback is that LeastRequest policy
    (Envoy Gateway renders the BackendTrafficPolicy's `type` as the fallback). EDS from a file."""
    least_request = next(c for c in golden("wasm.clusters.yaml") if c["name"].startswith("httproute/"))
    if override_header is None:
        c = copy.deepcopy(least_request)
    else:
        (c,) = copy.deepcopy(golden("load-balancer-endpointoverride-backend-utilization-weighted-zones.clusters.yaml"))
        (policy,) = c["loadBalancingPolicy"]["policies"]
        typed = policy["typedExtensionConfig"]["typedConfig"]
        typed["overrideHostSources"] = [{"header": override_header}]
        typed["fallbackPolicy"] = copy.deepcopy(least_request["loadBalancingPolicy"])
    c["name"] = name
    c["connectTimeout"] = "1s"
    c["edsClusterConfig"] = {"edsConfig": path_source(eds_path), "serviceName": name}
    return c


def eg_endpoints(name, upstreams):
    """The ClusterLoadAssignment Envoy Gateway sends for a route's backend (one locality)."""
    return {
        "@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
        "clusterName": name,
        "endpoints": [{
            "locality": {"region": f"{name}/backend/0"},
            "loadBalancingWeight": 1,
            "lbEndpoints": [{"endpoint": {"address": {"socketAddress": {"address": "127.0.0.1", "portValue": u.port}}},
                             "loadBalancingWeight": 1} for u in upstreams],
        }],
    }


def eg_config(tmp_path, routes, uri, sha, wasm_port):
    """routes: [(path prefix, route name, upstreams, filter or None)]. Returns the bootstrap."""
    (listener,) = copy.deepcopy(golden("wasm.listeners.yaml"))
    (route_config,) = copy.deepcopy(golden("wasm.routes.yaml"))
    hcm = listener["defaultFilterChain"]["filters"][0]["typedConfig"]
    router = hcm["httpFilters"][-1]
    assert router["name"] == "envoy.filters.http.router"
    hcm["httpFilters"] = [f for _, _, _, f in routes if f is not None] + [router]
    rds_path = tmp_path / "rds.json"
    hcm["rds"]["configSource"] = {**path_source(rds_path), "initialFetchTimeout": "0s"}
    listener["address"]["socketAddress"] = {"address": "127.0.0.1", "portValue": 0}

    (vhost,) = route_config["virtualHosts"]
    template = vhost["routes"][0]
    vhost["domains"] = [HOST]
    vhost["name"] = f"{route_config['name']}/{HOST.replace('.', '_')}"
    vhost["routes"] = []
    clusters = []
    retry = eg_retry_policy(btp_spec()["retry"])
    for prefix, route_name, ups, f in routes:
        r = copy.deepcopy(template)
        cluster = f"httproute/shop/{route_name}/rule/0"
        # Envoy Gateway's buildXdsRouteMatch: "/" stays a prefix, others are path-separated.
        r["match"] = {"prefix": "/"} if prefix == "/" else {"pathSeparatedPrefix": prefix}
        r["name"] = f"{cluster}/match/0/{HOST.replace('.', '_')}"
        r["route"]["cluster"] = cluster
        eds_path = tmp_path / f"eds-{route_name}.json"
        write_resources(eds_path, [eg_endpoints(cluster, ups)])
        if f is None:
            r.pop("typedPerFilterConfig")
            clusters.append(eg_cluster(cluster, eds_path))
        else:
            r["typedPerFilterConfig"] = {f["name"]: {
                "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "config": {}}}
            r["route"]["retryPolicy"] = retry
            header = btp_spec()["loadBalancer"]["endpointOverride"]["extractFrom"][0]["header"]
            clusters.append(eg_cluster(cluster, eds_path, override_header=header))
        vhost["routes"].append(r)
    write_resources(rds_path, [{"@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
                                **route_config}])
    # The module comes from "Envoy Gateway's Wasm cache" (golden: DNS + TLS to the controller's
    # `wasm_cluster`): a plain HTTP server on loopback here, under the same cluster name.
    assert [c["name"] for c in golden("wasm.clusters.yaml")].count("wasm_cluster") == 1
    wasm_cluster = {
        "name": "wasm_cluster", "type": "STATIC", "connectTimeout": "2s",
        "loadAssignment": {"clusterName": "wasm_cluster", "endpoints": [{"lbEndpoints": [{"endpoint": {
            "address": {"socketAddress": {"address": "127.0.0.1", "portValue": wasm_port}}}}]}]},
    }
    return {
        # Envoy Gateway's proxies identify as their Gateway (file-based xDS needs a node too).
        "node": {"id": "envoy-shop-shop", "cluster": "shop/shop"},
        "admin": {"address": {"socketAddress": {"address": "127.0.0.1", "portValue": 0}}},
        "staticResources": {"listeners": [listener], "clusters": clusters + [wasm_cluster]},
    }


def eg_filter_config(ups, cookie_name):
    """The shipped policy's filter config, with these upstreams as hosts."""
    _, wasm = eep_wasm()
    cfg = copy.deepcopy(wasm["config"])
    cfg["hosts"] = [{"address": u.addr, "id": f"{cookie_name}-{i}"} for i, u in enumerate(ups)]
    cfg["sticky_cookie"]["name"] = cookie_name
    return cfg


def test_envoy_gateway_rendered_shape(upstreams, proxy, module_server, tmp_path):
    uri, sha, wasm_port = module_server
    ups = upstreams(8)
    a, b, c = ups[0:3], ups[3:6], ups[6:8]
    _, wasm = eep_wasm()
    fa = eg_wasm_filter("shop", "session-router", wasm, eg_filter_config(a, "__Host-srv-a"), uri, sha)
    fb = eg_wasm_filter("shop", "session-router-b", {**wasm, "name": "session-router-b"},
                        eg_filter_config(b, "__Host-srv-b"), uri, sha)
    routes = [("/a", "shop", a, fa), ("/b", "shop-b", b, fb), ("/c", "other", c, None)]
    config = eg_config(tmp_path, routes, uri, sha, wasm_port)
    envoy = proxy.start("envoy-gateway", config, env={SECRET_ENV: SECRET})

    # Two policies, two VMs: the filters are distinct and both configured (one line per worker).
    dump = envoy.admin("/config_dump")
    (active,) = [c for c in json.loads(dump)["configs"] if c["@type"].endswith("ListenersConfigDump")]
    (live,) = active["static_listeners"]
    live_filters = live["listener"]["default_filter_chain"]["filters"][0]["typed_config"]["http_filters"]
    assert [(f["name"], f.get("disabled", False)) for f in live_filters] == [
        (fa["name"], True), (fb["name"], True), ("envoy.filters.http.router", False)]
    assert set(re.findall(r'"vm_id": "(envoyextensionpolicy/[^"]+)"', dump)) == {
        "envoyextensionpolicy/shop/session-router/wasm/0", "envoyextensionpolicy/shop/session-router-b/wasm/0"}
    # Each VM logs (under its vm_id) its own config, once per worker.
    for vm_id, cookie_name in (("envoyextensionpolicy/shop/session-router/wasm/0", "__Host-srv-a"),
                               ("envoyextensionpolicy/shop/session-router-b/wasm/0", "__Host-srv-b")):
        line = re.compile(re.escape(vm_id) + r": session-router v\S+: 3 hosts, .*sticky cookie " + re.escape(cookie_name) + ",")
        assert wait_for(lambda: len(line.findall(envoy.log_text())) >= 2, 10), f"{vm_id}: not configured per worker"
    assert SECRET not in envoy.log_text()

    by_port = {u.port: u.name for u in ups}
    for prefix, members, cookie_name in (("/a", a, "__Host-srv-a"), ("/b", b, "__Host-srv-b")):
        names = {u.name for u in members}
        addrs = {u.addr for u in members}
        # Hashed sessions stick, each within its route's own backends.
        for i in range(30):
            seen = set()
            for _ in range(3):
                status, body, cookies = served(envoy, f"{prefix}/x", [("x-user-id", f"user-{i}")])
                assert status == 200
                seen.add(body["name"])
                listed = body["headers"][HEADER].split(",")
                assert len(listed) == 3 and set(listed) == addrs, listed  # primary + 2 fallbacks, all its own
                assert by_port[int(listed[0].rsplit(":", 1)[1])] == body["name"]
            assert len(seen) == 1 and seen <= names, (prefix, i, seen)
        # A new visitor gets the route's signed cookie (key from host_env_keys) and sticks by it.
        status, body, cookies = served(envoy, f"{prefix}/")
        (cookie,) = cookies
        assert cookie.startswith(cookie_name + "=") and "Secure" in cookie and "HttpOnly" in cookie
        pinned = cookie.split(";")[0]
        for _ in range(5):
            status, again, more = served(envoy, f"{prefix}/", [("cookie", pinned)])
            assert (status, again["name"], more) == (200, body["name"], [])

    # The third route runs no filter: no header to the upstream, no cookie to the client, and
    # no decision counted by either VM.
    def decisions():
        return sum(v for k, v in filter_counters(envoy).items() if k.startswith("session_router.decision."))

    assert decisions() >= 2 * (30 * 3 + 1 + 5)
    before = decisions()
    for i in range(10):
        status, body, cookies = served(envoy, "/c/x", [("x-user-id", f"user-{i}")])
        assert status == 200 and body["name"] in {u.name for u in c}
        assert HEADER not in body["headers"] and cookies == []
    assert decisions() == before


def test_envoy_gateway_backend_killed_under_load(upstreams, proxy, module_server, tmp_path):
    """A route's backend dies under load: Envoy Gateway's override_host cluster and retry policy
    send each request to the next address the filter listed; no request fails."""
    uri, sha, wasm_port = module_server
    ups = upstreams(3)
    _, wasm = eep_wasm()
    f = eg_wasm_filter("shop", "session-router", wasm, eg_filter_config(ups, "__Host-srv"), uri, sha)
    envoy = proxy.start("envoy-gateway", eg_config(tmp_path, [("/", "shop", ups, f)], uri, sha, wasm_port),
                        env={SECRET_ENV: SECRET})
    keys = [f"user-{i}" for i in range(60)]
    before = {k: served(envoy, "/", [("x-user-id", k)])[1]["name"] for k in keys}
    victim = ups[1]
    stop, results = threading.Event(), []

    def load(worker):
        i = worker
        while not stop.is_set():
            key = keys[i % len(keys)]
            try:
                status, body, _ = served(envoy, "/", [("x-user-id", key)])
                results.append((key, status, body.get("name")))
            except OSError as e:
                results.append((key, 0, str(e)))
            i += 4

    with ThreadPoolExecutor(4) as pool:
        for w in range(4):
            pool.submit(load, w)
        time.sleep(0.5)
        victim.stop()
        time.sleep(1.5)
        stop.set()
    failed = [r for r in results if r[1] != 200]
    after = {k: served(envoy, "/", [("x-user-id", k)])[1]["name"] for k in keys}
    moved = {k for k in keys if after[k] != before[k]}
    on_victim = {k for k in keys if before[k] == victim.name}
    print(f"envoy-gateway shape: {len(results)} requests, {len(failed)} failed, {len(moved)} sessions moved")
    assert len(results) > 50 and on_victim
    assert failed == [], failed[:5]
    assert moved == on_victim, "only the killed backend's sessions move"
    assert victim.name not in set(after.values())


def test_envoy_gateway_secret_comes_only_from_the_environment(upstreams, proxy, module_server, tmp_path):
    """Without the variable in the proxy's environment the filter refuses its config (it never
    falls back to a default key), and Envoy logs why."""
    uri, sha, wasm_port = module_server
    ups = upstreams(1)
    _, wasm = eep_wasm()
    f = eg_wasm_filter("shop", "session-router", wasm, eg_filter_config(ups, "__Host-srv"), uri, sha)
    config = eg_config(tmp_path, [("/", "shop", ups, f)], uri, sha, wasm_port)
    proxy.monkeypatch.delenv(SECRET_ENV, raising=False)
    workdir = tmp_path / "no-secret"
    workdir.mkdir()
    envoy = Envoy("envoy-gateway", config, workdir, 1, "warning", binary=envoy_bin())
    proxy.started.append(envoy)
    assert wait_for(lambda: "configuration rejected: sticky_cookie.secret_env" in envoy.log_text(), 30), envoy.log_tail()


def test_envoy_gateway_module_is_checked_by_sha256(upstreams, proxy, module_server, tmp_path):
    """The module is fetched by URL and verified: with a wrong sha256 the filter does not load, and
    the route fails closed (failOpen: false) instead of routing without it."""
    uri, sha, wasm_port = module_server
    ups = upstreams(1)
    _, wasm = eep_wasm()
    bad = "0" * 64
    f = eg_wasm_filter("shop", "session-router", wasm, eg_filter_config(ups, "__Host-srv"), uri, bad)
    f["typedConfig"]["config"]["vmConfig"]["code"]["remote"]["retryPolicy"]["numRetries"] = 0
    envoy = proxy.start("envoy-gateway", eg_config(tmp_path, [("/", "shop", ups, f)], uri, bad, wasm_port),
                        env={SECRET_ENV: SECRET})
    assert "Plugin session-router failed to load" in envoy.log_text()
    status, _, cookies = served(envoy, "/", [("x-user-id", "alice")])
    assert (status, cookies, ups[0].requests) == (503, [], [])


# ---- Istio: extension config discovery -----------------------------------------------------------


def jsonpb_struct(value) -> str:
    """A google.protobuf.Struct as istiod writes a WasmPlugin's pluginConfig into the filter's
    `configuration` (pkg/util/protomarshal.ToJSON: golang/protobuf jsonpb, no indent): map keys
    sorted, no spaces, every number a double printed by encoding/json (integral values without a
    fraction, exponent only below 1e-6 or from 1e21), strings with <, >, & escaped."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{jsonpb_struct(k)}:{jsonpb_struct(value[k])}" for k in sorted(value)) + "}"
    if isinstance(value, list):
        return "[" + ",".join(jsonpb_struct(v) for v in value) + "]"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        number = float(value)  # Struct has no integers
        assert math.isfinite(number)
        if number.is_integer() and abs(number) < 1e21:
            return str(int(number))
        return repr(number)
    text = json.dumps(value)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    return text


def wasmplugin():
    (doc,) = list(yaml.safe_load_all((ISTIO_DIR / "wasmplugin-gateway.yaml").read_text()))
    return doc


def istio_extension_config(plugin, wasm, resource_version):
    """The TypedExtensionConfig istiod sends for a WasmPlugin (pilot/pkg/model/extensions.go),
    after istio-agent rewrote the remote image to the local file it pulled."""
    spec = plugin["spec"]
    name = f"{plugin['metadata']['namespace']}.{plugin['metadata']['name']}"
    env = spec.get("vmConfig", {}).get("env", [])
    key_values = {"ISTIO_META_WASM_IMAGE_PULL_POLICY": spec["imagePullPolicy"],
                  "ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION": str(resource_version)}
    key_values.update({e["name"]: e.get("value", "") for e in env if e.get("valueFrom", "INLINE") == "INLINE"})
    config = {
        "name": name,
        "root_id": spec["pluginName"],
        "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                          "value": jsonpb_struct(spec["pluginConfig"])},
        "vm_config": {
            "runtime": "envoy.wasm.runtime.v8",
            "code": {"local": {"filename": str(wasm)}},
            "environment_variables": {
                "key_values": key_values,
                "host_env_keys": [e["name"] for e in env if e.get("valueFrom") == "HOST"],
            },
        },
    }
    if spec.get("failStrategy") == "FAIL_OPEN":
        config["fail_open"] = True
    return {"@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig", "name": name,
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm", "config": config}}


def istio_patches(apply_to):
    (doc, _) = list(yaml.safe_load_all((ISTIO_DIR / "envoyfilter-override-host.yaml").read_text()))
    (patch,) = [p for p in doc["spec"]["configPatches"] if p["applyTo"] == apply_to]
    return patch["patch"]["value"]


def istio_config(ecds_path, ecds_name, ups):
    """An Istio gateway-shaped Envoy: the plugin's HTTP filter through ECDS (as istiod writes it,
    a config_source, here a file, and the Wasm type URL), the backend cluster and route with the
    EnvoyFilter patches of envoy/istio/envoyfilter-override-host.yaml applied."""
    cluster_name = "outbound|8080||backend.shop.svc.cluster.local"
    cluster = {
        "name": cluster_name, "type": "STATIC", "connect_timeout": "1s",
        "circuit_breakers": {"thresholds": [{"max_retries": 4294967295}]},
        "load_assignment": {"cluster_name": cluster_name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": u.port}}}} for u in ups]}]},
        **istio_patches("CLUSTER"),
    }
    route = {"match": {"prefix": "/"}, "route": {"cluster": cluster_name, **istio_patches("HTTP_ROUTE")["route"]}}
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "outbound_0.0.0.0_8080",
        "route_config": {"name": "http.8080", "virtual_hosts": [{"name": "shop.example.com:443", "domains": ["*"], "routes": [route]}]},
        "http_filters": [
            # istiod's toEnvoyHTTPFilter: named <namespace>.<name>, ADS (a file here), the listener
            # blocked until the config arrives, Wasm or (the agent's fail-closed stand-in) RBAC.
            {"name": ecds_name, "config_discovery": {
                "config_source": {"path_config_source": {"path": str(ecds_path)}, "resource_api_version": "V3",
                                  "initial_fetch_timeout": "0s"},
                "type_urls": ["type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                              "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"]}},
            {"name": "envoy.filters.http.router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}},
        ],
    }
    return {
        "node": {"id": "router~127.0.0.1~istio-ingressgateway.istio-system~istio-system.svc.cluster.local",
                 "cluster": "istio-ingressgateway.istio-system"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [{"name": "0.0.0.0_8080", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                           "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                                           "typed_config": hcm}]}]}],
            "clusters": [cluster],
        },
    }


def test_jsonpb_struct_matches_istiod():
    """The serializer above, against what golang/protobuf's jsonpb prints for a Struct."""
    assert jsonpb_struct({"b": 256, "a": [1.5, True, None, "x<y"], "c": {"z": 3600.0, "y": 1e21}}) == \
        '{"a":[1.5,true,null,"x\\u003cy"],"b":256,"c":{"y":1e+21,"z":3600}}'


@pytest.mark.parametrize("resource_version", ["same", "bumped"])
def test_istio_ecds_delivery_and_update(upstreams, proxy, tmp_path, resource_version):
    """`same`: only the plugin config changes — applied in place to the running VMs (no worker VM
    is created; Envoy builds one short-lived VM on the main thread for the new config).
    `bumped`: what istiod really sends for an edited WasmPlugin — its new resourceVersion is in
    the VM's key_values (ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION), and Envoy treats a changed VM
    environment as a new VM: every worker's VM is replaced. Either way no cookie session moves and
    hashed sessions move only to the new host (the ring and the cookies do not live in the VM)."""
    wasm = require_wasm()
    concurrency = 2
    ups = upstreams(4)
    plugin = wasmplugin()
    spec = plugin["spec"]
    # The manifest's config, with these upstreams as the pods; the cookie without __Host-'s
    # Secure requirement mattering (the test client sends cookies itself).
    spec["pluginConfig"]["hosts"] = [{"address": u.addr, "id": f"backend-{i}"} for i, u in enumerate(ups[:3])]
    name = f"{plugin['metadata']['namespace']}.{plugin['metadata']['name']}"
    ecds = tmp_path / "ecds.json"
    write_resources(ecds, [istio_extension_config(plugin, wasm, 1)])
    envoy = proxy.start("istio-ecds", istio_config(ecds, name, ups), concurrency=concurrency, env={SECRET_ENV: SECRET})
    assert wait_for(lambda: len(re.findall(r"session-router v\S+: 3 hosts", envoy.log_text())) >= 2, 10)
    dump = json.loads(envoy.admin("/config_dump"))
    ecds_dump = [c for c in dump["configs"] if c["@type"].endswith("EcdsConfigDump")]
    assert ecds_dump and name in json.dumps(ecds_dump), "the filter came through ECDS"

    keys = [f"user-{i}" for i in range(200)]

    def owner(headers):
        status, body, cookies = served(envoy, "/", headers)
        assert status == 200
        return body["name"], cookies

    hashed_before = {k: owner([("x-jwt-sub", k)])[0] for k in keys}
    assert set(hashed_before.values()) == {u.name for u in ups[:3]}
    sessions = []
    for _ in range(30):
        host, cookies = owner([])
        (cookie,) = cookies
        sessions.append((cookie.split(";")[0], host))
    assert {h for _, h in sessions} <= {u.name for u in ups[:3]}

    stats = envoy.stats()
    vms_before = (stats.get("wasm.envoy.wasm.runtime.v8.created"), stats.get("wasm.envoy.wasm.runtime.v8.active"))
    reloads = [k for k in stats if k.startswith("extension_config_discovery.") and k.endswith(".config_reload")]
    assert reloads, sorted(k for k in stats if "extension_config" in k)
    reload_key = reloads[0]
    reloads_before = stats[reload_key]

    # Traffic keeps flowing while the update lands: no request may fail.
    stop, during = threading.Event(), []

    def load(worker):
        i = worker
        while not stop.is_set():
            try:
                during.append(served(envoy, "/", [("x-jwt-sub", keys[i % len(keys)])])[0])
            except OSError as e:
                during.append(str(e))
            i += 3

    pool = ThreadPoolExecutor(3)
    for w in range(3):
        pool.submit(load, w)
    time.sleep(0.3)
    # The WasmPlugin changes: a host added. istiod pushes the new resource.
    spec["pluginConfig"]["hosts"].append({"address": ups[3].addr, "id": "backend-3"})
    write_resources(ecds, [istio_extension_config(plugin, wasm, 1 if resource_version == "same" else 2)])
    try:
        assert wait_for(lambda: envoy.stats().get(reload_key, 0) > reloads_before, 15), "ECDS update not applied"
        assert wait_for(lambda: len(re.findall(r"session-router v\S+: 4 hosts", envoy.log_text())) >= 2, 10)
        time.sleep(0.5)
    finally:
        stop.set()
        pool.shutdown(wait=True)
    assert len(during) > 20 and set(during) == {200}, f"{len(during)} requests during the update: {set(during)}"

    stats = envoy.stats()
    vms_after = (stats.get("wasm.envoy.wasm.runtime.v8.created"), stats.get("wasm.envoy.wasm.runtime.v8.active"))
    created = vms_after[0] - vms_before[0]
    print(f"istio ecds ({resource_version} resourceVersion): VMs (created, active) before {vms_before}, "
          f"after {vms_after}")
    assert vms_after[1] == vms_before[1], "as many VMs as before"
    if resource_version == "same":
        assert created < concurrency, f"{created} VMs created: a worker's VM was replaced"
    else:
        assert created >= concurrency + 1, f"only {created} VMs created: Envoy now keeps VMs across env changes?"

    for cookie, host in sessions:
        assert owner([("cookie", cookie)])[0] == host, "a cookie session moved"
    hashed_after = {k: owner([("x-jwt-sub", k)])[0] for k in keys}
    moved = {k: hashed_after[k] for k in keys if hashed_after[k] != hashed_before[k]}
    share = len(moved) / len(keys)
    print(f"istio ecds: {len(moved)}/{len(keys)} hashed sessions moved ({share:.0%}, optimum 25%)")
    assert set(moved.values()) == {ups[3].name}, "hashed sessions move only to the new host"
    assert 0.12 <= share <= 0.40


def test_istio_ecds_rejects_a_bad_update_and_keeps_routing(upstreams, proxy, tmp_path):
    """A WasmPlugin edited into an invalid config (two hosts with one address): the filter's
    on_configure refuses it, Envoy rejects the ECDS update and keeps the running config, and
    traffic goes on being routed by it — no 5xx, even with failStrategy FAIL_CLOSE."""
    wasm = require_wasm()
    ups = upstreams(3)
    plugin = wasmplugin()
    spec = plugin["spec"]
    spec["pluginConfig"]["hosts"] = [{"address": u.addr, "id": f"backend-{i}"} for i, u in enumerate(ups)]
    name = f"{plugin['metadata']['namespace']}.{plugin['metadata']['name']}"
    ecds = tmp_path / "ecds.json"
    write_resources(ecds, [istio_extension_config(plugin, wasm, 1)])
    envoy = proxy.start("istio-ecds", istio_config(ecds, name, ups), env={SECRET_ENV: SECRET})
    keys = [f"user-{i}" for i in range(40)]
    before = {k: served(envoy, "/", [("x-jwt-sub", k)])[1]["name"] for k in keys}
    fails = [k for k in envoy.stats() if k.startswith("extension_config_discovery.") and k.endswith(".config_fail")]
    assert fails, sorted(k for k in envoy.stats() if k.startswith("extension_config_discovery."))

    spec["pluginConfig"]["hosts"].append({"address": ups[0].addr, "id": "backend-dup"})
    write_resources(ecds, [istio_extension_config(plugin, wasm, 2)])
    assert wait_for(lambda: envoy.stats().get(fails[0], 0) >= 1, 15), "the bad update was not rejected"
    assert "configuration rejected: hosts[3].address" in envoy.log_text()
    for k in keys:
        status, body, _ = served(envoy, "/", [("x-jwt-sub", k)])
        assert (status, body["name"]) == (200, before[k])
