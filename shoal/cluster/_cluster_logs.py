"""``cluster.get_logs()`` of a cluster whose scheduler runs in this process (LocalCluster,
SpecCluster): recent log lines, newest first, as text per source.

Owns: gathering them: this process's cluster loggers (``shoal.cluster``,
``shoal.adaptive``), the scheduler's ring, and each worker's (asked through the scheduler,
as ``client.run`` does). Must not know which cluster asks.
"""

from __future__ import annotations

from typing import Any

from shoal import _logs


async def collect(server: Any, cluster: bool, scheduler: bool, workers: Any) -> dict[str, str]:
    """``{"Cluster": ..., "Scheduler": ..., <worker address>: ...}`` (what was asked for;
    ``workers``: True for all, an address, or a list of them). A worker that cannot
    answer gets a line saying why."""
    from shoal._run import pickle_code
    from shoal.protocol._errors import error_to_exception
    from shoal.protocol._serialize import Serialized, loads
    from shoal.worker._introspect import worker_logs

    fmt = _logs.configured_format()
    out: dict[str, str] = {}
    if cluster:
        rows = _logs.merged_newest([_logs.ring("shoal.cluster"), _logs.ring("shoal.adaptive")],
                                   fmt=fmt)
        out["Cluster"] = "\n".join(line for _lv, line in rows)
    if scheduler:
        out["Scheduler"] = "\n".join(line for _lv, line in server.logs.newest(fmt=fmt))
    if workers:
        chosen = None if workers is True else [workers] if isinstance(workers, str) else list(workers)
        answers = await server.start_run(None, pickle_code(worker_logs), chosen)
        for address, (ok, value) in answers.items():
            if not ok:
                out[address] = f"<no logs: {error_to_exception(value)}>"
                continue
            rows = loads(value) if isinstance(value, Serialized) else value
            out[address] = "\n".join(line for _lv, line in rows)
    return out
