"""Issue 4: the seed's "Debugging" section, retries, and exceptions that resist transport."""

from __future__ import annotations

import os
import threading
import traceback

import dask
import dask.array as da
import numpy as np
import pytest
from dask import delayed

from shoal import as_completed, wait

pytestmark = pytest.mark.integration


@delayed
def ratio(a, b):
    pid = os.getpid()  # noqa: F841 (read through the frame's locals by the tests)
    return a // b


def divide(a, b):
    pid = os.getpid()  # noqa: F841 (read through the frame's locals)
    return a // b


def inc(x):
    return x + 1


def fail(message):
    raise ValueError(message)


def flaky(counter_path, value):
    """Fail on the first call, succeed afterwards; the count lives in a file all processes see."""
    calls = 0
    if os.path.exists(counter_path):
        with open(counter_path) as f:
            calls = int(f.read())
    with open(counter_path, "w") as f:
        f.write(str(calls + 1))
    if calls == 0:
        raise RuntimeError(f"flaky failure, call {calls + 1}")
    return value


def fail_on_chunk_five(block):
    if block[0] == 5:
        raise ZeroDivisionError("chunk starting at 5")
    return block


class RefusesToPickle(Exception):
    def __reduce__(self):
        raise TypeError("RefusesToPickle will not be pickled")


def raise_refuses_to_pickle():
    raise RefusesToPickle("reduce-raises-message")


def raise_with_unpicklable_args():
    raise ValueError("carries-a-lock", threading.Lock())


def _refuse_to_load(message):
    raise RuntimeError("this exception cannot be rebuilt here: " + message)


class OnlyLoadsOnWorkers(Exception):
    def __reduce__(self):
        return (_refuse_to_load, (str(self),))


def raise_only_loads_on_workers():
    raise OnlyLoadsOnWorkers("unloadable-exception-text")


def raise_huge():
    raise ValueError("huge-message " + "x" * 5_000_000)


def return_a_lock():
    return threading.Lock()


def _seed_graph():
    ratios = [ratio(a, b) for a, b in zip([5, 25, 30], [5, 0, 6], strict=True)]
    return ratios, delayed(sum)(ratios)


def _frames(tb):
    while tb is not None:
        yield tb.tb_frame
        tb = tb.tb_next


def _ran_here(tb, function_name):
    """True if ``tb`` has a frame of ``function_name`` that executed in this very process."""
    return any(
        frame.f_code.co_name == function_name and frame.f_locals.get("pid") == os.getpid()
        for frame in _frames(tb)
    )


# --- the seed, as written -----------------------------------------------------------------------


def test_seed_good_input_gathers(client):
    out = delayed(sum)([ratio(a, b) for a, b in zip([5, 25, 30], [5, 5, 6], strict=True)])
    f = client.compute(out)
    assert client.gather(f) == 11


def test_gather_raises_the_original_exception_with_the_remote_frame(client):
    _, out = _seed_graph()
    f = client.compute(out)
    with pytest.raises(ZeroDivisionError) as info:
        client.gather(f)
    names = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert "ratio" in names


def test_remote_traceback_shows_the_failing_line(client):
    _, out = _seed_graph()
    f = client.compute(out)
    with pytest.raises(ZeroDivisionError) as info:
        client.gather(f)
    lines = [
        frame.line
        for frame in traceback.extract_tb(info.value.__traceback__)
        if frame.name == "ratio"
    ]
    assert any("a // b" in (line or "") for line in lines), lines


def test_dependents_are_erred_and_the_failing_task_holds_the_exception(client):
    ratios, out = _seed_graph()
    f = client.compute(out)
    wait(f, timeout=10)
    tasks = client.cluster.scheduler.tasks  # as in the seed
    failing = ratios[1].key
    assert tasks[failing].state == "erred"
    assert tasks[failing].exception is not None
    assert tasks[f.key].state == "erred"
    # the seed's query
    erred = [(k, v.state) for k, v in tasks.items() if v.exception is not None]
    assert (failing, "erred") in erred
    assert not {r.key for r in (ratios[0], ratios[2])} & {k for k, _ in erred}


def test_sync_scheduler_runs_the_failure_locally(client):
    _, out = _seed_graph()
    with dask.config.set(scheduler="sync"), pytest.raises(ZeroDivisionError) as info:
        out.compute()
    assert _ran_here(info.tb, "ratio")


def test_recreate_error_locally_runs_ratio_in_this_process(client):
    _, out = _seed_graph()
    f = client.compute(out)
    wait(f, timeout=10)
    with pytest.raises(ZeroDivisionError) as info:
        client.recreate_error_locally(f)
    assert _ran_here(info.tb, "ratio")
    frame = next(fr for fr in _frames(info.tb) if fr.f_code.co_name == "ratio")
    assert (frame.f_locals["a"], frame.f_locals["b"]) == (25, 0)


def test_recreate_error_locally_for_a_submitted_future(client):
    fut = client.submit(divide, 7, 0)
    wait(fut, timeout=10)
    with pytest.raises(ZeroDivisionError) as info:
        client.recreate_error_locally(fut)
    assert _ran_here(info.tb, "divide")


def test_recreate_error_locally_for_a_persisted_array_with_an_erred_chunk(client):
    x = client.persist(
        da.arange(10, chunks=5).map_blocks(fail_on_chunk_five, meta=np.array((), dtype=int))
    )
    wait(x, timeout=10)
    with pytest.raises(ZeroDivisionError, match="chunk starting at 5"):
        client.recreate_error_locally(x)


# --- Future.exception / traceback, retries ---------------------------------------------------------


def test_future_exception_and_traceback_for_the_seed(client):
    _, out = _seed_graph()
    f = client.compute(out)
    wait(f, timeout=10)
    assert f.status == "error"
    assert isinstance(f.exception(timeout=10), ZeroDivisionError)
    assert "ratio" in [frame.name for frame in traceback.extract_tb(f.traceback(timeout=10))]


def test_submit_with_retries_survives_a_flaky_task(client, tmp_path):
    counter = tmp_path / "calls"
    fut = client.submit(flaky, str(counter), "ok", retries=1, pure=False)
    assert fut.result(timeout=10) == "ok"
    assert counter.read_text() == "2"


def always_fails(counter_path):
    calls = 0
    if os.path.exists(counter_path):
        with open(counter_path) as f:
            calls = int(f.read())
    with open(counter_path, "w") as f:
        f.write(str(calls + 1))
    raise RuntimeError(f"attempt {calls + 1} failed")


def test_retries_n_means_n_plus_one_attempts_then_the_last_error(client, tmp_path):
    counter = tmp_path / "calls"
    fut = client.submit(always_fails, str(counter), retries=2, pure=False)
    with pytest.raises(RuntimeError, match="attempt 3 failed"):
        fut.result(timeout=10)
    assert counter.read_text() == "3"


def test_a_dependent_of_a_failed_future_raises_the_original_error(client):
    bad = client.submit(fail, "root-cause", pure=False)
    child = client.submit(inc, bad)
    grandchild = client.submit(inc, child)
    with pytest.raises(ValueError, match="root-cause"):
        grandchild.result(timeout=10)
    assert child.status == "error"


def test_as_completed_without_results_yields_failed_futures_too(client):
    good = client.submit(inc, 1, pure=False)
    bad = client.submit(fail, "yielded-not-raised", pure=False)
    assert set(as_completed([good, bad])) == {good, bad}
    assert bad.status == "error"


def test_future_retry_reruns_a_failed_task(client, tmp_path):
    counter = tmp_path / "calls"
    fut = client.submit(flaky, str(counter), "ok", pure=False)
    with pytest.raises(RuntimeError, match="flaky failure"):
        fut.result(timeout=10)
    fut.retry()
    assert fut.result(timeout=10) == "ok"
    assert fut.status == "finished"


def test_as_completed_raise_errors_false_yields_the_error(client):
    good = client.submit(inc, 1, pure=False)
    bad = client.submit(fail, "as-completed-failure", pure=False)
    results = dict(as_completed([good, bad], with_results=True, raise_errors=False))
    assert results[good] == 2
    # dask yields sys.exc_info() for a failed future: (type, value, traceback)
    exc_type, exc_value, _ = results[bad]
    assert exc_type is ValueError
    assert "as-completed-failure" in str(exc_value)


def test_as_completed_with_results_raises_by_default(client):
    bad = client.submit(fail, "default-raises", pure=False)
    with pytest.raises(ValueError, match="default-raises"):
        list(as_completed([bad], with_results=True))


# --- exceptions and results that resist transport -----------------------------------------------


@pytest.mark.parametrize(
    ("function", "text"),
    [
        (raise_refuses_to_pickle, "reduce-raises-message"),
        (raise_with_unpicklable_args, "carries-a-lock"),
        (raise_only_loads_on_workers, "unloadable-exception-text"),
    ],
    ids=["reduce-raises", "unpicklable-args", "unloadable-in-client"],
)
def test_an_exception_that_cannot_travel_still_reports_its_text(client, function, text):
    fut = client.submit(function, pure=False)
    with pytest.raises(Exception, match=text):
        fut.result(timeout=10)
    assert client.submit(inc, 1, pure=False).result(timeout=10) == 2


def test_a_huge_exception_message_is_truncated(client):
    fut = client.submit(raise_huge, pure=False)
    with pytest.raises(ValueError) as info:
        fut.result(timeout=20)
    assert "huge-message" in str(info.value)
    assert len(str(info.value)) < 100_000
    assert client.submit(inc, 1, pure=False).result(timeout=10) == 2


def test_a_truncated_exception_message_says_so(client):
    fut = client.submit(raise_huge, pure=False)
    with pytest.raises(ValueError) as info:
        fut.result(timeout=20)
    assert "truncated" in str(info.value).lower()


def test_an_unpicklable_result_gives_a_clear_error(client):
    fut = client.submit(return_a_lock, pure=False)
    with pytest.raises(TypeError, match=r"(?i)lock"):
        fut.result(timeout=10)
    assert client.submit(inc, 1, pure=False).result(timeout=10) == 2


# --- client.explain: shoal's one-call failure story ---------------------------------------------


def test_explain_tells_the_failure_story(client):
    ratios, out = _seed_graph()
    f = client.compute(out)
    wait(f, timeout=10)
    story = client.explain(f)
    text = str(story)
    assert ratios[1].key in text
    assert "ZeroDivisionError" in text
    assert any(address in text for address in client.scheduler_info()["workers"])
    assert "25" in text  # the failing task's input a=25, summarised
    assert "recreate_error_locally" in text
    html = story._repr_html_()
    assert ratios[1].key in html
    assert "ZeroDivisionError" in html


def test_explain_falls_back_to_text_for_an_exception_the_client_cannot_load(client):
    fut = client.submit(raise_only_loads_on_workers, pure=False)
    wait(fut, timeout=10)
    text = str(client.explain(fut))
    assert fut.key in text
    assert "unloadable-exception-text" in text


def test_an_unpicklable_result_only_used_on_its_worker_does_not_fail(client):
    worker = sorted(client.scheduler_info()["workers"])[0]
    lock = client.submit(return_a_lock, pure=False, workers=[worker])
    kind = client.submit(lambda held: type(held).__name__, lock, workers=[worker], pure=False)
    assert kind.result(timeout=10) == "lock"
    assert lock.status == "finished"
    with pytest.raises(TypeError, match="cannot be sent"):
        lock.result(timeout=10)


def test_explain_and_recreate_of_a_pending_future_end_after_their_timeout(client, gate):
    from ._helpers import gated

    f = client.submit(gated, gate.path, 1, pure=False)
    with pytest.raises(TimeoutError, match=r"still pending after 0\.5 s.*wait for the future"):
        client.explain(f, timeout=0.5)
    with pytest.raises(TimeoutError, match=r"still pending after 0\.5 s"):
        client.recreate_error_locally(f, timeout=0.5)
    gate.open()
    with pytest.raises(ValueError, match=r"no error to recreate|has not failed"):
        client.explain(f, timeout=30)
