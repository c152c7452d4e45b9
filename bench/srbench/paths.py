"""Where the benchmark's inputs and tools are."""

from srdev import REPO

BENCH = REPO / "bench"
TOOLS = REPO / "target" / "bench-tools" / "release"
