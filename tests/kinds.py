"""The kind of each test: unit, integration, e2e or browser (pytest markers).

A test's kind follows from the real parts it asks for, so nobody has to remember to
mark it and a new test cannot go unmarked:

- browser:     the `chromium` fixture (a real Chromium);
- e2e:         `koe_factory` (every koe process as a subprocess), or marked e2e by hand;
- integration: a database (`database_url`, SQLite included: it migrates a real file,
               `new_pg_database`, `pg_admin`, `pg_server_url`), the `broker` or the
               `smtp_server`;
- unit:        none of these: logic only, run by `make test-fast`.

The highest kind a test reaches is the one it gets. A test that starts real parts
by itself (a subprocess, a server on a port) marks itself `integration` (or e2e) by
hand; a test marked `unit` may not ask for any of the fixtures above. Unit tests
run with the network and subprocesses shut (unit_guard): one that reaches for either
fails and says how to mark it, so `make test-fast` stays free of I/O.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

# Lowest first: a test is of the highest kind any of its parts needs.
KINDS = ("unit", "integration", "e2e", "browser")
NEEDS = {
    "chromium": "browser",
    "koe_factory": "e2e",
    "database_url": "integration",
    "new_pg_database": "integration",
    "pg_admin": "integration",
    "pg_server_url": "integration",
    "broker": "integration",
    "smtp_server": "integration",
}


class KindError(Exception):
    """A test whose hand-written kind contradicts what it uses."""


def kind_of(fixtures: Iterable[str], marked: Iterable[str]) -> str:
    """The kind of a test that uses `fixtures` (the whole closure pytest resolves) and
    carries the kind markers `marked`."""
    marked = set(marked)
    needed = {NEEDS[name] for name in fixtures if name in NEEDS}
    if "unit" in marked and (needed or marked - {"unit"}):
        uses = sorted(name for name in fixtures if name in NEEDS)
        raise KindError(
            f"marked unit but uses {', '.join(uses + sorted(marked - {'unit'}))}: "
            "remove the unit marker (the kind follows from the fixtures)"
        )
    return max(needed | marked | {"unit"}, key=KINDS.index)


class UnitTestDidIO(Exception):
    """A test taken for a unit test opened a network socket or started a process."""


_HOW = "mark it @pytest.mark.integration (or e2e), see tests/kinds.py"


@contextmanager
def unit_guard() -> Iterator[None]:
    """Shut the network (TCP/UDP; Unix sockets stay open) and subprocesses while a
    unit test runs, for its thread only: a thread an earlier test left behind in the
    same process (a broker client's, say) keeps its sockets."""
    test_thread = threading.get_ident()
    originals = {
        (socket.socket, "connect"): socket.socket.connect,
        (socket.socket, "connect_ex"): socket.socket.connect_ex,
        (socket.socket, "bind"): socket.socket.bind,
        (subprocess.Popen, "__init__"): subprocess.Popen.__init__,
    }

    def refusing(what: str, original):
        def refuse(self, *args, **kwargs):
            unix = isinstance(self, socket.socket) and self.family == socket.AF_UNIX
            if unix or threading.get_ident() != test_thread:
                return original(self, *args, **kwargs)
            raise UnitTestDidIO(f"a unit test called {what}{args!r}: {_HOW}")

        return refuse

    for (owner, name), original in originals.items():
        setattr(owner, name, refusing(f"{owner.__name__}.{name}", original))
    try:
        yield
    finally:
        for (owner, name), original in originals.items():
            setattr(owner, name, original)
