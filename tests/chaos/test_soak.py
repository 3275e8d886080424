"""A seeded, replayable soak: one cluster of worker processes (with nannies) per seed, and a
random sequence of what real programs do (map chains, delayed, array, bag, errors,
cancels, scatters, retries, tasks launching tasks, as_completed, large transfers,
restarts, retirements; and from ``_soak_coord.py`` locks, semaphores and multilocks in
tasks, queues, events, variables, datasets, ``client.run``, ``fire_and_forget``, an
asynchronous client, actors) mixed with SIGKILLs of worker processes, every result checked
exactly within a deadline (``_soak.py`` and ``_soak_coord.py`` say what is expected under
each fault); at the end every task is forgotten and no lease is held.

The suite runs a few fixed seeds; ``SHOAL_SOAK_SEEDS=0-200`` (or ``3,17,40-45``) runs
others, ``SHOAL_SOAK_STEPS`` sets the length of each sequence, ``SHOAL_SOAK_OPS`` (say
``op_guarded,op_lease_killed,op_kill,op_check``) draws only from those operations, and
``SHOAL_SOAK_LOG=path`` appends each failure to that file as it happens."""

from __future__ import annotations

import os

import dask
import pytest

from ._soak import Soak

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

WORKERS = 3
STEPS = int(os.environ.get("SHOAL_SOAK_STEPS", "24"))
OPS = {name for name in os.environ.get("SHOAL_SOAK_OPS", "").split(",") if name}


def seeds(spec: str) -> list[int]:
    out: list[int] = []
    for part in spec.split(","):
        first, _, last = part.partition("-")
        out.extend(range(int(first), int(last or first) + 1))
    return out


SEEDS = seeds(os.environ.get("SHOAL_SOAK_SEEDS", "1,2"))


@pytest.mark.timeout(900)  # a hang is reported by the soak's own deadlines, well before
@pytest.mark.parametrize("seed", SEEDS)
def test_soak(chaos_cluster, tmp_path, seed: int) -> None:
    # No innocent task may end in KilledWorker however many kills fall on it; the kills
    # here are few.
    with dask.config.set({"distributed.scheduler.allowed-failures": 1000}):
        cluster, client = chaos_cluster(n_workers=WORKERS, threads_per_worker=2)
    soak = Soak(seed, cluster, client, str(tmp_path), WORKERS)
    try:
        soak.run(STEPS, OPS)
    except BaseException as exc:
        hashseed = os.environ.get("PYTHONHASHSEED", "random")
        trace = "\n".join(soak.trace[-30:])
        message = (
            f"soak seed {seed} failed at step {soak.step_no} of {STEPS}: "
            f"{type(exc).__name__}: {exc}\n"
            f"replay: SHOAL_SOAK_SEEDS={seed} SHOAL_SOAK_STEPS={STEPS} "
            f"SHOAL_SOAK_OPS={','.join(sorted(OPS))} "
            f"PYTHONHASHSEED={hashseed} pytest tests/chaos/test_soak.py\n"
            f"last steps:\n{trace}")
        log = os.environ.get("SHOAL_SOAK_LOG")  # long runs: each failure as it happens
        if log:
            with open(log, "a") as f:
                f.write(message + "\n\n")
        raise AssertionError(message) from exc
