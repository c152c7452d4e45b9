"""The steady soak (scripts/soak.py without --churn): churning sticky-cookie, header and JWT
traffic against one filter, a config reload every --reload-every seconds through file-based LDS,
and one backend restarted in the middle. See scripts/soak.py for what it checks."""

import base64
import json
import os
import random
import sys
import threading
import time
from collections import Counter, deque

import yaml
from harness import Envoy, Upstream, envoy_bin, example_filter_config, http, render_config, wasm_path
from soak_support import free_port, rss_kib, wasm_memory_kib
from srdev import INSTALL_HINT, missing_wasm_hint


KINDS = ("new", "returning", "tampered", "expired", "header", "jwt")

WEIGHTS = (25, 30, 10, 10, 15, 10)



def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()



def jwt(sub):
    """An unsigned token whose `sub` is `sub` (the filter decodes, it does not verify)."""
    header = b64url(b'{"alg":"none"}')
    return f"{header}.{b64url(json.dumps({'sub': sub}).encode())}.sig"



class Soak:
    def __init__(self, args, workdir):
        self.args = args
        self.workdir = workdir
        self.ups = [Upstream(f"u{i}") for i in range(4)]
        self.lock = threading.Lock()
        self.fresh = deque(maxlen=2000)  # (cookie "srv=...", host, issued_at)
        self.stale = deque(maxlen=2000)
        self.results = Counter()  # (kind, outcome)
        self.failures = []  # (t, kind, status or error)
        self.sticky_checked = Counter()
        self.user_hosts = {}  # (epoch, user) -> host
        self.epoch = 0  # bumped at every reload and around the restart
        self.windows = []  # (start, end) of backend restarts
        self.stop = threading.Event()
        self.t0 = None
        self.reloads_done = 0
        self.reloads_failed = 0
        self.lds_dir = workdir / "lds"
        self.lds_dir.mkdir(parents=True, exist_ok=True)
        self.listener_port = free_port()
        self.variant = 0

    # ---- configuration ---------------------------------------------------------------------

    def filter_config(self, variant):
        """Variant 0: u0..u2 equal; 1: + u3; 2: u1 weight 3; 3: + u3 and u1 weight 3."""
        cfg = example_filter_config("override_host")
        cfg["sources"] = [s for s in cfg["sources"] if s["type"] != "source_ip"]  # so "new" is new
        cfg["sticky_cookie"]["ttl_seconds"] = self.args.ttl
        hosts = [{"address": u.addr, "id": f"backend-{u.name}"} for u in self.ups[:3]]
        if variant & 2:
            hosts[1]["weight"] = 3
        if variant & 1:
            hosts.append({"address": self.ups[3].addr, "id": f"backend-{self.ups[3].name}"})
        cfg["hosts"] = hosts
        return cfg

    def envoy_config(self):
        config = render_config("override_host", wasm_path(), self.filter_config(0), [u.addr for u in self.ups])
        (listener,) = config["static_resources"].pop("listeners")
        listener["address"]["socket_address"]["port_value"] = self.listener_port
        self.listener = listener
        # File-based xDS needs a node identity.
        config["node"] = {"id": "session-router-soak", "cluster": "session-router-soak"}
        config["dynamic_resources"] = {
            "lds_config": {
                "path_config_source": {
                    "path": str(self.lds_dir / "lds.yaml"),
                    "watched_directory": {"path": str(self.lds_dir)},
                },
                "resource_api_version": "V3",
            }
        }
        self.write_lds(0, 1)
        return config

    def write_lds(self, variant, version):
        plugin = self.listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]
        plugin["typed_config"]["config"]["configuration"]["value"] = json.dumps(self.filter_config(variant))
        doc = {
            "version_info": str(version),
            "resources": [{"@type": "type.googleapis.com/envoy.config.listener.v3.Listener", **self.listener}],
        }
        tmp = self.lds_dir / f".lds-{version}.yaml"
        tmp.write_text(yaml.safe_dump(doc))
        os.rename(tmp, self.lds_dir / "lds.yaml")  # atomic: Envoy sees the whole file or the old one

    def reload(self, version):
        """Next variant in via LDS; waits until Envoy applied it (lds.update_success moved)."""
        before = self.envoy.stats()
        self.variant = (self.variant + 1) % 4
        self.write_lds(self.variant, version)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            stats = self.envoy.stats()
            if stats.get("listener_manager.lds.update_rejected", 0) > before.get("listener_manager.lds.update_rejected", 0):
                break
            if stats.get("listener_manager.lds.update_success", 0) > before.get("listener_manager.lds.update_success", 0):
                with self.lock:
                    self.epoch += 1
                self.reloads_done += 1
                return True
            time.sleep(0.1)
        self.reloads_failed += 1
        return False

    # ---- traffic ---------------------------------------------------------------------------

    def pick(self, pool):
        with self.lock:
            return random.choice(pool) if pool else None

    def age_out(self, now):
        with self.lock:
            while self.fresh and now - self.fresh[0][2] > self.args.ttl - 2:
                item = self.fresh.popleft()
                self.stale.append(item)

    def one(self):
        now = time.monotonic()
        self.age_out(now)
        kind = random.choices(KINDS, WEIGHTS)[0]
        headers, expect_cookie, pinned = [], False, None
        if kind in ("returning", "tampered"):
            item = self.pick(self.fresh)
            if item is None:
                kind = "new"
            elif kind == "returning":
                headers.append(("cookie", item[0]))
                pinned = item
            else:
                name, value = item[0].split("=", 1)
                i = random.randrange(len(value))
                value = value[:i] + ("A" if value[i] != "A" else "B") + value[i + 1:]
                headers.append(("cookie", f"{name}={value}"))
                expect_cookie = True
        if kind == "expired":
            with self.lock:
                candidates = [c for c in list(self.stale)[:200] if now - c[2] > self.args.ttl + 1]
            item = random.choice(candidates) if candidates else None
            if item is None:
                kind = "new"
            else:
                headers.append(("cookie", item[0]))
                expect_cookie = True
        user = None
        if kind == "header":
            user = f"user-{random.randrange(500)}"
            headers.append(("x-user-id", user))
        elif kind == "jwt":
            user = f"user-{random.randrange(500)}"
            headers.append(("authorization", f"Bearer {jwt(user)}"))
        if kind == "new":
            expect_cookie = True
        with self.lock:
            epoch = self.epoch
        t = time.monotonic() - self.t0
        try:
            status, response_headers, body = http(self.envoy, f"/soak/{kind}", headers, timeout=10)
        except OSError as e:
            self.fail(t, kind, type(e).__name__)
            return
        if status != 200 or not isinstance(body, dict):
            self.fail(t, kind, status)
            return
        host = body["name"]
        cookies = [v.split(";")[0] for k, v in response_headers if k == "set-cookie"]
        outcome = "ok"
        if expect_cookie and not cookies:
            outcome = "no-cookie"
        with self.lock:
            if cookies:
                self.fresh.append((cookies[0], host, time.monotonic()))
            if pinned is not None:
                self.sticky_checked["same" if host == pinned[1] else "moved"] += 1
            if user is not None:
                key = (epoch, user)
                seen = self.user_hosts.setdefault(key, host)
                self.sticky_checked["user-same" if seen == host else "user-moved"] += 1
            self.results[(kind, outcome)] += 1

    def fail(self, t, kind, what):
        with self.lock:
            self.failures.append((round(t, 2), kind, what))
            self.results[(kind, "failed")] += 1

    def client(self, index, threads):
        interval = threads / self.args.rate
        next_at = time.monotonic() + index * interval / threads
        while not self.stop.is_set():
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            next_at += interval
            self.one()

    # ---- measurements ----------------------------------------------------------------------

    def sample(self, label=""):
        stats = self.envoy.stats()
        wasm_size, wasm_rss, wasm_maps = wasm_memory_kib(self.envoy.pid)
        pick = lambda suffix: sum(v for k, v in stats.items() if k.startswith("wasm.") and k.endswith(suffix))  # noqa: E731
        s = {
            "t": round(time.monotonic() - self.t0, 1) if self.t0 else 0.0,
            "label": label,
            "rss_kib": rss_kib(self.envoy.pid),
            "wasm_size_kib": wasm_size,
            "wasm_rss_kib": wasm_rss,
            "wasm_memories": wasm_maps,
            "vm_active": stats.get("wasm.envoy.wasm.runtime.v8.active"),
            "vm_created": stats.get("wasm.envoy.wasm.runtime.v8.created"),
            "wasm_vm_count": stats.get("wasm.wasm_vm_count"),
            "vm_reload": pick(".vm_reload"),
            "vm_reload_success": pick(".vm_reload_success"),
            "vm_reload_failure": pick(".vm_reload_failure"),
            "vm_reload_backoff": pick(".vm_reload_backoff"),
            "lds_success": stats.get("listener_manager.lds.update_success"),
            "lds_rejected": stats.get("listener_manager.lds.update_rejected"),
            "in_place": stats.get("listener_manager.listener_in_place_updated"),
            "requests": sum(self.results.values()),
            "filter": {k.removeprefix("wasmcustom.session_router."): v for k, v in stats.items() if k.startswith("wasmcustom.")},
        }
        with (self.workdir / "samples.jsonl").open("a") as f:
            f.write(json.dumps(s) + "\n")
        return s

    # ---- the run ---------------------------------------------------------------------------

    def run(self):
        a = self.args
        binary = envoy_bin()
        if not binary:
            sys.exit(f"no Envoy binary: {INSTALL_HINT}")
        if not wasm_path().is_file():
            sys.exit(missing_wasm_hint())
        envoy_dir = self.workdir / "envoy"
        envoy_dir.mkdir(exist_ok=True)
        self.envoy = Envoy(
            "override_host", self.envoy_config(), envoy_dir, a.concurrency, "warning",
            ["--drain-time-s", str(a.drain_time_s)], binary=binary,
        )
        self.envoy.wait_ready()
        version = os.popen(f"{binary} --version").read().strip().split("version: ")[-1]
        print(f"soak: Envoy {version}, pid {self.envoy.pid}, {a.concurrency} workers, "
              f"{a.duration:.0f}s at {a.rate:.0f} req/s, reload every {a.reload_every:.0f}s, ttl {a.ttl}s, "
              f"workdir {self.workdir}", flush=True)
        boot = self.sample("boot")
        self.t0 = time.monotonic()
        threads = [threading.Thread(target=self.client, args=(i, 8), daemon=True) for i in range(8)]
        for th in threads:
            th.start()
        warmup = min(20.0, a.duration / 4)
        restart_at = a.duration / 2
        next_reload = a.reload_every
        next_sample = 10.0
        warm = None
        restarted = False
        lds_version = 1
        while (t := time.monotonic() - self.t0) < a.duration:
            if warm is None and t >= warmup:
                warm = self.sample("warm")
            if not restarted and t >= restart_at:
                restarted = True
                victim = self.ups[1]
                start = time.monotonic() - self.t0
                victim.stop()
                time.sleep(a.restart_down)
                victim.start()
                end = time.monotonic() - self.t0
                self.windows.append((start, end + a.restart_grace))
                print(f"soak: t={start:.0f}s backend {victim.name} stopped, restarted at t={end:.0f}s", flush=True)
            if t >= next_reload:
                lds_version += 1
                ok = self.reload(lds_version)
                print(f"soak: t={t:.0f}s reload {self.reloads_done} (variant {self.variant}) "
                      f"{'applied' if ok else 'NOT APPLIED'}", flush=True)
                next_reload += a.reload_every
            if t >= next_sample:
                s = self.sample()
                print(f"soak: t={s['t']:.0f}s rss {s['rss_kib'] / 1024:.1f} MiB, wasm {(s['wasm_size_kib'] or 0) / 1024:.2f} MiB "
                      f"({(s['wasm_rss_kib'] or 0) / 1024:.2f} resident), "
                      f"{s['requests']} requests, {len(self.failures)} failed", flush=True)
                next_sample += 10.0
            time.sleep(0.05)
        self.stop.set()
        for th in threads:
            th.join(timeout=15)
        time.sleep(1)
        end = self.sample("end")
        self.envoy.stop()
        for u in self.ups:
            u.stop()
        return self.report(boot, warm or boot, end)

    def report(self, boot, warm, end):
        a = self.args
        in_window = [f for f in self.failures if any(s <= f[0] <= e for s, e in self.windows)]
        outside = [f for f in self.failures if f not in in_window]
        total = sum(self.results.values())
        limit_kib = warm["rss_kib"] * (1 + a.rss_growth_pct / 100) + a.rss_growth_mib * 1024
        vm_restarts = (end["vm_reload"] - boot["vm_reload"]) + (end["vm_reload_success"] - boot["vm_reload_success"])
        vm_count_changed = (end["wasm_vm_count"], end["vm_active"]) != (warm["wasm_vm_count"], warm["vm_active"])
        mib = lambda kib: f"{kib / 1024:.1f} MiB" if kib is not None else "n/a"  # noqa: E731
        by_kind = {k: {o: n for (kk, o), n in self.results.items() if kk == k} for k in KINDS}
        f = end["filter"]
        lines = [
            "",
            "==== soak summary ====",
            f"duration            {a.duration:.0f} s, {total} requests ({total / a.duration:.1f}/s), {a.concurrency} workers",
            "requests by kind    " + ", ".join(f"{k} {sum(v.values())}" for k, v in by_kind.items()),
            f"failed              {len(self.failures)} ({len(in_window)} inside the restart window, {len(outside)} outside)",
            f"cookie missing      {sum(n for (k, o), n in self.results.items() if o == 'no-cookie')} (new/tampered/expired answered without Set-Cookie)",
            f"stickiness          returning cookie on its host {self.sticky_checked['same']}/{self.sticky_checked['same'] + self.sticky_checked['moved']}, "
            f"same user same host per config {self.sticky_checked['user-same']}/{self.sticky_checked['user-same'] + self.sticky_checked['user-moved']}",
            f"reloads             {self.reloads_done} applied, {self.reloads_failed} not applied "
            f"(lds update_success {boot['lds_success']}→{end['lds_success']}, rejected {end['lds_rejected']}, in-place {end['in_place']})",
            f"backend restart     {', '.join(f'{s:.0f}s–{e:.0f}s' for s, e in self.windows) or 'none'} (window incl. {a.restart_grace:.0f}s grace)",
            f"Envoy RSS           boot {mib(boot['rss_kib'])}, start (after warm-up) {mib(warm['rss_kib'])}, end {mib(end['rss_kib'])} "
            f"(limit {mib(limit_kib)})",
            f"wasm linear memory  start {mib(warm['wasm_size_kib'])} ({mib(warm['wasm_rss_kib'])} resident), "
            f"end {mib(end['wasm_size_kib'])} ({mib(end['wasm_rss_kib'])} resident), in {end['wasm_memories']} VMs "
            f"(from /proc/<pid>/smaps; Envoy has no stat for it)",
            f"wasm VMs            active {warm['vm_active']}→{end['vm_active']}, wasm_vm_count {warm['wasm_vm_count']}→{end['wasm_vm_count']}, "
            f"created {boot['vm_created']}→{end['vm_created']}, vm_reload {end['vm_reload']}, vm_reload_success {end['vm_reload_success']}, "
            f"vm_reload_failure {end['vm_reload_failure']}",
            f"filter counters     pinned {f.get('decision.pinned')}, hashed {f.get('decision.hashed')}, new {f.get('decision.new')}, "
            f"failover {f.get('decision.failover')}, cookies issued {f.get('cookie.issued')}, rejected {f.get('cookie.rejected')}, "
            f"ejections {f.get('health.ejections')}, recoveries {f.get('health.recoveries')}",
            "shared data         keys session_router.v2.<scope>.health (health table: written on the ejection/recovery "
            "above), .lease, .generation and .membership (idle: no active health, no discovery here)",
        ]
        problems = []
        if outside:
            problems.append(f"{len(outside)} requests failed outside the restart window: {outside[:10]}")
        if vm_restarts or vm_count_changed:
            problems.append(f"wasm VM restarted (vm_reload {vm_restarts}, VM count changed: {vm_count_changed})")
        if self.reloads_failed:
            problems.append(f"{self.reloads_failed} reloads not applied")
        per_vm = lambda smp: (smp["wasm_size_kib"] or 0) / max(smp["wasm_memories"], 1)  # noqa: E731
        if warm["wasm_memories"] and per_vm(end) > per_vm(warm) + a.wasm_growth_kib:
            problems.append(f"wasm linear memory grew from {per_vm(warm):.0f} to {per_vm(end):.0f} KiB per VM")
        if end["rss_kib"] > limit_kib:
            problems.append(f"RSS grew from {mib(warm['rss_kib'])} to {mib(end['rss_kib'])}, over the limit {mib(limit_kib)}")
        lines.append("result              " + ("PASS" if not problems else "FAIL: " + "; ".join(problems)))
        print("\n".join(lines), flush=True)
        (self.workdir / "summary.txt").write_text("\n".join(lines) + "\n")
        return 0 if not problems else 1
