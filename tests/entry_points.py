"""koe's entry points as the code and the tests know them, for the checks of
docker-compose.yml (tests/test_compose.py) and docs/operations.md
(tests/test_operations.py): a command there must be one that runs here."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from koe_devkit.local_stack import LocalStack

REPO = Path(__file__).resolve().parents[1]


def entry_point(argv: list[str]) -> str:
    """`python -m X` → X; `gunicorn … X.wsgi:app` → X.wsgi:app (as compose or
    local_stack, with its own interpreter, writes them)."""
    if argv[0] in ("python", sys.executable) and argv[1] == "-m" and argv[2] != "gunicorn":
        return argv[2]
    if "gunicorn" in argv[:3]:
        return next(a for a in argv if a.endswith(":app"))
    raise AssertionError(f"not a koe entry point: {argv}")


def local_stack_commands(scratch: Path) -> list[list[str]]:
    """Every command `make run` (and so the end-to-end tests) runs."""
    stack = LocalStack.from_env({"KAFKA_BOOTSTRAP_SERVERS": "x:1"}, scratch)
    stack.define_processes()
    setup = [argv for argv, _env in stack.setup_commands()]
    return setup + [p.argv for p in stack.processes.values()]


def commands_tests_run() -> set[str]:
    """Modules the test files start as `[sys.executable, "-m", "<module>"]`."""
    found = set()
    for path in [*REPO.glob("tests/*.py"), *REPO.glob("*/*/tests/*.py")]:
        found |= set(re.findall(r'"-m",\s*"([a-z_]+\.[a-z_.]+)"', path.read_text("utf-8")))
    return found


def known_entry_points(scratch: Path) -> set[str]:
    return {entry_point(argv) for argv in local_stack_commands(scratch)} | commands_tests_run()
