"""Helpers for koe's tests (as flask.testing is for Flask's): waiting for what a
user would see, running a service loop in a thread the way its process would,
PostgreSQL databases of a test's own, and certificates of a test CA. No pytest import:
a failed wait is a plain AssertionError."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine, text


class Loop(Protocol):
    def run(self) -> None: ...
    def stop(self, *_: object) -> None: ...


def wait_until(condition: Callable[[], object], timeout_s: float = 60, what: str = "") -> object:
    """Poll until condition() is truthy; fail naming what never happened."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what or condition}")
        time.sleep(0.05)


@dataclass
class Running:
    thread: threading.Thread
    failures: list[BaseException] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()


@contextmanager
def running(loop: Loop, stop_timeout_s: float = 30) -> Iterator[Running]:
    """Run `loop.run()` in a thread; on leaving, stop it and insist that it stopped
    in time and never crashed."""

    def target() -> None:
        try:
            loop.run()
        except BaseException as exc:  # the test wants to see any crash
            run.failures.append(exc)

    run = Running(threading.Thread(target=target, daemon=True))
    run.thread.start()
    try:
        yield run
    finally:
        loop.stop()
        run.thread.join(stop_timeout_s)
    if run.alive:
        raise AssertionError(f"the loop did not stop within {stop_timeout_s}s")
    if run.failures:
        raise AssertionError(f"the loop crashed: {run.failures!r}")


def count_handled(loop: Any, handled: list[str] | None = None) -> list[str]:
    """Wrap a ConsumerLoop's handler; `handled` fills with the event ids it finished."""
    handled = [] if handled is None else handled
    handle = loop.handler

    def counting(batch: list[Any]) -> None:
        handle(batch)
        handled.extend(m.event["id"] for m in batch)

    loop.handler = counting
    return handled


@contextmanager
def postgres_databases(admin: Engine, prefix: str = "koe_test") -> Iterator[Callable[[], str]]:
    """A factory of empty PostgreSQL databases on the server `admin` reaches (an
    AUTOCOMMIT engine: CREATE DATABASE runs outside a transaction); each call returns
    a new one's URL. On leaving, every one is dropped, open connections and all."""
    created: list[str] = []

    def make() -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return admin.url.set(database=name).render_as_string(hide_password=False)

    try:
        yield make
    finally:
        with admin.connect() as connection:
            for name in created:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    """A test certificate authority made with openssl: (certificate, key), PEM files in
    `folder`, good for two days."""
    key, cert = folder / f"{name}.key", folder / f"{name}.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", f"/CN={name}", "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def issue_certificate(
    folder: Path, ca: tuple[Path, Path], name: str, san: str
) -> tuple[Path, Path]:
    """A server certificate `ca` signs for `san` (e.g. "DNS:localhost", "IP:127.0.0.1":
    clients check the name against it): (certificate, key), PEM files in `folder`."""
    key, csr, cert = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.crt"
    ext = folder / f"{name}.ext"
    ext.write_text(f"subjectAltName={san}\n")
    subprocess.run(
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
         "-keyout", key, "-out", csr],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1],
         "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", cert],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key
