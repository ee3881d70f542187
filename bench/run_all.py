"""`make bench`: every benchmark in turn; each prints its numbers and ratios.

Long runs are opt-in: `python bench/bench_aggregator.py --memory-events 1000000`, and
the load at the issue's full length, `python bench/bench_load.py` (120 s; here 60 s, so
`make bench` stays within a few minutes), and the drop detector's tables as docs/alerts.md
quotes them, `python bench/bench_detector.py --pages 60` (about 5 minutes).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = [
    ["bench_ingest.py"],
    ["bench_pipeline_cpu.py", "--seconds", "10"],
    ["bench_challenge.py"],
    ["bench_aggregator.py"],
    ["bench_latency.py"],
    ["bench_load.py", "--duration", "60"],
    # The drop detector's operating characteristic, at a fifth of docs/alerts.md's size.
    ["bench_detector.py", "--pages", "12", "--city-pages", "100"],
]

if __name__ == "__main__":
    failed = 0
    for argv in BENCHES:
        print(f"\n== {' '.join(argv)}", flush=True)
        failed += subprocess.run([sys.executable, *argv], cwd=HERE).returncode != 0
    sys.exit(1 if failed else 0)
