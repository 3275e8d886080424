"""What software a process runs, for ``client.get_versions()`` (dask's format), and the
check that the client, the scheduler and the workers agree.

Owns: one process's versions (``host``: Python, OS, machine; ``packages``: shoal's and
dask's requirements plus any asked for, None when not installed) and the list of packages
whose versions differ between processes. Reads installed metadata only: nothing is
imported to learn its version.
"""

from __future__ import annotations

import functools
import logging
import os
import platform
import struct
import sys
from collections.abc import Iterable, Mapping
from typing import Any

logger = logging.getLogger("shoal")

# A mismatch in these makes the processes disagree on the wire or on task payloads.
REQUIRED = ("shoal", "dask", "distributed", "msgpack", "cloudpickle", "tblib", "toolz")
OPTIONAL = ("numpy", "pandas", "lz4", "uvloop")


@functools.cache
def _version(package: str) -> str | None:
    from importlib import metadata  # only when asked: a client's import stays short

    if package == "python":
        return ".".join(str(p) for p in sys.version_info[:3])
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
    except Exception as exc:  # broken metadata: reported as unknown, never fails the call
        logger.debug("version of %s unknown: its installed metadata is broken (%r)",
                     package, exc)
        return None


def get_versions(packages: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """``{"host": {...}, "packages": {name: version or None}}`` for this process."""
    uname = platform.uname()
    names = ["python", *REQUIRED, *OPTIONAL, *(packages or ())]
    return {
        "host": {
            "python": "%d.%d.%d.%s.%s" % sys.version_info,  # noqa: UP031 (dask's format)
            "python-bits": struct.calcsize("P") * 8,
            "OS": uname.system,
            "OS-release": uname.release,
            "machine": uname.machine,
            "processor": uname.processor,
            "byteorder": sys.byteorder,
            "LC_ALL": os.environ.get("LC_ALL", "None"),
            "LANG": os.environ.get("LANG", "None"),
        },
        "packages": {name: _version(name) for name in dict.fromkeys(names)},
    }


def required_versions() -> dict[str, str | None]:
    """This process's versions of Python and the required packages (what the scheduler
    tells each client that connects, for :func:`warn_on_mismatch`)."""
    return {name: _version(name) for name in ("python", *REQUIRED)}


def warn_on_mismatch(scheduler_packages: Mapping[str, Any] | None) -> None:
    """Warn (as dask's client does on connecting) when the scheduler runs other versions
    of Python or of a required package than this process. Nothing when it did not say."""
    if not scheduler_packages:
        return
    lines = mismatches({"packages": required_versions()}, {"packages": scheduler_packages}, {})
    if lines:
        import warnings

        warnings.warn("Mismatched versions found between this client and the scheduler "
                      "(client.get_versions(check=True) checks the workers too):\n  "
                      + "\n  ".join(lines), UserWarning, stacklevel=2)


def check_packages(packages: Any) -> list[str]:
    """``packages`` for ``get_versions``: None or names of packages.

    Raises:
        TypeError: not a list of strings.
    """
    if packages is None:
        return []
    if isinstance(packages, str) or not all(isinstance(p, str) for p in packages):
        raise TypeError(f"packages must be a list of package names, got {packages!r}")
    return list(packages)


def mismatches(client: Mapping[str, Any], scheduler: Mapping[str, Any],
               workers: Mapping[str, Mapping[str, Any]],
               required: Iterable[str] = ("python", *REQUIRED)) -> list[str]:
    """One line per package (among ``required`` and those every side reports) whose
    version is not the same in the client, the scheduler and every worker."""
    sides: dict[str, Mapping[str, Any]] = {"client": client.get("packages", {}),
                                           "scheduler": scheduler.get("packages", {})}
    for address, versions in workers.items():
        sides[f"worker {address}"] = versions.get("packages", {})
    lines = []
    for name in dict.fromkeys(required):
        seen = {side: got.get(name) for side, got in sides.items()}
        if len(set(seen.values())) > 1:
            detail = ", ".join(f"{side}: {v or 'MISSING'}" for side, v in seen.items())
            lines.append(f"{name} ({detail})")
    return lines
