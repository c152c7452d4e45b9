"""Phase 1: cost per request. Every variant's front Envoy under saturation (wrk) and at a fixed rate
(bench/tools loadgen), in rotating rounds; then instructions per request under callgrind
(bench/instructions.py)."""

import json
import shutil
import sys
import time
import urllib.request
from http.client import HTTPConnection

import yaml

from .paths import BENCH, TOOLS
from .procs import PROCS, children_cpu, cpu_busy, cpu_seconds, http_get, log, run_child, start_envoy, wait_ready
from .variants import PORTS, SHORT_INSTRUCTIONS, VARIANTS, WASM_OF, front_config

# The upstream Envoy every front forwards to (its CPU time is measured with the front's).
UPSTREAM = None


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


def measured(args, pid):
    """Runs the load generator `args` to completion (pinned to CPU 1) and measures around it.
    Returns its stdout and the CPU figures: the front's (pid) CPU seconds, and the share of the
    wall time used by the front, the upstream, the load generator and everything else on each core."""
    b0 = cpu_busy()
    up0, c0, ch0, t0 = cpu_seconds(UPSTREAM.pid), cpu_seconds(pid), children_cpu(), time.monotonic()
    out, _ = run_child(args, cpu=1)
    up1, c1, ch1, t1 = cpu_seconds(UPSTREAM.pid), cpu_seconds(pid), children_cpu(), time.monotonic()
    b1 = cpu_busy()
    front, upstream, loadgen, wall = c1 - c0, up1 - up0, ch1 - ch0, t1 - t0
    return out, {
        "cpu_s": front, "front_util": front / wall, "upstream_util": upstream / wall, "loadgen_util": loadgen / wall,
        "cpu0_other_util": max(0.0, (b1[0] - b0[0]) - front) / wall,
        "cpu1_other_util": max(0.0, (b1[1] - b0[1]) - upstream - loadgen) / wall,
    }


def saturation_run(v, pid, port, headers_file, seconds, conns):
    wrk = shutil.which("wrk") or sys.exit("wrk not found: apt-get install wrk")
    args = [wrk, "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", "5s", "-s", str(BENCH / "wrk_keys.lua"),
            f"http://127.0.0.1:{port}/", "--", str(headers_file)]
    out, cpu = measured(args, pid)
    summary = json.loads(out.strip().splitlines()[-1])
    n = summary["requests"]
    wall = summary["duration_us"] / 1e6
    errors = sum(summary[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    return {
        "variant": v, "requests": n, "seconds": wall, "rps": n / wall, "errors": errors,
        "cpu_us_per_req": cpu["cpu_s"] / n * 1e6 if n else None, **cpu,
        "wrk_p50_us": summary["p50_us"], "wrk_p99_us": summary["p99_us"],
    }


def fixed_rate_run(v, pid, port, headers_file, rate, seconds, conns):
    args = [str(TOOLS / "loadgen"), "rate", f"127.0.0.1:{port}", str(rate), str(seconds), str(conns),
            str(headers_file)]
    out, cpu = measured(args, pid)
    del cpu["upstream_util"]  # reported for saturation runs only
    r = json.loads(out)
    n = r["requests"]
    r.update({"variant": v, "cpu_us_per_req": cpu["cpu_s"] / n * 1e6 if n else None, **cpu})
    return r


def cost_phase(opts, binary, wasm, work, keys):
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

    def rounds(title, run, describe):
        """Every variant once per round, the order rotating from round to round."""
        results = []
        for r in range(opts.rounds):
            rot = order[r % len(order):] + order[: r % len(order)]
            log(f"{title} round {r + 1}/{opts.rounds}: {' '.join(rot)}")
            for v in rot:
                p, port, _, _ = fronts[v]
                kind = next(k for vv, _, _, k in VARIANTS if vv == v)
                res = run(v, p.pid, port, files[kind])
                res["round"] = r
                results.append(res)
                log(f"  {v}: {describe(res)}")
        return results

    sat = rounds("saturation", lambda v, pid, port, f: saturation_run(v, pid, port, f, opts.duration, opts.conns),
                 lambda res: f"{res['rps']:.0f} rps, {res['cpu_us_per_req']:.2f} µs CPU/req, "
                             f"front {res['front_util']:.0%}, errors {res['errors']}")

    # Capacity of a variant = its best saturation run (interference only ever lowers it).
    slowest = min(max(x["rps"] for x in sat if x["variant"] == v) for v in order)
    rate = max(100, int(slowest * opts.rate_fraction / 100) * 100)
    log(f"fixed rate: {rate} req/s ({opts.rate_fraction:.0%} of the slowest variant's best saturation run)")
    fixed = rounds("fixed-rate",
                   lambda v, pid, port, f: fixed_rate_run(v, pid, port, f, rate, opts.duration, opts.rate_conns),
                   lambda res: f"p50 {res['p50_us']:.0f} µs, p99 {res['p99_us']:.0f} µs, "
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
