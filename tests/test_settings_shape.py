"""One settings shape (koe_kit.config): only the loader reads the environment, and each
process's loader names every bad variable at once (issue 16)."""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping

import pytest

from koe_kit.config import ConfigError, load
from koe_kit.heartbeat import read_heartbeat_check_settings
from koe_kit.topics import read_topics_settings
from support import REPO

SOURCES = sorted(REPO.glob("libs/*/src/**/*.py")) + sorted(REPO.glob("services/*/src/**/*.py"))

# The modules that may read the process environment, and why.
ENVIRONMENT_READERS = {
    # The one loader: os.environ becomes settings here and nowhere else.
    "koe_kit/config.py",
    # gunicorn's own configuration file: it puts the metrics folder into the
    # environment before the workers import prometheus_client, which reads it there.
    "koe_kit/gunicorn_conf.py",
    # The dev launcher (`make run`): its job is to hand its environment on to the
    # processes it starts.
    "/local_stack.py",
}

OS_ENVIRONMENT = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}


def environment_reads(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, what) for each place the source touches the process environment: os.environ
    and friends, or an EnvReader made without a mapping (it falls back to os.environ)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in OS_ENVIRONMENT:
            if isinstance(node.value, ast.Name) and node.value.id == "os":
                yield node.lineno, f"os.{node.attr}"
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            for alias in node.names:
                if alias.name in OS_ENVIRONMENT:
                    yield node.lineno, f"from os import {alias.name}"
        elif isinstance(node, ast.Call) and not node.args and not node.keywords:
            called = node.func
            name = called.attr if isinstance(called, ast.Attribute) else getattr(called, "id", "")
            if name == "EnvReader":
                yield node.lineno, "EnvReader() (the process environment)"


def test_the_scan_sees_each_way_of_reading_the_environment():
    source = (
        "import os\nfrom os import getenv\n"
        "a = os.environ['X']\nb = os.getenv('Y')\nc = EnvReader()\nd = EnvReader({})\n"
    )
    assert sorted(line for line, _what in environment_reads(ast.parse(source))) == [2, 3, 4, 5]


def test_no_module_outside_config_reads_the_environment():
    found = []
    for path in SOURCES:
        where = path.relative_to(REPO).as_posix()
        if any(where.endswith(allowed) for allowed in ENVIRONMENT_READERS):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        found += [f"{where}:{line}: {what}" for line, what in environment_reads(tree)]
    assert len(SOURCES) > 100  # the globs found the tree
    assert found == [], "read settings in the process's loader (koe_kit.config.load):\n" + (
        "\n".join(found)
    )


# -- every bad variable at once ---------------------------------------------------

# Good values for everything some loader requires; each loader reads what it needs.
VALID = {
    "KOE_ALLOWED_ORIGINS": "https://www.info.city.tsu.mie.jp",
    "KOE_CHALLENGE_KEY": "c" * 32,
    "KOE_CMS_KEY": "k" * 32,
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
    "KOE_API_TOKEN": "t" * 32,
    "KOE_SECRET_KEY": "s" * 48,
    "KOE_DIVISIONS_FILE": str(REPO / "divisions.yaml"),
    "KOE_HEARTBEAT_FILE": "var/heartbeat",
}

# Values that break most settings; a variable none of them breaks (free text) gets
# .env.example's placeholder, which every reader refuses.
PROBES = ("-1", "0", "x", "1e99", "99999999999", "/nowhere/at/all", "ftp://a b")
PLACEHOLDER = "change-me-please"


class Recording(dict[str, str]):
    """A mapping that remembers every name a reader asked it for."""

    def __init__(self, values: Mapping[str, str]):
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, name, default=None):  # type: ignore[override]
        self.asked.add(name)
        return super().get(name, default)


def service_loaders() -> Iterator[tuple[str, Callable[[Mapping[str, str]], object]]]:
    """Each process's loader: every load_* of the services' config modules, and the
    koe_kit commands' readers."""
    for service in ("feedback", "aggregator", "notifier"):
        module = importlib.import_module(f"{service}.config")
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("load_") and function.__module__ == module.__name__:
                yield f"{service}.{name}", function
    for read in (read_topics_settings, read_heartbeat_check_settings):
        yield f"koe_kit.{read.__name__}", lambda env, read=read: load(read, env)


LOADERS = dict(service_loaders())


def problems(loader: Callable[[Mapping[str, str]], object], env: Mapping[str, str]) -> list[str]:
    try:
        loader(env)
    except ConfigError as exc:
        return exc.problems
    return []


def named(name: str, said: list[str]) -> bool:
    """Whether a problem is about `name` (each starts with the variable it is about)."""
    return any(problem.startswith((f"{name}=", f"{name} ", f"{name}:")) for problem in said)


def bad_value(loader: Callable[[Mapping[str, str]], object], name: str) -> str:
    """A value of `name` the loader refuses, saying so by name."""
    for probe in PROBES:
        if named(name, problems(loader, VALID | {name: probe})):
            return probe
    return PLACEHOLDER


@pytest.mark.parametrize("process", sorted(LOADERS))
def test_every_bad_variable_is_named_at_once(process):
    loader = LOADERS[process]
    recording = Recording(VALID)
    loader(recording)  # the valid settings load
    names = sorted(recording.asked)
    bad = {name: bad_value(loader, name) for name in names}
    said = problems(loader, VALID | bad)
    assert said, f"{process} accepted {bad}"
    assert [name for name in names if not named(name, said)] == [], said
    # Not just placeholders: most variables have values of the wrong kind.
    assert sum(value != PLACEHOLDER for value in bad.values()) >= len(bad) // 3, bad


def test_every_process_has_a_loader():
    assert {
        "feedback.load_settings",
        "feedback.load_relay_settings",
        "aggregator.load_consumer_settings",
        "aggregator.load_web_settings",
        "notifier.load_consumer_settings",
        "notifier.load_web_settings",
    } <= set(LOADERS)


# -- nothing read at import ------------------------------------------------------

IMPORT_AUDIT = r"""
import importlib, json, pathlib, sys

KOE = [str(pathlib.Path(p).resolve()) for p in sys.argv[2:]]
MODULES = json.loads(sys.argv[1])
found = []

def from_koe():
    # Where in koe the innermost code that is not the standard library's runs; None
    # when that is a library's own (kafka-python reads its protocol files on import).
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith(tuple(KOE)):
            return f"{name}:{frame.f_lineno}"
        if "site-packages" in name:
            return None
        frame = frame.f_back
    return None

def hook(event, args):
    if event == "open" and isinstance(args[0], str) and not args[0].endswith(
        (".py", ".pyc", ".so", ".pth")
    ):
        where = from_koe()
        if where:
            found.append(f"{args[0]} from {where}")

sys.addaudithook(hook)
for name in MODULES:
    importlib.import_module(name)
print(json.dumps(found))
"""


# Modules that are run, not imported: reading their settings and files is their job.
RUN_NOT_IMPORTED = ("__main__", "wsgi", "gunicorn_conf", "alembic_env")


def module_names() -> list[str]:
    names = []
    for path in SOURCES:
        package_root = next(p for p in path.parents if p.name == "src")
        parts = path.relative_to(package_root).with_suffix("").parts
        if "migrations" in parts or parts[-1] in RUN_NOT_IMPORTED:
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


@pytest.mark.integration  # a subprocess: a fresh interpreter imports everything once
def test_importing_koe_reads_no_file():
    roots = [str(p) for p in sorted(REPO.glob("libs/*/src")) + sorted(REPO.glob("services/*/src"))]
    run = subprocess.run(
        [sys.executable, "-c", IMPORT_AUDIT, json.dumps(module_names()), *roots],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == [], "read it when first needed, or in the loader"
