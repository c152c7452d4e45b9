"""Phases 2 and 3: spread and movement. The same session keys through Envoy for every algorithm
(each key's landing place counted where it really landed, x-served-by), and natively through the
filter's own placement (bench/tools spread)."""

import copy
import json
import statistics
import time

from . import variants
from .paths import TOOLS
from .procs import PROCS, log, run_child, start_envoy, wait_ready
from .variants import ALGOS, PORTS, SR_PLACEMENTS, endpoint, load_config, wasm_plugin


def scenarios(short):
    eq = list(variants.EQUAL_PORTS)
    out = [
        {"name": "10 equal", "hosts": [(p, 1) for p in eq[:10]], "add": (eq[10], 1), "remove": eq[0]},
        {"name": "100 equal", "hosts": [(p, 1) for p in eq[:100]], "add": (eq[100], 1), "remove": eq[0]},
        {"name": "10 weighted", "hosts": list(variants.WEIGHTED), "add": variants.WEIGHTED_ADD,
         "remove": variants.WEIGHTED_REMOVE},
    ]
    return out


def cases(sc):
    """(kind, hosts) for base, add, remove."""
    return [
        ("base", sc["hosts"]),
        ("add", sc["hosts"] + [sc["add"]]),
        ("remove", [h for h in sc["hosts"] if h[0] != sc["remove"]]),
    ]


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
