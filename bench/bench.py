#!/usr/bin/env python3
"""session-router benchmarks: the entry point bench/run.sh runs. The code is the srbench package
beside this file (srbench/__init__.py lists the phases and modules)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))  # srdev
from srbench.cli import main  # noqa: E402
from srbench.procs import PROCS  # noqa: E402

if __name__ == "__main__":
    try:
        main()
    finally:
        PROCS.stop_all()
