"""``benchmarks._worker_state``: each workload's events take a fresh ``WorkerState`` through
its tasks to the end (no task or fetch left), and the reported task count is the number
of tasks assigned."""

from __future__ import annotations

import pytest

from benchmarks._worker_state import WORKLOADS, run
from shoal.worker._events import ComputeAssigned, ComputesAssigned


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_worker_state_workload_runs_every_task_to_its_end(name: str) -> None:
    batches, count = WORKLOADS[name](1_001, 100)
    assigned = sum(len(ev.msg.keys) if type(ev) is ComputesAssigned else 1
                   for events in batches for ev in events
                   if type(ev) in (ComputeAssigned, ComputesAssigned))
    assert assigned == count
    assert run(batches) >= 0.0  # run() asserts the state ends with no task or fetch left
