"""Ingest throughput: the feedback API (validation + PostgreSQL + outbox) against a
bare Flask endpoint, all under gunicorn with the same settings, loaded by wrk
from a second process on loopback. Target: koe ≥ 0.6x the bare endpoint.

A second baseline, the bare endpoint plus one durable PostgreSQL insert/commit
(durable_app.py), shows how much of the gap the database commit alone explains."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from sqlalchemy import create_engine, text

from common import REPO, free_port, migrate, pg_database, process

sys.path.insert(0, str(REPO / "tests"))
from support import LIFTED_BUDGETS  # noqa: E402

BODY = {
    "page_url": "https://www.info.city.tsu.mie.jp/shisei/dx/1234.html",
    "page_title": "津市の自治体DX取組状況",
    "division": "somu-dx",
    "answers": {"findability": "yes", "clarity": "neutral", "usefulness": "no"},
    "locale": "ja",
}


def wrk(url: str, seconds: int, connections: int) -> dict:
    script = Path(tempfile.mkdtemp()) / "post.lua"
    body = json.dumps(BODY, ensure_ascii=False).replace("\\", "\\\\").replace('"', '\\"')
    script.write_text(
        'wrk.method = "POST"\n'
        f'wrk.body = "{body}"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        # Many citizens, not one: each request a page view of its own (a client_token,
        # as widget.js sends), so koe writes a token row per answer as in real traffic.
        # Seeded per run: a token seen in an earlier run would be a retry, storing nothing.
        "math.randomseed(os.time())\n"
        "request = function()\n"
        '  local token = string.format("%08x-%04x-4000-8000-%012x", math.random(0, 0x7fffffff),'
        " math.random(0, 0xffff), math.random(0, 0x7fffffff))\n"
        '  return wrk.format(nil, nil, nil, wrk.body:sub(1, -2) .. \',"client_token":"\''
        " .. token .. '\"}')\n"
        "end\n",
        encoding="utf-8",
    )
    out = subprocess.run(
        [
            "wrk",
            "-t",
            "1",
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = re.search(r"50%\s+([\d.]+\w+)", out).group(1)
    p99 = re.search(r"99%\s+([\d.]+\w+)", out).group(1)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {"rps": rps, "p50": p50, "p99": p99, "errors": int(non2xx.group(1)) if non2xx else 0}


def gunicorn(app: str, port: int, workers: int) -> list[str]:
    return [
        sys.executable, "-m", "gunicorn", app,
        "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers),
        "--log-level", "warning",
        "--no-control-socket",
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("bench: needs wrk (apt-get install -y wrk)")

    def load(app: str, env: dict[str, str]) -> dict:
        port = free_port()
        with process(gunicorn(app, port, args.workers), env, port):
            return wrk(f"http://127.0.0.1:{port}/api/v1/feedback", args.seconds, args.connections)

    bench_path = {"PYTHONPATH": str(REPO / "bench")}
    bare = load("bare_app:app", bench_path)
    with pg_database() as url:
        engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE durable (id text PRIMARY KEY, body text)"))
        engine.dispose()
        durable = load("durable_app:app", {**bench_path, "DATABASE_URL": url})
    with pg_database() as url:
        migrate("feedback", url)
        koe = load(
            "feedback.wsgi:app",
            {
                "DATABASE_URL": url,
                "KOE_ALLOWED_ORIGINS": "https://www.info.city.tsu.mie.jp",
                "KOE_DIVISIONS_FILE": str(REPO / "divisions.yaml"),
                "KOE_CLIENT_KEY": "bench-client-key-" + "x" * 32,
                # wrk is one address, one source: its budgets must not refuse the load.
                **LIFTED_BUDGETS,
            },
        )

    print(
        f"ingest, gunicorn --workers {args.workers}, wrk -c {args.connections} "
        f"for {args.seconds}s each, PostgreSQL"
    )
    for name, r in (("bare Flask", bare), ("bare + 1 commit", durable), ("koe feedback", koe)):
        print(
            f"  {name:15} {r['rps']:9.0f} req/s  p50 {r['p50']:>8}  p99 {r['p99']:>8}"
            f"  non-2xx {r['errors']}"
        )
    print(
        f"  ratio koe/bare: {koe['rps'] / bare['rps']:.2f}x (target ≥ 0.60x); "
        f"bare+commit/bare: {durable['rps'] / bare['rps']:.2f}x; "
        f"koe/bare+commit: {koe['rps'] / durable['rps']:.2f}x"
    )


if __name__ == "__main__":
    main()
