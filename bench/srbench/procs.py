"""Processes of a benchmark run: every one started through PROCS (and stopped by pid at the end,
never by name), pinned to a CPU, its CPU time read from /proc; Envoy started with srdev's command
line on an OS-picked admin port."""

import os
import signal
import subprocess
import sys
import time
import urllib.request
from http.client import HTTPConnection
from pathlib import Path

import yaml
from srdev import envoy_command

CLK_TCK = os.sysconf("SC_CLK_TCK")
CPUS = os.cpu_count() or 1


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


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


PROCS = Procs()


def pinned(args, cpu):
    """`args` pinned to `cpu` (when there are 2+ CPUs) and, as root, at nice -20: on a shared
    machine other work would otherwise take turns on the cores under test."""
    if cpu is not None and CPUS >= 2:
        args = ["taskset", "-c", str(cpu)] + args
    if os.geteuid() == 0:
        args = ["nice", "-n", "-20"] + args
    return args


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
    args = envoy_command(binary, path, admin_address_path=admin_file, concurrency=concurrency, log_level="warn")
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
