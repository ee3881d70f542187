"""The runtime packages (the Makefile's PACKAGES, which the image builds) stand on their
own: none imports or requires a development package (DEV_PACKAGES: koe_devkit, with the
local broker, the SMTP sink and the tests' helpers), and every module any of koe's
packages imports comes with what that package requires. koe_kit once shipped
smtp_sink, which imported aiosmtpd that nothing required: a module in the image that
could not import."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from packages import (
    REPO,
    declared_requirements,
    distribution,
    imports_in,
    load_pin_constraints,
    makefile_packages,
    own_modules,
    providers,
)

RUNTIME = makefile_packages("PACKAGES")
DEVELOPMENT = makefile_packages("DEV_PACKAGES")
EVERY = RUNTIME + DEVELOPMENT
LIBRARIES = [package for package in EVERY if package.startswith("libs/")]


def third_party_imports(package: str) -> set[str]:
    return imports_in(REPO / package / "src") - set(sys.stdlib_module_names) - own_modules(package)


def not_provided(package: str, available: set[str]) -> dict[str, set[str]]:
    """Each module `package` imports that no distribution in `available` ships, with
    the distributions that do ship it here."""
    return {
        module: providers(module)
        for module in sorted(third_party_imports(package))
        if not providers(module) & available
    }


def test_the_import_reader_finds_late_imports_and_skips_relative_ones(tmp_path: Path):
    (tmp_path / "module.py").write_text(
        "import os.path\nfrom . import sibling\n\n"
        "def start():\n    from koe_devkit.local_broker import free_port\n    return free_port\n"
    )
    assert imports_in(tmp_path) == {"os", "koe_devkit"}


def test_the_development_packages_hold_the_dev_stack_and_the_test_helpers():
    assert {"koe_devkit"} <= set().union(*(own_modules(p) for p in DEVELOPMENT))
    devkit = REPO / "libs/koe_devkit/src/koe_devkit"
    for module in ("local_stack", "local_broker", "smtp_sink", "testing"):
        assert (devkit / f"{module}.py").is_file(), module
        assert not (REPO / f"libs/koe_kit/src/koe_kit/{module}.py").exists(), module


@pytest.mark.parametrize("package", RUNTIME)
def test_a_runtime_package_neither_imports_nor_requires_a_development_package(package: str):
    development_modules = set().union(*(own_modules(p) for p in DEVELOPMENT))
    imported = imports_in(REPO / package / "src") & development_modules
    assert not imported, f"{package} imports {sorted(imported)}: development only"
    required = load_pin_constraints().requirement_closure((distribution(package),))
    development = required.keys() & {distribution(p) for p in DEVELOPMENT}
    assert not development, f"{package} requires {sorted(development)}: development only"


@pytest.mark.parametrize("package", EVERY)
def test_every_module_a_package_imports_is_installed_with_what_it_requires(package: str):
    """pip installs a package with what it requires, transitively, and the image with
    nothing more (`pip check` in the Dockerfile): a module that comes from elsewhere
    (requirements-dev.txt, another package) would be missing there."""
    own = distribution(package)
    available = {own, *load_pin_constraints().requirement_closure((own,))}
    missing = not_provided(package, available)
    assert not missing, f"{package} imports modules nothing it requires ships: {missing}"


@pytest.mark.parametrize("package", LIBRARIES)
def test_a_library_names_each_distribution_it_imports_itself(package: str):
    """A library's users install it for its own sake; what it imports reaches them
    only if it names it: one it reaches only through another (werkzeug through Flask)
    could leave with that one's next release. The services lean on koe-kit for Flask
    and the like, which the test above covers."""
    missing = not_provided(package, {distribution(package), *declared_requirements(package)})
    assert not missing, f"{package}/pyproject.toml does not name what ships {missing}"


def test_the_image_pins_the_requirements_of_the_runtime_packages_only():
    """deploy/pin_constraints.py pins what the image installs from its own list of koe's
    packages: that list is the Makefile's runtime one, so no development dependency
    (aiosmtpd, the Tansu wheel) lands in constraints.txt or the image."""
    assert set(load_pin_constraints().KOE_PACKAGES) == {distribution(p) for p in RUNTIME}
