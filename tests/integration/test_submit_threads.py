"""Submitting from several threads at once: a function is sent with the first message that
needs it, and that message reaches the scheduler before any other message relying on it."""

from __future__ import annotations

import threading

import pytest

import shoal.client._submit as submit_module  # where the UpdateGraph carrying rows is built

pytestmark = pytest.mark.integration


def test_second_thread_reusing_a_new_function_never_overtakes_its_blob(client, monkeypatch):
    namespace: dict[str, object] = {}
    exec("def add_seven(x):\n    return x + 7", namespace)  # a function new to all
    func = namespace["add_seven"]
    real = submit_module.UpdateGraph
    second_done = threading.Event()
    results: dict[str, object] = {}

    def second() -> None:
        try:
            results["second"] = client.submit(func, 2, pure=False).result(timeout=30)
        except BaseException as exc:
            results["second"] = exc
        finally:
            second_done.set()

    def slow_update_graph(*args):
        # The first thread, about to queue the message carrying the blob: let another
        # thread submit with the same function now (it may have to wait for us: 1 s).
        monkeypatch.setattr(submit_module, "UpdateGraph", real)
        threading.Thread(target=second).start()
        second_done.wait(1)
        return real(*args)

    monkeypatch.setattr(submit_module, "UpdateGraph", slow_update_graph)
    assert client.submit(func, 1, pure=False).result(timeout=30) == 8
    assert second_done.wait(30)
    assert results["second"] == 9
