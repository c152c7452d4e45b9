"""RESULTS.md: the tables of every phase, with the method and the machine."""

import statistics

from .spread import scenarios
from .variants import ALGOS, VARIANTS


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
