"""shoal's build backend: setuptools' own, plus the optional compiled scheduler.

The default build is pure Python. With ``SHOAL_MYPYC=1`` in the environment, a wheel
build (``pip install .``, ``pip wheel .``) also compiles the modules listed in
``pyproject.toml``'s ``[tool.shoal.mypyc] modules`` with mypyc (see setup.py), and asks
for mypy (which provides mypyc) in the isolated build environment: a pure build does not
download it. Editable installs stay pure Python (compiled modules in the source tree would
shadow the code being edited).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403  (the PEP 517 hooks not redefined here)

ENV = "SHOAL_MYPYC"
# mypy ships mypyc; the compiled build was measured with mypy 1.x-2.x.
BUILD_REQUIRES = ["mypy>=1.10", "tomli>=1.1; python_version < '3.11'"]


def wanted() -> bool:
    """Whether the environment asks for the compiled build (``SHOAL_MYPYC=1``)."""
    value = os.environ.get(ENV, "").strip()
    if value in ("", "0"):
        return False
    if value == "1":
        return True
    raise ValueError(f"{ENV}={value!r}: set it to 1 for the compiled (mypyc) build, or leave "
                     "it unset (or 0) for pure Python")


def modules(root: Path) -> list[str]:
    """The dotted names of the modules to compile, from ``root/pyproject.toml``."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover (3.10: tomli is in BUILD_REQUIRES)
        import tomli as tomllib
    with open(root / "pyproject.toml", "rb") as f:
        names = tomllib.load(f)["tool"]["shoal"]["mypyc"]["modules"]
    if not names or not all(isinstance(n, str) and n.startswith("shoal.") for n in names):
        raise ValueError("pyproject.toml [tool.shoal.mypyc] modules must list shoal modules "
                         f"by dotted name, got {names!r}")
    return list(names)


def get_requires_for_build_wheel(config_settings: Any = None) -> list[str]:
    if wanted():
        # Not setuptools' hook: it runs setup.py, which needs mypyc, not yet installed
        # (this project declares no setup_requires, so it would add nothing).
        return list(BUILD_REQUIRES)
    return list(_setuptools.get_requires_for_build_wheel(config_settings))


def _editable_pure() -> None:
    if wanted():
        raise ValueError(f"{ENV}=1 builds compiled wheels only: use `pip install .` (not -e), "
                         "or unset it for an editable pure-Python install")


def get_requires_for_build_editable(config_settings: Any = None) -> list[str]:
    _editable_pure()
    return list(_setuptools.get_requires_for_build_editable(config_settings))


def build_editable(wheel_directory: str, config_settings: Any = None,
                   metadata_directory: str | None = None) -> str:
    _editable_pure()
    return _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)
