"""koe's own packages as the Makefile lists them, what their sources import and what
they require: for the tests that keep development code out of the runtime image."""

from __future__ import annotations

import ast
import importlib.util
import re
import tomllib
from functools import cache
from importlib import metadata
from pathlib import Path
from types import ModuleType

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]


def makefile_packages(variable: str) -> list[str]:
    """The package folders a Makefile variable lists: PACKAGES (the runtime, which the
    image builds) or DEV_PACKAGES (development only)."""
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    found = re.search(rf"^{variable} := (.+)$", makefile, re.M)
    assert found, f"the Makefile sets no {variable}"
    return found[1].split()


def own_modules(package: str) -> set[str]:
    """The top-level modules a package folder ships (each src/<name>/__init__.py)."""
    return {init.parent.name for init in (REPO / package / "src").glob("*/__init__.py")}


def project(package: str) -> dict:
    return tomllib.loads((REPO / package / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def distribution(package: str) -> str:
    return canonicalize_name(project(package)["name"])


def declared_requirements(package: str) -> set[str]:
    """The distributions a package's pyproject.toml names itself, canonical names."""
    return {canonicalize_name(Requirement(line).name) for line in project(package)["dependencies"]}


def imports_in(folder: Path) -> set[str]:
    """The top-level modules that the Python files under `folder` import by absolute
    name, wherever the import stands (a function's late import counts: it runs too)."""
    names: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.partition(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.partition(".")[0])
    return names


@cache
def _providers() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def providers(module: str) -> set[str]:
    """The installed distributions that ship top-level `module` (none: not installed)."""
    return {canonicalize_name(name) for name in _providers().get(module, [])}


def load_pin_constraints() -> ModuleType:
    """deploy/pin_constraints.py as a module (a script, not a package)."""
    spec = importlib.util.spec_from_file_location("pin", REPO / "deploy" / "pin_constraints.py")
    assert spec and spec.loader
    pin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pin)
    return pin
