#!/usr/bin/env python3
"""Soak test: a real Envoy (4 workers, envoy/override_host.yaml) running the release filter under
steady churning traffic, with a config reload every minute and a backend restart in the middle.

Run it through scripts/soak.sh (which builds the module first):

    bash scripts/soak.sh            # 10 minutes, a reload every 60 s
    bash scripts/soak.sh --short    # ~45 s, a reload every 15 s (CI)

Traffic (at --rate requests/s from 8 client threads, one connection per request):
  new        no session key at all: a new session, which must get a sticky cookie
  returning  a cookie received earlier and still inside its lifetime: must stay on its host
  tampered   such a cookie with one character changed: must be replaced by a fresh one
  expired    a cookie older than ttl_seconds (the soak uses a short ttl): must be replaced
  header     `x-user-id: user-N`, or the same user as a JWT `sub`: hashed sessions

Reloads rewrite the listener, which comes from a file-based LDS resource
(`dynamic_resources.lds_config.path_config_source` with `watched_directory`): a new file is
renamed over the old one, so Envoy swaps the filter chain in place with the new filter config.
Reloads alternate between adding/removing a fourth host and changing the second host's weight.
In the middle one backend is stopped and restarted on the same port.

Figures reported: Envoy's RSS (/proc/<pid>/status VmRSS) and the wasm VMs' resident linear
memory (Envoy has no stat for it; it is read from /proc/<pid>/smaps: the Rss of V8's wasm memory
guard reservations: the read-write mapping below each), at the start (after warm-up) and the end;
the wasm VM stats (`wasm.envoy.wasm.runtime.v8.*`, `wasm.wasm_vm_count`, `wasm.<plugin>.vm_reload*`);
reloads applied; requests by kind and failures in and outside the restart window; the
filter's counters. Shared data cannot be listed through Envoy's admin API; the filter uses four
keys per configuration scope (src/scope.rs), the health-table writes show up as the filter's
`health.*` counters and the table's size as the `health.table_entries` gauge.

`--churn` runs the membership-churn soak instead (class ChurnSoak): two filters with one vm_id
over two file-based EDS clusters, hosts replaced one by one on both under traffic.

Exits non-zero when a request failed outside the restart window (from the backend's stop to
--restart-grace seconds after its start), when a VM restarted (a `vm_reload` counter moved or
the number of VMs changed), when a reload was not applied, or when RSS grew past the threshold:
end RSS > warm-up RSS × (1 + --rss-growth-pct/100) + --rss-growth-mib MiB (defaults 10% and 24 MiB,
which covers allocator slack and the listener drain; a leak per request or per reload of the
size that matters in production exceeds it long before an hour-equivalent of traffic), or when a
VM's linear memory grew by more than --wasm-growth-kib (default 1 MiB; it never shrinks, so a
leak inside the filter shows there first).
"""

import argparse
import base64
import json
import os
import random
import socket
import sys
import threading
import time
from collections import Counter, deque
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "envoy"))

import yaml  # noqa: E402
from harness import Envoy, Upstream, envoy_bin, example_filter_config, http, render_config, wasm_path  # noqa: E402
from srdev import INSTALL_HINT, missing_wasm_hint  # noqa: E402

KINDS = ("new", "returning", "tampered", "expired", "header", "jwt")
WEIGHTS = (25, 30, 10, 10, 15, 10)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--short", action="store_true", help="CI length: ~45 s, a reload every 15 s")
    p.add_argument("--duration", type=float, help="seconds of traffic (default 600; --short 45)")
    p.add_argument("--reload-every", type=float, help="seconds between reloads (default 60; --short 15)")
    p.add_argument("--rate", type=float, default=40.0, help="requests per second (default 40)")
    p.add_argument("--ttl", type=int, help="sticky cookie ttl_seconds (default 20; --short 8)")
    p.add_argument("--concurrency", type=int, default=4, help="Envoy workers (default 4)")
    p.add_argument("--restart-down", type=float, help="seconds the backend stays down (default 5; --short 3)")
    p.add_argument("--restart-grace", type=float, default=5.0, help="failures tolerated this long after the restart")
    p.add_argument("--rss-growth-pct", type=float, default=10.0)
    p.add_argument("--rss-growth-mib", type=float, default=24.0)
    p.add_argument("--wasm-growth-kib", type=float, default=1024.0, help="allowed linear memory growth per VM")
    p.add_argument("--drain-time-s", type=int, default=15, help="Envoy --drain-time-s (old filter chains linger this long)")
    p.add_argument("--workdir", type=Path, default=None, help="where Envoy's config and log go (default: a temp dir)")
    p.add_argument("--churn", action="store_true",
                   help="membership churn instead: two filters (one vm_id) over two file-based EDS clusters, "
                        "hosts replaced one by one on both (see ChurnSoak)")
    p.add_argument("--replace-every", type=float, help="--churn: seconds between replacements (default 10; --short 3)")
    a = p.parse_args()
    a.replace_every = a.replace_every or (3.0 if a.short else 10.0)
    a.duration = a.duration or (45.0 if a.short else 600.0)
    a.reload_every = a.reload_every or (15.0 if a.short else 60.0)
    a.ttl = a.ttl or (8 if a.short else 20)
    a.restart_down = a.restart_down or (3.0 if a.short else 5.0)
    return a


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def wasm_memory_kib(pid):
    """The wasm VMs' linear memories, from /proc/<pid>/smaps: V8 reserves each memory with an
    8 GiB guard region (PROT_NONE), and the memory itself is the read-write anonymous mapping
    right below it. Returns (total size KiB, total resident KiB, number of memories); size only
    grows (memory.grow), so it is what a leak inside the VMs would move."""
    maps, current = [], None
    try:
        lines = Path(f"/proc/{pid}/smaps").read_text().splitlines()
    except OSError:
        return None, None, 0
    for line in lines:
        fields = line.split()
        if fields and "-" in fields[0] and not fields[0].endswith(":") and len(fields) >= 5:
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            current = {"lo": lo, "hi": hi, "perms": fields[1], "anonymous": len(fields) == 5, "rss": 0}
            maps.append(current)
        elif fields and fields[0] == "Rss:" and current is not None:
            current["rss"] = int(fields[1])
    size = rss = count = 0
    for below, guard in zip(maps, maps[1:]):
        if (guard["hi"] - guard["lo"] >= 4 << 30 and guard["perms"] == "---p" and below["hi"] == guard["lo"]
                and below["anonymous"] and below["perms"] == "rw-p"):
            size += (below["hi"] - below["lo"]) >> 10
            rss += below["rss"]
            count += 1
    return size, rss, count


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
        wasm_size, wasm_rss, wasm_maps = wasm_memory_kib(self.envoy._process.pid)
        pick = lambda suffix: sum(v for k, v in stats.items() if k.startswith("wasm.") and k.endswith(suffix))  # noqa: E731
        s = {
            "t": round(time.monotonic() - self.t0, 1) if self.t0 else 0.0,
            "label": label,
            "rss_kib": rss_kib(self.envoy._process.pid),
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
        print(f"soak: Envoy {version}, pid {self.envoy._process.pid}, {a.concurrency} workers, "
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
        pid = envoy._process.pid
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


def main():
    args = parse_args()
    import tempfile

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="session-router-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    soak = ChurnSoak(args, workdir) if args.churn else Soak(args, workdir)
    try:
        code = soak.run()
    finally:
        soak.stop.set()
        if getattr(soak, "envoy", None):
            soak.envoy.stop()
        for u in soak.ups:
            u.stop()
    sys.exit(code)


if __name__ == "__main__":
    main()
