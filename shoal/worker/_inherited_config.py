"""The dask config a nanny's worker process inherits: the settings the nanny's process made
(``dask.config.set``), as dask's nanny passes its config on, so that they apply in tasks.

Owns: telling those settings from dask's defaults, YAML files and ``DASK_*`` variables
(which the worker reads itself), and serializing them for ``DASK_INTERNAL_INHERIT_CONFIG``.
Must not know processes.
"""

from __future__ import annotations

from typing import Any

# dask reads this variable when ``dask.config`` is first imported (dask's nanny and SSH
# deployments use it), so the worker gets the config lazily, at no start-up cost.
INHERIT_CONFIG_ENV = "DASK_INTERNAL_INHERIT_CONFIG"
# Top-level settings that describe this process, not the cluster: the client sets itself
# as dask's scheduler here; in a worker that would point at nothing.
_NOT_INHERITED = frozenset({"scheduler", "get"})
_SKIP = object()


def _jsonable(value: Any) -> Any:
    """``value`` with whatever JSON cannot carry left out (objects set as config values)."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(k, str):
                v2 = _jsonable(v)
                if v2 is not _SKIP:
                    out[k] = v2
        return out
    if isinstance(value, (list, tuple)):
        items = [_jsonable(v) for v in value]
        return [v for v in items if v is not _SKIP]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return _SKIP


def _changed(config: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    """The settings of ``config`` that differ from ``baseline`` (nested dicts compared
    key by key)."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        base = baseline.get(k, _SKIP)
        if isinstance(v, dict) and isinstance(base, dict):
            sub = _changed(v, base)
            if sub:
                out[k] = sub
        elif base is _SKIP or base != v:
            out[k] = v
    return out


def inherited_config() -> str:
    """The dask config settings this process made (``dask.config.set``, changes to
    ``dask.config.config``), serialized for a worker process, as dask's nanny passes its
    config on: they apply inside tasks too. Defaults, YAML files and ``DASK_*`` variables
    are not repeated: the worker reads those itself."""
    import dask.config

    baseline: dict[str, Any] = {}
    for defaults in dask.config.defaults:
        dask.config.update(baseline, defaults, priority="new")
    dask.config.update(baseline, dask.config.collect(), priority="new")
    config = {k: v for k, v in dask.config.global_config.items() if k not in _NOT_INHERITED}
    return str(dask.config.serialize(_jsonable(_changed(config, baseline))))
