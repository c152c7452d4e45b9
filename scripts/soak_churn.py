"""The membership-churn soak (scripts/soak.py --churn): two filters over two file-based EDS
clusters, hosts replaced one by one on both under traffic."""

import json
import random
import threading
import time
from collections import Counter

from harness import Envoy, Upstream, envoy_bin, http, render_config, wasm_path
from soak_support import rss_kib, wasm_memory_kib


class ChurnSoak:
    """Membership churn (issue 12): one Envoy, two listeners whose session-router filters share
    name, root_id and vm_id but follow two file-based EDS clusters through `envoy_admin`
    discovery, with passive and active health. Every --replace-every seconds each side's oldest
    host stops (its probes fail, as a replaced pod's do) and, a second later, leaves its EDS file
    for a fresh host. Hashed traffic runs on both listeners throughout.

    Checks: no request crosses to the other filter's hosts; failures stay under 0.5% (override_host
    retries on the next host, so normally none); the health table stays bounded (gauge
    `health.table_entries` <= hosts per side + 1 at every sample) and memberships keep up (each side
    routes over exactly its current hosts after every replacement: no stall); Envoy RSS and the wasm
    memories stay flat by the same thresholds as the main soak."""

    HOSTS = 4

    def __init__(self, args, workdir):
        from test_churn import admin_port_free, eds_cluster, filter_config, static_cluster, write_eds
        self.args, self.workdir = args, workdir
        self.write_eds = write_eds
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.results = Counter()
        self.crossed = []
        self.ups = []
        self.counter = 0
        self.current, self.files = {}, {}
        for side in ("a", "b"):
            self.files[side] = workdir / f"eds-{side}" / "backends.yaml"
            self.files[side].parent.mkdir(parents=True, exist_ok=True)
            self.current[side] = [self.upstream(side) for _ in range(self.HOSTS)]
            write_eds(self.files[side], f"backends_{side}", [u.addr for u in self.current[side]])
        self.every = {"a": set(u.name for u in self.current["a"]), "b": set(u.name for u in self.current["b"])}
        admin_port = admin_port_free()
        secret = "soak-churn-secret-0123456789abcdef0123"
        cfgs = {side: filter_config(self.current[side][0].addr, f"backends_{side}", f"backends_{side}", secret)
                for side in ("a", "b")}
        for cfg in cfgs.values():
            cfg["health"]["active"]["interval_ms"] = 300
            cfg["discovery"]["interval_ms"] = 300
        config = render_config("override_host", wasm_path(), cfgs["a"])
        config["node"] = {"id": "session-router-soak", "cluster": "soak"}
        config["admin"]["address"]["socket_address"]["port_value"] = admin_port
        clusters = config["static_resources"]["clusters"]
        (template,) = [c for c in clusters if c["name"] == "backends"]
        clusters.remove(template)
        for side in ("a", "b"):
            clusters.append(eds_cluster(f"backends_{side}", self.files[side], template))
        clusters.append(static_cluster("envoy_admin", f"127.0.0.1:{admin_port}"))
        (listener_a,) = config["static_resources"]["listeners"]
        listener_b = json.loads(json.dumps(listener_a))
        listener_b["name"] = "ingress_b"
        for listener, side in ((listener_a, "a"), (listener_b, "b")):
            hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
            hcm["route_config"]["virtual_hosts"][0]["routes"][0]["route"]["cluster"] = f"backends_{side}"
            (wasm,) = [f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.wasm"]
            wasm["typed_config"]["config"]["configuration"]["value"] = json.dumps(cfgs[side])
        config["static_resources"]["listeners"].append(listener_b)
        self.config = config

    def upstream(self, side):
        self.counter += 1
        u = Upstream(f"{side}{self.counter}")
        self.ups.append(u)
        return u

    def client(self, side, port, index):
        rng = random.Random(index)
        pause = 8 / self.args.rate
        while not self.stop.is_set():
            key = f"user-{rng.randrange(2000)}"
            t = time.monotonic()

            class Side:
                pass
            target = Side()
            target.port = port
            try:
                status, _, body = http(target, "/", [("x-user-id", key)], timeout=5)
                host = body.get("name") if isinstance(body, dict) else None
            except OSError:
                status, host = 0, None
            with self.lock:
                self.results[(side, status)] += 1
                if host is not None and host not in self.every[side]:
                    self.crossed.append((side, host))
            time.sleep(max(0.0, pause - (time.monotonic() - t)))

    def converged(self, port, side):
        class Side:
            pass
        target = Side()
        target.port = port
        names = {u.name for u in self.current[side]}
        seen = set()
        for i in range(60):
            status, _, body = http(target, "/", [("x-user-id", f"probe-key-{i}")], timeout=5)
            if status != 200 or body.get("name") not in names:
                return False
            seen.add(body["name"])
        return seen == names

    def run(self):
        envoy = Envoy("override_host", self.config, self.workdir, self.args.concurrency, "warning",
                      binary=envoy_bin())
        self.envoy = envoy

        def listener_port():
            statuses = json.loads(envoy.admin("/listeners?format=json"))["listener_statuses"]
            envoy.ports = {s["name"]: s["local_address"]["socket_address"]["port_value"] for s in statuses}
            return envoy.ports["ingress"]
        envoy._listener_port = listener_port
        envoy.wait_ready()
        ports = {"a": envoy.ports["ingress"], "b": envoy.ports["ingress_b"]}
        threads = [threading.Thread(target=self.client, args=(side, ports[side], i), daemon=True)
                   for side in ("a", "b") for i in range(4)]
        for t in threads:
            t.start()
        t0 = time.monotonic()
        time.sleep(2)
        pid = envoy.pid
        warm = {"rss": rss_kib(pid), "wasm": wasm_memory_kib(pid)[0], "memories": wasm_memory_kib(pid)[2]}
        samples, stalls, replacements = [], [], 0
        while time.monotonic() - t0 < self.args.duration:
            for side in ("a", "b"):
                leaving = self.current[side][0]
                leaving.stop()
            time.sleep(1.0)  # probes fail before the hosts leave
            for side in ("a", "b"):
                fresh = self.upstream(side)
                self.every[side].add(fresh.name)
                self.current[side] = self.current[side][1:] + [fresh]
                self.write_eds(self.files[side], f"backends_{side}", [u.addr for u in self.current[side]])
            replacements += 1
            deadline = time.monotonic() + 5
            for side in ("a", "b"):
                while not self.converged(ports[side], side):
                    if time.monotonic() > deadline:
                        stalls.append((round(time.monotonic() - t0, 1), side))
                        break
                    time.sleep(0.1)
            stats = envoy.stats()
            samples.append({
                "t": round(time.monotonic() - t0, 1),
                "rss_kib": rss_kib(pid),
                "wasm_kib": wasm_memory_kib(pid)[0],
                "table_entries": stats.get("wasmcustom.session_router.health.table_entries"),
                "probes_sent": stats.get("wasmcustom.session_router.health.probes_sent"),
            })
            time.sleep(max(0.0, self.args.replace_every - 1.0))
        self.stop.set()
        for t in threads:
            t.join(timeout=10)
        end = samples[-1] if samples else {"rss_kib": rss_kib(pid), "wasm_kib": wasm_memory_kib(pid)[0]}
        total = sum(self.results.values())
        failed = sum(n for (side, status), n in self.results.items() if status != 200)
        entries = [s["table_entries"] for s in samples if s["table_entries"] is not None]
        with (self.workdir / "churn-samples.jsonl").open("w") as f:
            for s in samples:
                f.write(json.dumps(s) + "\n")
        print(f"churn soak: {time.monotonic() - t0:.0f}s, {replacements} replacements on each of 2 filters, "
              f"{total} requests, {failed} failed, {len(self.crossed)} crossed to the other filter's hosts, "
              f"{len(stalls)} stalls; health table entries max {max(entries, default=None)}; "
              f"RSS {warm['rss'] / 1024:.1f} -> {end['rss_kib'] / 1024:.1f} MiB; "
              f"wasm memory {warm['wasm']} -> {end['wasm_kib']} KiB")
        problems = []
        if self.crossed:
            problems.append(f"requests crossed to the other filter's hosts: {self.crossed[:5]}")
        if failed > 0.005 * max(total, 1):
            problems.append(f"{failed} of {total} requests failed")
        if stalls:
            problems.append(f"membership did not follow within 5 s: {stalls}")
        if any(e > self.HOSTS + 1 for e in entries):
            problems.append(f"health table grew: {entries}")
        limit = warm["rss"] * (1 + self.args.rss_growth_pct / 100) + self.args.rss_growth_mib * 1024
        if end["rss_kib"] > limit:
            problems.append(f"RSS grew past {limit / 1024:.1f} MiB")
        if warm["wasm"] is not None and end["wasm_kib"] is not None \
                and end["wasm_kib"] - warm["wasm"] > self.args.wasm_growth_kib * max(warm["memories"], 1):
            problems.append(f"wasm memory grew {warm['wasm']} -> {end['wasm_kib']} KiB")
        if envoy.log_text().count("half the hosts are down"):
            problems.append("an ejection was refused (half the hosts down)")
        for p in problems:
            print(f"FAIL: {p}")
        return 1 if problems else 0
