"""The filter delivered the way Istio delivers it, in a real Envoy.

Istio (test_istio_ecds_*): a WasmPlugin as istiod delivers it — extension config discovery (the HTTP
filter carries `config_discovery`; the Wasm config is a TypedExtensionConfig resource, here served
from a file and replaced by atomic rename), `pluginConfig` as a protobuf Struct serialized to JSON
the way istiod does (golang/protobuf jsonpb: sorted keys, every number a double), `vmConfig.env`
HOST entries as `host_env_keys`, the key_values istiod adds; the cluster and route patched by
envoy/istio/envoyfilter-override-host.yaml. Then a changed WasmPlugin (a host added) is applied
in place: no new VM, no cookie session moves, hashed sessions move only to the new host.

Envoy Gateway: test_control_plane_envoy_gateway.py.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml
from conftest import require_wasm, wait_for
from control_plane_support import ISTIO_DIR, SECRET, SECRET_ENV, served, write_resources
from control_plane_support import proxy  # noqa: F401 (fixtures)


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
