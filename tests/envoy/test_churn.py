"""Rolling deploys in a real Envoy (issue 12): a file-based EDS cluster followed through Envoy's
admin API (`envoy_admin` discovery), hosts replaced one by one — each failing its probes before
it leaves, as a replaced pod does — and afterwards a backend killed under load is ejected as on
day one, while the shared health table holds only current hosts."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from conftest import filter_counters as counters
from conftest import http, wait_for
from harness import static_cluster, write_eds  # noqa: F401 (re-exported to test_two_plugins, soak)

INTERVAL_MS = 200
ROUNDS = 20


def eds_cluster(name, path, template):
    """`template` (a static cluster dict with the override_host policy) turned into an EDS
    cluster named `name` that reads `path`."""
    cluster = {k: v for k, v in template.items() if k != "load_assignment"}
    cluster.update(name=name, type="EDS", eds_cluster_config={"eds_config": {
        "resource_api_version": "V3",
        "path_config_source": {"path": str(path), "watched_directory": {"path": str(path.parent)}}}})
    return cluster


def filter_config(seed, target_cluster, probe_cluster, secret):
    return {
        "hosts": [{"address": seed}],
        "sources": [{"type": "header", "name": "x-user-id"}],
        "sticky_cookie": {"name": "srv", "ttl_seconds": 3600, "secret": secret, "secure": False},
        "target": {"header": "x-gateway-destination-endpoint", "fallbacks": 2},
        "health": {
            "passive": {"consecutive_failures": 3, "ejection_seconds": 30},
            "active": {"cluster": probe_cluster, "path": "/healthz", "interval_ms": INTERVAL_MS,
                       "timeout_ms": 150, "unhealthy_threshold": 2, "healthy_threshold": 2},
        },
        # The backends are on loopback, which discovery refuses unless listed (README "Security notes").
        "discovery": {"type": "envoy_admin", "cluster": "envoy_admin", "target_cluster": target_cluster,
                      "interval_ms": INTERVAL_MS, "allowed_cidrs": ["127.0.0.1/32"]},
    }


def admin_port_free():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def owner(envoy, key):
    status, _, body = http(envoy, "/", [("x-user-id", key)], timeout=5)
    return status, body["name"] if isinstance(body, dict) else None


def load(envoy, keys, stop, results):
    """Requests in a loop until `stop` is set; appends (time, key, status, host)."""
    def worker(w):
        i = w
        while not stop.is_set():
            key = keys[i % len(keys)]
            try:
                status, host = owner(envoy, key)
            except OSError:
                status, host = 0, None
            results.append((time.monotonic(), key, status, host))
            i += 4
    pool = ThreadPoolExecutor(4)
    for w in range(4):
        pool.submit(worker, w)
    return pool


def test_twenty_replacements_then_a_kill_under_load(upstreams, start_envoy, tmp_path):
    first = upstreams(4)
    pool_of_new = upstreams(ROUNDS)
    eds = tmp_path / "eds" / "backends.yaml"
    eds.parent.mkdir()
    current = list(first)
    write_eds(eds, "backends", [u.addr for u in current])
    admin_port = admin_port_free()

    def edit(config):
        config["node"] = {"id": "session-router-test", "cluster": "test"}
        config["admin"]["address"]["socket_address"]["port_value"] = admin_port
        clusters = config["static_resources"]["clusters"]
        (backends,) = [c for c in clusters if c["name"] == "backends"]
        clusters.remove(backends)
        clusters.append(eds_cluster("backends", eds, backends))
        clusters.append(static_cluster("envoy_admin", f"127.0.0.1:{admin_port}"))

    cfg = filter_config(first[0].addr, "backends", "backends", "churn-secret-0123456789abcdef0123456")
    envoy = start_envoy("override_host", cfg, concurrency=2, edit=edit)
    c = lambda: counters(envoy)  # noqa: E731
    assert wait_for(lambda: c().get("session_router.membership.hosts") == 4, 5)
    started = time.monotonic()
    detect_times = []
    for round_ in range(ROUNDS):
        leaving, joining = current[0], pool_of_new[round_]
        ejections = c().get("session_router.health.ejections", 0)
        generation = c()["session_router.membership.generation"]
        t0 = time.monotonic()
        leaving.stop()  # its probes fail before it leaves, as a replaced pod's do
        assert wait_for(lambda: c().get("session_router.health.ejections", 0) > ejections, 5), \
            f"round {round_}: {leaving.name} not taken out"
        detect_times.append(time.monotonic() - t0)
        current = current[1:] + [joining]
        write_eds(eds, "backends", [u.addr for u in current])
        assert wait_for(lambda: c()["session_router.membership.generation"] > generation
                        and c().get("session_router.membership.hosts") == 4, 5), f"round {round_}: membership"
    churn_s = time.monotonic() - started
    # The lease holder prunes departed hosts: the table holds current hosts only (all healthy: none).
    assert wait_for(lambda: c().get("session_router.health.table_entries") == 0, 3), c()
    time.sleep(2 * INTERVAL_MS / 1000)  # every worker on the last generation
    assert {owner(envoy, f"k{i}")[1] for i in range(40)} == {u.name for u in current}

    # Day 21: a backend dies under load and is ejected by passive health, as on day one.
    keys = [f"user-{i}" for i in range(60)]
    before = {k: owner(envoy, k)[1] for k in keys}
    victim = next(u for u in current if u.name in before.values())
    ejections = c().get("session_router.health.ejections", 0)
    stop, results = threading.Event(), []
    pool = load(envoy, keys, stop, results)
    time.sleep(0.5)
    killed = time.monotonic()
    victim.stop()
    ejected = wait_for(lambda: c().get("session_router.health.ejections", 0) > ejections, 5)
    eject_s = time.monotonic() - killed
    time.sleep(0.5)
    stop.set()
    pool.shutdown()
    failed = [r for r in results if r[2] != 200]
    log = envoy.log_text()
    print(f"churn: {ROUNDS} replacements in {churn_s:.1f}s (probe detection median "
          f"{sorted(detect_times)[len(detect_times) // 2]:.2f}s, max {max(detect_times):.2f}s); "
          f"then a kill under load: ejected after {eject_s:.2f}s, {len(results)} requests, {len(failed)} failed, "
          f"health table {c().get('session_router.health.table_entries')} entries")
    assert ejected
    assert f"host pod-{victim.port} (" in log and "half the hosts are down" not in log
    assert failed == [], "override_host with fallbacks: no request fails"
    after = {k: owner(envoy, k)[1] for k in keys}
    assert {k for k in keys if after[k] != before[k]} == {k for k in keys if before[k] == victim.name}
    assert wait_for(lambda: c().get("session_router.health.table_entries", 99) <= 1, 3), c()
    assert c()["session_router.health.healthy_hosts"] == 3
