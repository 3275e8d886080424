"""setuptools' entry point: the metadata is in pyproject.toml. This file only adds the
optional compiled scheduler: with ``SHOAL_MYPYC=1``, the modules listed in pyproject.toml's
``[tool.shoal.mypyc] modules`` are compiled with mypyc into extension modules, installed
beside their ``.py`` sources (Python imports the extension first). README, "Compiled
scheduler"."""

import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "build_backend"))
from shoal_build import modules, wanted  # noqa: E402

# Metadata (pip's "Preparing metadata" runs egg_info/dist_info) needs no extensions:
# mypycify type-checks and translates the whole list, a minute of CPU, so only a build does.
METADATA_ONLY = {"egg_info", "dist_info", "sdist"}
ext_modules = []
if wanted() and sys.argv[1:2] and sys.argv[1] not in METADATA_ONLY:
    from mypyc.build import mypycify

    paths = [str(Path(*name.split(".")).with_suffix(".py")) for name in modules(ROOT)]
    # One shared library for all of them ("shoal__mypyc"); asserts are kept (validate()).
    ext_modules = mypycify(paths, opt_level="3", group_name="shoal", target_dir="build/mypyc")
    # mypy's whole program (about 1 GB of objects) is left behind: out of the collector's
    # walks, or the build's later collections spend minutes on it (measured under load).
    import gc

    gc.freeze()

# Each build in its own directory: setuptools never empties build/lib, and a pure wheel
# built after a compiled one would otherwise pack the compiled one's extension modules.
setup(ext_modules=ext_modules,
      options={"build": {"build_base": "build/mypyc" if ext_modules else "build/pure"}})
