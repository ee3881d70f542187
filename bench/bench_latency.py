"""End-to-end latency: from POST /api/v1/feedback to the response being visible
in the stats API, with every koe process running (as `make run` starts them, on
PostgreSQL) and default batch settings. Target: p99 ≤ 2 s."""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from pathlib import Path

import requests

from common import REPO, percentile, pg_database
from koe_devkit.local_broker import free_port
from koe_devkit.local_stack import LocalStack
from koe_directory import canonical_url, page_id_for_url

SITE = "https://www.info.city.tsu.mie.jp"
TOKEN = "bench-token-" + "x" * 20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--responses", type=int, default=300)
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        urls = {
            s: stack.enter_context(pg_database()) for s in ("feedback", "aggregator", "notifier")
        }
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("KOE_", "KAFKA_"))},
            "KOE_API_TOKEN": TOKEN,
            "KOE_ALLOWED_ORIGINS": SITE,
            "KOE_DIVISIONS_FILE": str(REPO / "divisions.yaml"),
            "KOE_BROKER_PORT": str(free_port()),
            "SMTP_PORT": str(free_port()),
            **{f"KOE_{s.upper()}_PORT": str(free_port()) for s in urls},
            **{f"{s.upper()}_DATABASE_URL": url for s, url in urls.items()},
        }
        koe = LocalStack.from_env(env, Path(tempfile.mkdtemp()) / "var")
        stack.callback(koe.stop)
        koe.start_infrastructure()
        koe.start_all()
        feedback = f"http://127.0.0.1:{koe.port('feedback')}/api/v1/feedback"
        stats = f"http://127.0.0.1:{koe.port('aggregator')}/api/v1/pages/"
        http = requests.Session()
        auth = {"Authorization": f"Bearer {TOKEN}"}

        def visible(page_id: str) -> bool:
            return http.get(stats + page_id, headers=auth, timeout=5).status_code == 200

        latencies = []
        for i in range(args.responses + 10):
            page_url = f"{SITE}/bench/latency/{i}.html"
            page_id = page_id_for_url(canonical_url(page_url))
            start = time.monotonic()
            answer = http.post(
                feedback, json={"page_url": page_url, "answers": {"clarity": "yes"}}, timeout=5
            )
            assert answer.status_code == 202, answer.text
            while not visible(page_id):
                if time.monotonic() - start > 30:
                    raise SystemExit(f"bench: response {i} not visible after 30 s")
                time.sleep(0.01)
            if i >= 10:  # the first few include the consumers joining their groups
                latencies.append(time.monotonic() - start)
        print(
            f"POST → visible in the stats API, {len(latencies)} responses one after another, "
            "default batch settings, PostgreSQL"
        )
        print(
            f"  p50 {percentile(latencies, 50) * 1000:6.0f} ms   p90 "
            f"{percentile(latencies, 90) * 1000:6.0f} ms   p99 "
            f"{percentile(latencies, 99) * 1000:6.0f} ms   max {max(latencies) * 1000:6.0f} ms "
            "(target p99 ≤ 2000 ms)"
        )


if __name__ == "__main__":
    main()
