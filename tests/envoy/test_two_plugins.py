"""Two session-router filters in one Envoy (issue 12): two listeners, two filter configs with
the same plugin name, root id and vm_id (two listeners copying one example), disjoint hosts and
discovery sources (envoy_admin over two file-based EDS clusters), both with passive and active
health. Each routes only to its own hosts through churn on both, and one's ejections never
touch the other."""

import copy
import json
import threading
import time

from conftest import Envoy, envoy_bin, http, render_config, require_wasm, wait_for
from test_churn import admin_port_free, eds_cluster, filter_config, load, static_cluster, write_eds

ROUNDS = 3


class TwoListenerEnvoy(Envoy):
    """An Envoy whose config has listeners `ingress` and `ingress_b`; `port` is ingress's."""

    def _listener_port(self):
        statuses = json.loads(self.admin("/listeners?format=json"))["listener_statuses"]
        self.ports = {s["name"]: s["local_address"]["socket_address"]["port_value"] for s in statuses}
        return self.ports["ingress"]


class Side:
    """What `http` needs to reach one listener."""

    def __init__(self, port):
        self.port = port


def routed(side, key):
    """(served host name, addresses the filter listed in its target header)."""
    status, _, body = http(side, "/", [("x-user-id", key)], timeout=5)
    assert status == 200, (status, body)
    return body["name"], body["headers"]["x-gateway-destination-endpoint"].split(",")


def test_two_plugins_with_one_vm_id_stay_apart_through_churn_and_ejections(upstreams, tmp_path):
    a_hosts, b_hosts = upstreams(3), upstreams(3)
    a_new, b_new = upstreams(ROUNDS), upstreams(ROUNDS)
    files = {}
    for side in ("a", "b"):
        files[side] = tmp_path / f"eds-{side}" / "backends.yaml"
        files[side].parent.mkdir()
    write_eds(files["a"], "backends_a", [u.addr for u in a_hosts])
    write_eds(files["b"], "backends_b", [u.addr for u in b_hosts])
    admin_port = admin_port_free()
    secret = "two-plugins-secret-0123456789abcdef01234"
    cfg_a = filter_config(a_hosts[0].addr, "backends_a", "backends_a", secret)
    cfg_b = filter_config(b_hosts[0].addr, "backends_b", "backends_b", secret)

    config = render_config("override_host", require_wasm(), cfg_a)
    config["node"] = {"id": "session-router-test", "cluster": "test"}
    config["admin"]["address"]["socket_address"]["port_value"] = admin_port
    clusters = config["static_resources"]["clusters"]
    (template,) = [c for c in clusters if c["name"] == "backends"]
    clusters.remove(template)
    clusters.append(eds_cluster("backends_a", files["a"], template))
    clusters.append(eds_cluster("backends_b", files["b"], template))
    clusters.append(static_cluster("envoy_admin", f"127.0.0.1:{admin_port}"))
    (listener_a,) = config["static_resources"]["listeners"]
    listener_b = copy.deepcopy(listener_a)
    listener_b["name"] = "ingress_b"
    for listener, cluster, cfg in ((listener_a, "backends_a", cfg_a), (listener_b, "backends_b", cfg_b)):
        hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        hcm["route_config"]["virtual_hosts"][0]["routes"][0]["route"]["cluster"] = cluster
        (wasm,) = [f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.wasm"]
        plugin = wasm["typed_config"]["config"]
        plugin["configuration"]["value"] = json.dumps(cfg)
        assert plugin["vm_config"]["vm_id"] == "session_router" and plugin["name"] == "session_router"
    config["static_resources"]["listeners"].append(listener_b)
    workdir = tmp_path / "envoy"
    workdir.mkdir()
    envoy = TwoListenerEnvoy("override_host", config, workdir, concurrency=2, binary=envoy_bin())
    try:
        envoy.wait_ready()
        side_a, side_b = Side(envoy.ports["ingress"]), Side(envoy.ports["ingress_b"])
        keys = [f"user-{i}" for i in range(40)]
        current = {"a": list(a_hosts), "b": list(b_hosts)}
        sides = {"a": side_a, "b": side_b}
        seen = {"a": set(), "b": set()}

        def check(side):
            """Every key lands on one of this side's current hosts, and the filter's target list
            names only this side's hosts (its own membership, not the other's)."""
            addrs = {u.addr for u in current[side]}
            owners = {}
            for k in keys:
                host, listed = routed(sides[side], k)
                seen[side].add(host)
                assert set(listed) <= addrs, f"{side}: listed {listed}, members {addrs}"
                owners[k] = host
            return owners

        def converged(side):
            try:
                return set(check(side).values()) == {u.name for u in current[side]}
            except AssertionError:
                return False

        for side in ("a", "b"):
            assert wait_for(lambda: converged(side), 10), f"{side} never routed over its own hosts"
        started = time.monotonic()
        for round_ in range(ROUNDS):
            for side, new in (("a", a_new), ("b", b_new)):
                leaving = current[side][0]
                leaving.stop()  # fails its probes, then leaves
                current[side] = current[side][1:] + [new[round_]]
            time.sleep(0.6)
            for side in ("a", "b"):
                write_eds(files[side], f"backends_{side}", [u.addr for u in current[side]])
            for side in ("a", "b"):
                assert wait_for(lambda: converged(side), 10), f"round {round_}: {side} did not follow its EDS"
        churn_s = time.monotonic() - started
        all_a = {u.name for u in a_hosts + a_new}
        all_b = {u.name for u in b_hosts + b_new}
        assert seen["a"] <= all_a and seen["b"] <= all_b, "a request crossed over to the other filter's hosts"

        # Kill one of A's hosts under load: A ejects it; B's sessions and hosts are untouched.
        owners_b = check("b")
        owners_a = check("a")
        victim = next(u for u in current["a"] if u.name in owners_a.values())
        log_before = len(envoy.log_text())
        stop, results = threading.Event(), []
        pool = load(side_a, keys, stop, results)
        time.sleep(0.3)
        victim.stop()
        ejected = wait_for(lambda: f"host pod-{victim.port} (" in envoy.log_text()[log_before:], 5)
        time.sleep(0.5)
        stop.set()
        pool.shutdown()
        failed = [r for r in results if r[2] != 200]
        moved_a = {k for k, h in check("a").items() if h != owners_a[k]}
        after_b = check("b")
        new_log = envoy.log_text()[log_before:]
        print(f"two plugins: {ROUNDS} replacements on each in {churn_s:.1f}s; A's kill: {len(results)} requests, "
              f"{len(failed)} failed, {len(moved_a)} of A's keys moved, B's keys moved "
              f"{sum(after_b[k] != owners_b[k] for k in keys)}")
        assert ejected and failed == []
        assert moved_a == {k for k in keys if owners_a[k] == victim.name}
        assert after_b == owners_b, "B's sessions moved when A's host died"
        for u in current["b"]:
            assert f"host pod-{u.port} (" not in new_log, f"B's host {u.name} touched by A's failure"
        assert envoy.running()
    finally:
        envoy.stop()
