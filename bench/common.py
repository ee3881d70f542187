"""Shared helpers for the benchmarks: they print numbers and ratios, never pass or fail."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text

from koe_devkit.local_broker import free_port

REPO = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get("KOE_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@contextmanager
def pg_database(prefix: str = "koe_bench") -> Iterator[str]:
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def kept_database(name: str) -> str:
    """The URL of a database kept between runs (made if missing), for a fill that takes
    long to be done once. Drop it by hand when done."""
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        found = c.execute(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name})
        if found.first() is None:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


@contextmanager
def process(
    argv: list[str], env: Mapping[str, str], port: int | None = None, log: Path | None = None
):
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(argv, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
    try:
        if port:
            # gunicorn listens before its workers have booted; wait for an answer.
            wait(lambda: _answers(port), 60, f"an HTTP answer on port {port}")
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def code_env(service: str, checkout: Path | None) -> dict[str, str]:
    """Run another checkout's koe service (its sources first on the path), or this one's."""
    if checkout is None:
        return {}
    parts = [f"services/{service}/src", "libs/koe_kit/src", "libs/koe_directory/src"]
    return {"PYTHONPATH": os.pathsep.join(str(checkout / part) for part in parts)}


def migrate(service: str, database_url: str, checkout: Path | None = None) -> None:
    subprocess.run(
        [sys.executable, "-m", f"{service}.migrate"],
        env={**os.environ, "DATABASE_URL": database_url, **code_env(service, checkout)},
        check=True,
    )


def rss_mib(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def wait(condition, timeout_s: float, what: str) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout_s:
            raise SystemExit(f"bench: timed out waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - start


__all__ = [
    "REPO",
    "free_port",
    "migrate",
    "percentile",
    "pg_database",
    "process",
    "rss_mib",
    "wait",
]
