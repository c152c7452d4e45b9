"""The filter delivered the way Envoy Gateway delivers it, in a real Envoy.

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

Istio: test_control_plane_istio.py.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import yaml
from conftest import Envoy, envoy_bin, filter_counters, wait_for
from control_plane_support import EG_DIR, HEADER, HOST, SECRET, SECRET_ENV, _keys, golden, path_source, served, write_resources
from control_plane_support import module_server, proxy  # noqa: F401 (fixtures)


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
