"""Which scheduler build a test run is against: pure Python (the default), or with
``SHOAL_EXPECT_COMPILED=1`` the compiled one (mypyc) that ``make test`` builds and runs
``tests/scheduler`` against. Then every module listed in pyproject.toml's
``[tool.shoal.mypyc]`` must be imported as an extension module: a run that silently fell
back to the ``.py`` files would test pure Python twice."""

from __future__ import annotations

import importlib
import os
import sys
from importlib.machinery import ExtensionFileLoader
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def expected() -> bool:
    return os.environ.get("SHOAL_EXPECT_COMPILED", "") == "1"


def listed_modules() -> list[str]:
    """pyproject.toml's ``[tool.shoal.mypyc] modules`` (what the compiled build compiles)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    with open(PYPROJECT, "rb") as f:
        return list(tomllib.load(f)["tool"]["shoal"]["mypyc"]["modules"])


def interpreted(names: list[str]) -> list[str]:
    """Those of ``names`` imported from Python source (not compiled), with their files."""
    out = []
    for name in names:
        mod = importlib.import_module(name)
        if not isinstance(getattr(mod, "__loader__", None), ExtensionFileLoader):
            out.append(f"{name} ({getattr(mod, '__file__', '?')})")
    return out


def check_build() -> None:
    """Raise if the run expects the compiled build and any listed module is not compiled."""
    if not expected():
        return
    missing = interpreted(listed_modules())
    if missing:
        raise RuntimeError(
            "SHOAL_EXPECT_COMPILED=1 but these modules were imported from Python source, "
            "not the compiled build: " + ", ".join(missing) + ". Put the unpacked compiled "
            "wheel first on PYTHONPATH (make test-compiled does) and run pytest with "
            "-o pythonpath=tests, so that the source tree's shoal does not come first.")
