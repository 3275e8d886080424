"""Timeouts as dask takes them: seconds, a string like "2 minutes", None for none, and
dask's config keys for the defaults."""

from __future__ import annotations

import datetime
from typing import Any

# dask's ``no_default``: "use the configured value" (None means "no timeout").
NO_DEFAULT: Any = "__no_default__"


def seconds(value: Any, what: str, default: float | None) -> float | None:
    """``value`` in seconds; ``default`` for NO_DEFAULT.

    Raises:
        ValueError: not a positive duration (the message names ``what``).
    """
    if value is NO_DEFAULT:
        return default
    if value is None:
        return None
    if isinstance(value, str):
        value = _parsed(value, what)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{what}: timeout must be a positive number of seconds, a duration "
                         f"like '30s', or None; got {value!r}")
    return float(value)


def duration(value: Any) -> float | None:
    """A wait's ``timeout=`` in seconds: a string (``"1s"``, ``"500ms"``) read as dask's
    ``parse_timedelta`` reads it, a ``timedelta`` as its seconds; anything else (a number,
    None) as given.

    Raises:
        ValueError: a string that is not a duration.
    """
    if not isinstance(value, str):
        if isinstance(value, datetime.timedelta):
            return value.total_seconds()
        return value  # type: ignore[no-any-return]
    return _parsed(value, "")


def wait_timeout(value: Any, what: str) -> float | None:
    """A coordination wait's ``timeout=`` (``Lock.acquire``, ``Queue.get``...) in seconds, as
    dask's ``parse_timedelta`` reads it (a number, ``"200ms"``, a ``timedelta``), None for
    no limit; 0 means "do not wait".

    Raises:
        ValueError: a negative number or a string that is not a duration (dask fails on
            these with a parse error naming neither the call nor the value).
    """
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"{what}: timeout must be 0 or more seconds (or None to wait "
                             f"as long as it takes), got {value!r}")
        return float(value)
    if isinstance(value, datetime.timedelta):
        return wait_timeout(value.total_seconds(), what)
    if isinstance(value, str):
        return wait_timeout(_parsed(value, what), what)
    raise TypeError(f"{what}: timeout must be a number of seconds, a duration like '200ms', "
                    f"a timedelta or None, got {type(value).__name__}")


def _parsed(text: str, what: str) -> float:
    """``text`` (``"30s"``, ``"200ms"``, ``"2 minutes"``, ``"5"``) in seconds, as dask's
    ``parse_timedelta`` reads it.

    Raises:
        ValueError: not a duration (the message names ``what`` when given).
    """
    from dask.utils import parse_timedelta

    try:
        return float(parse_timedelta(text, default="seconds"))
    except (ValueError, KeyError):
        where = f"{what}: " if what else ""
        raise ValueError(f"{where}timeout {text!r} is not a duration like 30, '30s', '200ms' "
                         "or '2 minutes'") from None


def connect_timeout() -> float:
    """dask's ``distributed.comm.timeouts.connect`` (30 s by default)."""
    import dask.config

    return seconds(dask.config.get("distributed.comm.timeouts.connect", "30s"),
                   "distributed.comm.timeouts.connect", 30.0) or 30.0
