"""What the report says about the machine and the software it measured."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import shutil
import subprocess


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _chromium_version() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(path):
        return "not installed (apt-get install chromium)"
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20)
        return out.stdout.strip() or "installed"
    except (OSError, subprocess.SubprocessError):
        return "installed"


def scheduler_build() -> str:
    """Which scheduler state machine this process imports: ``"compiled (mypyc)"`` or
    ``"pure Python"`` (README, "Compiled scheduler")."""
    from shoal.scheduler import build

    return build()


def environment() -> dict[str, str]:
    """Versions, CPU, cores, memory, load and date, in report order."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    try:
        import psutil

        memory = f"{psutil.virtual_memory().total / 2**30:.1f} GiB"
    except ImportError:
        memory = "unknown"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "shoal": _version("shoal"),
        "shoal scheduler": scheduler_build(),
        "dask": _version("dask"),
        "distributed": _version("distributed"),
        "numpy": _version("numpy"),
        "h5py": _version("h5py"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "CPU": cpu_model(),
        "cores": f"{os.cpu_count()} logical, {usable} usable by this process",
        "memory": memory,
        "load average at start (1, 5, 15 min)": load,
        "chromium": _chromium_version(),
    }
