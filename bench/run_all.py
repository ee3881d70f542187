"""`make bench`: every benchmark in turn; each prints its numbers and ratios.

Long runs are opt-in: `python bench/bench_aggregator.py --memory-events 1000000`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = [
    ["bench_ingest.py"],
    ["bench_aggregator.py"],
    ["bench_latency.py"],
]

if __name__ == "__main__":
    failed = 0
    for argv in BENCHES:
        print(f"\n== {' '.join(argv)}", flush=True)
        failed += subprocess.run([sys.executable, *argv], cwd=HERE).returncode != 0
    sys.exit(1 if failed else 0)
