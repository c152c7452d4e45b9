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
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "envoy"))

from soak_churn import ChurnSoak  # noqa: E402
from soak_steady import Soak  # noqa: E402


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
