"""Submitting from several threads at once: every task runs, whichever thread's message
reaches the scheduler first (a function is sent with the first message that needs it)."""

from __future__ import annotations

import threading

import pytest

pytestmark = pytest.mark.integration


def test_threads_submitting_new_functions_at_once_all_get_results(client):
    rounds, nthreads = 30, 4
    results: list[int] = []
    errors: list[BaseException] = []

    for r in range(rounds):
        # a fresh function per round: its blob is new to the client and the scheduler
        namespace: dict[str, object] = {}
        exec(f"def f_{r}(x):\n    return x + {r}", namespace)
        func = namespace[f"f_{r}"]
        barrier = threading.Barrier(nthreads)

        def go(i: int, func=func, barrier=barrier) -> None:
            try:
                barrier.wait(10)
                results.append(client.submit(func, i, pure=False).result(timeout=30))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=go, args=(i,)) for i in range(nthreads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert errors == []
    assert len(results) == rounds * nthreads
