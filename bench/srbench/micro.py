"""Phase 4 (criterion micro-benchmarks) and what the report says about the machine."""

import datetime
import json
import os
import platform
import re
import subprocess
from pathlib import Path

from srdev import envoy_version

from .paths import REPO
from .procs import CPUS, log, pinned


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
