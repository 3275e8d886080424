"""The environment variables a worker process starts with, as dask's nanny sets them.

Owns: shoal's defaults (glibc malloc thresholds, BLAS thread counts) and their precedence
against dask's ``distributed.nanny.pre-spawn-environ`` / ``distributed.nanny.environ`` config,
the variables exported in the user's shell and a nanny's explicit ``env``. Pure: the shell's
environment and the config arrive as arguments (``configured_spawn_environ`` reads them).
Must not know: processes, the nanny's own variables (hash seed, security, plugin state).

Precedence, lowest first (dask's ``_get_env_variables`` semantics): shoal's defaults, then
``pre-spawn-environ``, then ``environ``; a variable exported in the shell wins over all of
those; a nanny's explicit ``env`` wins over the shell. A config value of ``None`` leaves
that variable unset (the worker inherits whatever the shell has, if anything).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MiB = 2**20
# glibc malloc thresholds. dask sets MALLOC_TRIM_THRESHOLD_=65536 so that memory freed by
# spilling leaves the process. That also freezes glibc's mmap threshold at 128 KiB, and a
# task thread's arena then gives every freed chunk back at once (madvise): each chunk-sized
# array is page-faulted in afresh, which made summing 4 MB HDF5 chunks 8-18x slower on a
# worker than in-process. shoal keeps blocks up to the threshold in the heap for reuse and
# maps bigger ones (given back on free); the memory monitor trims the heap (malloc_trim)
# when the process passes *spill*. A small worker cannot afford 16 MiB kept per arena (a
# task thread's arena holds freed blocks malloc_trim may not give back): its threshold is a
# 64th of its memory limit, so 16 MiB from a 1 GiB limit up (or without a limit).
# Blocks of 4 MiB and more are mapped, though: a dataframe's columns of a few MiB (a task
# shuffle's sorted groups and joins) kept in the heap left 60-200 MB of freed heap
# resident between the blocks still alive at a shuffle's peak (glibc returns only the
# top of a heap), against ~10 MB for dask's workers (benchmarks/RESULTS.md, issue 12);
# 4 MB HDF5 chunks (4,000,000 bytes) stay below it.
_MAX_ALLOCATOR_THRESHOLD = 16 * MiB
_MAX_MMAP_THRESHOLD = 4 * MiB
# Thread counts of the BLAS libraries numpy may use; dask's pre-spawn-environ sets them to
# 1: each task thread runs its own BLAS calls (a pool per call oversubscribes the cores).
BLAS_THREADS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_CONFIG_KEYS = ("distributed.nanny.pre-spawn-environ", "distributed.nanny.environ")


def allocator_threshold(memory_limit: int) -> int:
    """glibc's trim threshold, in bytes, for a worker with ``memory_limit`` bytes (0: no
    limit): a 64th of the limit, at most 16 MiB."""
    if not memory_limit or memory_limit <= 0:
        return _MAX_ALLOCATOR_THRESHOLD
    return max(1, min(_MAX_ALLOCATOR_THRESHOLD, memory_limit // 64))


def mmap_threshold(memory_limit: int) -> int:
    """glibc's mmap threshold, in bytes, for a worker with ``memory_limit`` bytes (0: no
    limit): the trim threshold, at most 4 MiB."""
    return min(allocator_threshold(memory_limit), _MAX_MMAP_THRESHOLD)


def default_environ(memory_limit: int) -> dict[str, str]:
    """shoal's defaults of ``pre-spawn-environ`` for a worker with ``memory_limit``."""
    return {
        "MALLOC_TRIM_THRESHOLD_": str(allocator_threshold(memory_limit)),
        "MALLOC_MMAP_THRESHOLD_": str(mmap_threshold(memory_limit)),
        **dict.fromkeys(BLAS_THREADS, "1"),
    }


def spawn_environ(
    shell: Mapping[str, str],
    *,
    pre_spawn: Mapping[str, Any] | None = None,
    environ: Mapping[str, Any] | None = None,
    explicit: Mapping[str, Any] | None = None,
    memory_limit: int = 0,
    shipped_pre_spawn: Mapping[str, Any] | None = None,
    shipped_environ: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The variables to set in a worker process (on top of the inherited ``shell``), by
    the precedence in this module's docstring. ``shipped_*``: what an installed
    ``distributed`` ships as the defaults of those config keys; entries equal to them are
    not settings of the user's, and shoal's defaults stand for them.

    Raises:
        TypeError: a config value that is not a mapping.
    """
    env: dict[str, str | None] = dict(default_environ(memory_limit))
    for key, configured, shipped in ((_CONFIG_KEYS[0], pre_spawn, shipped_pre_spawn),
                                     (_CONFIG_KEYS[1], environ, shipped_environ)):
        configured = configured or {}
        if not isinstance(configured, Mapping):
            raise TypeError(f"dask config {key!r} must be a mapping of variable names to "
                            f"values, got {type(configured).__name__}: {configured!r}")
        shipped = shipped or {}
        for name, value in configured.items():
            if name in shipped and shipped[name] == value:
                continue
            env[str(name)] = None if value is None else str(value)
    out = {name: shell.get(name, value) for name, value in env.items() if value is not None}
    out.update({str(k): str(v) for k, v in (explicit or {}).items()})
    return out


def configured_spawn_environ(shell: Mapping[str, str], explicit: Mapping[str, Any] | None,
                             memory_limit: int) -> dict[str, str]:
    """:func:`spawn_environ` with dask's config as it is now in this process."""
    import dask.config

    return spawn_environ(
        shell,
        pre_spawn=dask.config.get(_CONFIG_KEYS[0], None),
        environ=dask.config.get(_CONFIG_KEYS[1], None),
        explicit=explicit,
        memory_limit=memory_limit,
        shipped_pre_spawn=shipped_defaults(_CONFIG_KEYS[0]),
        shipped_environ=shipped_defaults(_CONFIG_KEYS[1]),
    )


def shipped_defaults(key: str) -> dict[str, Any]:
    """What dask's registered default configs (``dask.config.defaults``) hold at ``key``."""
    import dask.config

    found: dict[str, Any] = {}
    for defaults in dask.config.defaults:
        node: Any = defaults
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            found.update(node)
    return found
