"""Ingest throughput: the feedback API (validation + PostgreSQL + outbox) against a
bare Flask endpoint, all under gunicorn with the same settings, loaded by wrk
from a second process on loopback. Target: koe ≥ 0.6x the bare endpoint.

A second baseline, the bare endpoint plus one durable PostgreSQL insert/commit
(durable_app.py), shows how much of the gap the database commit alone explains.
--before DIR also runs the feedback API of another checkout (e.g. `git worktree add
/tmp/koe-before origin/main`) under the same load, for a before/after in one run.

Each request is a page view of its own (a client_token, as widget.js sends) from a
network of its own (an X-Forwarded-For koe trusts, as behind the city's proxy): many
citizens. "koe, one network" runs the same load with the proxy not trusted, so every
request is wrk's one address, one source: its answers spend the same budget rows
(limits lifted), and each waits for the one before to commit. That is what one
network's flood gets, whatever its connections."""

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

from common import REPO, code_env, free_port, migrate, pg_database, process

sys.path.insert(0, str(REPO / "tests"))
from support import CHALLENGE_KEY, LIFTED_BUDGETS, signed_proof  # noqa: E402

# More answers a second than koe gives here: a pool of proofs never runs dry.
MOST_PER_SECOND = 3000

BODY = {
    "page_url": "https://www.info.city.tsu.mie.jp/shisei/dx/1234.html",
    "page_title": "津市の自治体DX取組状況",
    "division": "somu-dx",
    "answers": {"findability": "yes", "clarity": "neutral", "usefulness": "no"},
    "locale": "ja",
}


def proof_pool(size: int) -> Path:
    """`size` proofs of work for BODY's page, one a line, for wrk(proofs=): signed here with
    CHALLENGE_KEY, numbers known (bench_challenge.py measures the work itself)."""
    path = Path(tempfile.mkdtemp()) / "proofs.txt"
    with path.open("w", encoding="ascii") as out:
        for n in range(size):
            out.write(signed_proof(BODY["page_url"], number=n % 1000) + "\n")
    return path


def wrk(url: str, seconds: int, connections: int, proofs: Path | None = None) -> dict:
    """Load `url` with BODY; with `proofs` (proof_pool) each request spends one of them."""
    script = Path(tempfile.mkdtemp()) / "post.lua"
    body = json.dumps(BODY, ensure_ascii=False).replace("\\", "\\\\").replace('"', '\\"')
    proof = (
        '  local proof = pool()\n  if proof then token = token .. \'","altcha":"\' .. proof end\n'
        if proofs
        else ""
    )
    script.write_text(
        'wrk.method = "POST"\n'
        f'wrk.body = "{body}"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        + (f'pool = io.lines("{proofs}")\n' if proofs else "")
        # Many citizens, not one: each request a page view of its own (a client_token,
        # as widget.js sends), so koe writes a token row per answer as in real traffic.
        # Seeded per run: a token seen in an earlier run would be a retry, storing nothing.
        + "math.randomseed(os.time())\n"
        "request = function()\n"
        # A user agent each too: code before sources keyed its guard row on it. And a
        # network each, as a proxy koe trusts (KOE_TRUSTED_PROXIES=1) reports it: koe
        # then sees many sources, as from a city's citizens.
        '  wrk.headers["User-Agent"] = "bench-citizen-" .. math.random(1, 1000000)\n'
        '  wrk.headers["X-Forwarded-For"] = string.format("10.%d.%d.%d", math.random(0, 255),'
        " math.random(0, 255), math.random(1, 254))\n"
        '  local token = string.format("%08x-%04x-4000-8000-%012x", math.random(0, 0x7fffffff),'
        " math.random(0, 0xffff), math.random(0, 0x7fffffff))\n"
        f"{proof}"
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


def asks_proof(checkout: Path | None) -> bool:
    """Whether the feedback API of `checkout` (None: this one) wants a proof of work."""
    return ((checkout or REPO) / "services/feedback/src/feedback/challenges.py").exists()


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
    parser.add_argument("--before", type=Path, help="a checkout of the code before a change")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("bench: needs wrk (apt-get install -y wrk)")

    def load(app: str, env: dict[str, str], proofs: Path | None = None) -> dict:
        port = free_port()
        with process(gunicorn(app, port, args.workers), env, port):
            url = f"http://127.0.0.1:{port}/api/v1/feedback"
            return wrk(url, args.seconds, args.connections, proofs)

    bench_path = {"PYTHONPATH": str(REPO / "bench")}
    bare = load("bare_app:app", bench_path)
    with pg_database() as url:
        engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE durable (id text PRIMARY KEY, body text)"))
        engine.dispose()
        durable = load("durable_app:app", {**bench_path, "DATABASE_URL": url})

    def feedback(checkout: Path | None, proxies: str = "1") -> dict:
        # Each answer spends a proof of work, where the code asks for one.
        proofs = proof_pool(MOST_PER_SECOND * args.seconds) if asks_proof(checkout) else None
        with pg_database() as url:
            migrate("feedback", url, checkout)
            return load(
                "feedback.wsgi:app",
                {
                    "DATABASE_URL": url,
                    "KOE_ALLOWED_ORIGINS": "https://www.info.city.tsu.mie.jp",
                    "KOE_DIVISIONS_FILE": str(REPO / "divisions.yaml"),
                    "KOE_CHALLENGE_KEY": CHALLENGE_KEY,
                    "KOE_CLIENT_KEY": "bench-client-key-" + "x" * 32,  # code before it
                    # wrk is one address, one source: its budgets must not refuse the load
                    # (nor, before sources, the one client's rate limit).
                    **LIFTED_BUDGETS,
                    "KOE_RATE_LIMIT_MAX": "1000000",
                    "KOE_TRUSTED_PROXIES": proxies,
                    **code_env("feedback", checkout),
                },
                proofs,
            )

    koe = feedback(None)
    one_network = feedback(None, proxies="0")
    before = feedback(args.before) if args.before else None

    print(
        f"ingest, gunicorn --workers {args.workers}, wrk -c {args.connections} "
        f"for {args.seconds}s each, PostgreSQL"
    )
    runs = [
        ("bare Flask", bare),
        ("bare + 1 commit", durable),
        ("koe feedback", koe),
        ("koe, one network", one_network),
    ]
    if before is not None:
        runs.append(("koe before", before))
    for name, r in runs:
        print(
            f"  {name:16} {r['rps']:9.0f} req/s  p50 {r['p50']:>8}  p99 {r['p99']:>8}"
            f"  non-2xx {r['errors']}"
        )
    print(
        f"  ratio koe/bare: {koe['rps'] / bare['rps']:.2f}x (target ≥ 0.60x); "
        f"bare+commit/bare: {durable['rps'] / bare['rps']:.2f}x; "
        f"koe/bare+commit: {koe['rps'] / durable['rps']:.2f}x"
    )
    if before is not None:
        print(f"  ratio koe/before: {koe['rps'] / before['rps']:.2f}x")


if __name__ == "__main__":
    main()
