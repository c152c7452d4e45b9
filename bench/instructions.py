"""Instructions per request: a deterministic cost measure, where CPU time on a shared machine
swings ±20–30% from run to run.

Each front Envoy runs (`--concurrency 1`) under valgrind's callgrind
(`--smc-check=all-non-file`, as V8 writes the code it runs). After a warm-up, the counters are
zeroed (`callgrind_control -z`), N requests go through one keep-alive connection, the counters are
dumped (`callgrind_control -d`), and the dump's `summary:` line divided by N is the figure. Only
Envoy's instructions count — every thread of it, the load generator is not under valgrind — and
they are linear in N and reproducible to about 0.1%.

Used by bench.py (`phase: instructions per request`); runs on its own too:
    python3 bench/instructions.py FRONT.yaml HEADERS.txt [N]

VM start (`vm_start`): instructions Envoy executes from its first instruction until it is ready,
for the same front with the wasm filter removed, with its own hosts, and with 1,000 hosts. The
differences are what the filter's VMs cost to start (module compile, `on_vm_start`,
`on_configure`) and what 1,000 hosts add to `on_configure`:
    python3 bench/instructions.py --vm-start FRONT.yaml [HOSTS]
"""

import copy
import json
import os
import subprocess
import sys
import time
import urllib.request
from http.client import HTTPConnection
from pathlib import Path

STARTUP_TIMEOUT_S = 1800  # Envoy with V8 starts in ~40 s under callgrind, 10+ min on a loaded machine
# Fronts started at once: start-up under valgrind is slow, but more at once than CPUs only queue.
BATCH = max(1, min(2, os.cpu_count() or 1))


def _valgrind_args(binary, config_path, admin_file, out_pattern):
    return [
        "valgrind", "--tool=callgrind", "--smc-check=all-non-file", f"--callgrind-out-file={out_pattern}",
        binary, "-c", str(config_path), "--concurrency", "1", "--disable-hot-restart", "--log-level", "warn",
        "--admin-address-path", str(admin_file),
    ]


class Measured:
    """One front Envoy under callgrind."""

    def __init__(self, binary, config_path, work, name, procs):
        self.name = name
        self.work = Path(work)
        self.admin_file = self.work / f"{name}.cg.admin"
        self.log_path = self.work / f"{name}.cg.log"
        self.out_prefix = self.work / f"{name}.callgrind"
        args = _valgrind_args(binary, config_path, self.admin_file, f"{self.out_prefix}.%p")
        self.proc = procs.start(args, self.log_path)
        self.dumps = 0

    def wait_ready(self):
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"{self.name} under callgrind exited; log:\n{self.log_path.read_text()[-3000:]}")
            try:
                admin = self.admin_file.read_text().strip()
                with urllib.request.urlopen(f"http://{admin}/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except (OSError, ValueError):
                pass
            time.sleep(0.5)
        self.proc.kill()
        sys.exit(f"{self.name} not ready under callgrind after {STARTUP_TIMEOUT_S}s")

    def _control(self, flag):
        r = subprocess.run(["callgrind_control", flag, str(self.proc.pid)], capture_output=True, text=True)
        if r.returncode != 0 or "OK" not in r.stdout:
            sys.exit(f"callgrind_control {flag} {self.proc.pid} failed: {r.stdout}{r.stderr}")

    def instructions(self, port, header_lines, n):
        """Instructions Envoy executed for `n` requests, cycling through `header_lines`."""
        self._control("-z")
        _send(port, header_lines, n)
        self._control("-d")
        self.dumps += 1
        dump = Path(f"{self.out_prefix}.{self.proc.pid}.{self.dumps}")
        for _ in range(100):
            if dump.is_file() and "summary:" in dump.read_text(errors="replace"):
                break
            time.sleep(0.1)
        for line in dump.read_text(errors="replace").splitlines():
            if line.startswith("summary:"):
                return int(line.split()[1])
        sys.exit(f"no summary line in {dump}")


def _send(port, header_lines, n):
    """`n` GETs over one keep-alive connection; each must answer 200."""
    headers = [dict([line.split(": ", 1)]) for line in header_lines]
    conn = HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        for i in range(n):
            conn.request("GET", "/", headers=headers[i % len(headers)])
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                sys.exit(f"instructions run: status {r.status} on port {port}")
    finally:
        conn.close()


def _batches(variants):
    """Up to BATCH variants at a time, in order, never two listening on one port at once (variants
    that share a front config, as (g) shares (f)'s, would otherwise have one Envoy serve both)."""
    batch = []
    for v in variants:
        if len(batch) == BATCH or any(port == v[2] for _, _, port, _ in batch):
            yield batch
            batch = []
        batch.append(v)
    if batch:
        yield batch


def phase(binary, variants, work, procs, n, warmup, log):
    """variants: [(id, config path, listen port, header lines)]. Starts the fronts BATCH at a time
    (start-up under valgrind is slow), then measures them one after another. Returns
    {id: {"instructions": total, "requests": n, "per_request": total / n}}."""
    results = {}
    for batch in _batches(variants):
        fronts = {v: (Measured(binary, path, work, f"cg_{v}", procs), port, lines) for v, path, port, lines in batch}
        for m, _, _ in fronts.values():
            m.wait_ready()
        for v, (m, port, lines) in fronts.items():
            _send(port, lines, warmup)
            total = m.instructions(port, lines, n)
            results[v] = {"instructions": total, "requests": n, "per_request": total / n}
            log(f"  {v}: {total / n:,.0f} instructions per request ({n} requests)")
            procs.stop(m.proc)
    return results


def _wasm_filters(cfg):
    """The http_filters lists holding a wasm filter, and that filter's index, of an Envoy config."""
    for listener in cfg["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for f in chain["filters"]:
                filters = f.get("typed_config", {}).get("http_filters", [])
                for i, hf in enumerate(filters):
                    if hf["name"] == "envoy.filters.http.wasm":
                        yield filters, i


def _start_configs(front_cfg, hosts):
    """{label: Envoy config} for the VM-start measure: without the filter, as given, with `hosts`
    hosts (loopback addresses no request goes to). Ports become ephemeral (0), so the measure can
    run beside fronts that hold the bench's ports."""
    def base():
        cfg = copy.deepcopy(front_cfg)
        cfg["admin"]["address"]["socket_address"]["port_value"] = 0
        for listener in cfg["static_resources"]["listeners"]:
            listener["address"]["socket_address"]["port_value"] = 0
        return cfg

    without = base()
    for filters, i in list(_wasm_filters(without)):
        del filters[i]
    as_given = base()
    many = base()
    for filters, i in _wasm_filters(many):
        conf = filters[i]["typed_config"]["config"]["configuration"]
        plugin = json.loads(conf["value"])
        plugin["hosts"] = [{"address": f"127.0.0.{1 + n // 50000}:{10000 + n % 50000}"} for n in range(hosts)]
        conf["value"] = json.dumps(plugin)
    n_given = sum(len(json.loads(fs[i]["typed_config"]["config"]["configuration"]["value"]).get("hosts", []))
                  for fs, i in _wasm_filters(as_given))
    return {"no filter": without, f"{n_given} hosts": as_given, f"{hosts} hosts": many}


def vm_start(binary, front_cfg, work, procs, log, hosts=1000):
    """Instructions to start-and-ready for each of `_start_configs`, one Envoy at a time; returns
    {label: instructions} (every thread, from exec to /ready, then one dump)."""
    import yaml

    results = {}
    for n, (label, cfg) in enumerate(_start_configs(front_cfg, hosts).items()):
        path = Path(work) / f"vmstart_{n}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        m = Measured(binary, path, work, f"vmstart_{n}", procs)
        m.wait_ready()
        m._control("-d")
        dump = Path(f"{m.out_prefix}.{m.proc.pid}.1")
        total = None
        for _ in range(100):
            if dump.is_file() and "summary:" in dump.read_text(errors="replace"):
                total = next(int(x.split()[1]) for x in dump.read_text(errors="replace").splitlines()
                             if x.startswith("summary:"))
                break
            time.sleep(0.1)
        procs.stop(m.proc)
        if total is None:
            sys.exit(f"no summary line in {dump}")
        results[label] = total
        log(f"  start to ready, {label}: {total:,} instructions")
    return results


def vm_start_lines(results):
    """Markdown table of `vm_start`'s figures and their differences to the run without a filter."""
    labels = list(results)
    none = results[labels[0]]
    lines = ["| front Envoy, start to ready | instructions | − no filter |", "|---|---:|---:|"]
    for label in labels:
        lines.append(f"| {label} | {results[label]:,} | {results[label] - none:,} |")
    return lines


def report_lines(results, labels, reference="b", floor="n"):
    """Markdown table: instructions per request and their ratios to `reference` and `floor`."""
    ref = results.get(reference, {}).get("per_request")
    flo = results.get(floor, {}).get("per_request")
    lines = [
        f"| variant | instructions / request | × {labels.get(reference, reference)} | × no-op wasm floor |",
        "|---|---:|---:|---:|",
    ]
    for v, r in results.items():
        per = r["per_request"]
        x_ref = f"{per / ref:.3f}" if ref else "—"
        x_floor = f"{per / flo:.3f}" if flo else "—"
        lines.append(f"| ({v}) {labels.get(v, v)} | {per:,.0f} | {x_ref} | {x_floor} |")
    return lines


if __name__ == "__main__":

    class _Procs:
        def start(self, args, log_path):
            return subprocess.Popen(args, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT)

        def stop(self, p):
            p.terminate()
            p.wait()

    import yaml

    envoy = os.environ.get("ENVOY_BIN", "envoy")
    if sys.argv[1] == "--vm-start":
        front_cfg = yaml.safe_load(Path(sys.argv[2]).read_text())
        hosts = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
        out = vm_start(envoy, front_cfg, Path("."), _Procs(), lambda m: print(m, flush=True), hosts)
        print("\n".join(vm_start_lines(out)))
        sys.exit(0)
    front, headers = Path(sys.argv[1]), Path(sys.argv[2]).read_text().split("\n")
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    cfg = yaml.safe_load(front.read_text())
    listen = cfg["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"]
    out = phase(envoy, [("x", front, listen, [h for h in headers if h])], Path("."), _Procs(), count, count,
                lambda m: print(m, flush=True))
    print(out)
