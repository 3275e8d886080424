"""Scheduler files: how workers and clients find a scheduler (and its token) on shared disk.

Owns: the file's format — dask's JSON (``type``, ``id``, ``address``, ``services``,
``started``, ``workers``) plus shoal's ``token`` — written atomically with mode 0600 (it
holds the cluster's secret), and waiting for it to appear, as dask does.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any


def write_scheduler_file(path: str, info: dict[str, Any], token: str | None) -> None:
    """Write ``info`` (+ ``token``) to ``path``, readable by its owner only.

    Raises:
        OSError: the file cannot be written.
    """
    data = dict(info)
    if token:
        data["token"] = token
    path = os.path.abspath(os.path.expanduser(path))
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask may have widened nothing, but an old file may be wider
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
    except BaseException:
        os.unlink(tmp)
        raise
    os.replace(tmp, path)  # readers never see half a file


def read_scheduler_file(path: str, timeout: float) -> dict[str, Any]:
    """The scheduler file's content, waiting up to ``timeout`` seconds for it to appear (a
    batch job's workers often start before the scheduler has written it).

    Raises:
        OSError: no such file within ``timeout`` seconds, or it is not a scheduler file.
    """
    path = os.path.expanduser(path)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path) as f:
                data = json.load(f)
            break
        except FileNotFoundError:
            if time.monotonic() >= deadline:
                raise OSError(f"scheduler file {path} did not appear within {timeout} s; is the "
                              "scheduler started with --scheduler-file pointing there?") from None
        except json.JSONDecodeError as exc:
            if time.monotonic() >= deadline:
                raise OSError(f"scheduler file {path} is not valid JSON ({exc})") from None
        time.sleep(0.05)  # polling a shared file system: there is no event to wait on
    if not isinstance(data, dict) or not isinstance(data.get("address"), str):
        raise OSError(f"{path} is not a scheduler file (no 'address' in it)")
    return data


def with_file_token(info: dict[str, Any], security: Any) -> Any:
    """``security`` with the scheduler file's token when the file has one and ``security``
    none (a new ``Security`` if it was None); else ``security`` as given."""
    if info.get("token"):
        from shoal.comm._security import Security

        security = security if security is not None else Security()
        security.token = security.token or info["token"]
    return security


def remove_scheduler_file(path: str, address: str) -> None:
    """Remove ``path`` if it still names ``address`` (a newer scheduler may have replaced
    it); a missing or unreadable file is left alone."""
    path = os.path.expanduser(path)
    try:
        with open(path) as f:
            if json.load(f).get("address") != address:
                return
        os.remove(path)
    except (OSError, ValueError, AttributeError) as exc:
        import logging

        logging.getLogger("shoal.scheduler").info("scheduler file %s not removed: %s", path, exc)
