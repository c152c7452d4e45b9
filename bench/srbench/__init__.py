"""session-router benchmarks, side by side with Envoy's native RING_HASH and MAGLEV.

Run through bench/run.sh, which installs and builds what this needs (entry point: bench/bench.py).
Phases:

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

Modules: variants (what is measured, the configs), procs (processes, Envoy, CPU time), cost (1),
spread (2, 3), micro (4, the machine), report (RESULTS.md), chart (results.png), cli (options and
the order of the phases). Writes RESULTS.md, results.png and results.json into --out (default:
bench/).
"""
