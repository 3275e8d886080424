"""dask.distributed's smaller Client methods: ``as_current``, ``asynchronous``,
``futures_of``, ``normalize_collection``, ``get_executor``, ``start``,
``write_scheduler_file``, ``forward_logging`` / ``unforward_logging`` and
``register_worker_callbacks``."""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import os
import stat

import dask
import pytest

import shoal
from shoal import Client, Future, futures_of, wait

from ._helpers import gated, wait_for

pytestmark = pytest.mark.integration


def inc(x: int) -> int:
    return x + 1


def fail(message: str) -> None:
    raise ValueError(message)


# --- which client is current -----------------------------------------------------------------


def test_as_current_makes_the_client_the_default_inside_the_block(client):
    with Client(client.scheduler_address, set_as_default=False) as newer:
        # dask's default client is the newest made with set_as_default=True
        assert shoal.get_client() is client
        with client.as_current() as same:
            assert same is client
            assert shoal.get_client() is client
            assert shoal.default_client() is client
            assert Client.current() is client
            with newer.as_current():
                assert shoal.get_client() is newer
            assert shoal.get_client() is client
        assert shoal.get_client() is client


def test_asynchronous_is_a_property_of_the_client(client):
    assert isinstance(Client.__dict__["asynchronous"], property)
    assert client.asynchronous is False


def test_start_checks_the_client_is_usable(client):
    assert client.start() is None
    other = Client(client.scheduler_address, set_as_default=False)
    other.close()
    with pytest.raises(RuntimeError, match="closed"):
        other.start()


# --- futures in structures and collections ---------------------------------------------------


def test_futures_of_keeps_this_clients_futures_only(client):
    mine = client.submit(inc, 1, pure=False)
    with Client(client.scheduler_address, set_as_default=False) as other:
        theirs = other.submit(inc, 2, pure=False)
        found = client.futures_of({"a": [mine, theirs], "b": (mine,)})
        assert found == [mine]
        assert other.futures_of([mine, theirs]) == [theirs]


def test_normalize_collection_reuses_held_results(client):
    x = dask.delayed(inc)(1, dask_key_name="normalize-x")
    y = dask.delayed(inc)(x, dask_key_name="normalize-y")
    held = client.compute(x)
    assert held.result(timeout=30) == 2
    normalized = client.normalize_collection(y)
    graph = dict(normalized.__dask_graph__())
    assert isinstance(graph["normalize-x"], Future)
    assert client.compute(normalized).result(timeout=30) == 3
    plain = dask.delayed(inc)(10)
    assert client.normalize_collection(plain) is plain  # nothing held: unchanged
    with pytest.raises(TypeError, match="dask collection"):
        client.normalize_collection([1, 2])


def test_normalize_collection_of_an_array(client):
    da = pytest.importorskip("dask.array")
    a = da.arange(10, chunks=5)
    persisted = client.persist(a)
    b = (persisted + 1).sum()
    assert client.compute(client.normalize_collection(b)).result(timeout=30) == 55


# --- a concurrent.futures executor -----------------------------------------------------------


def test_get_executor_runs_calls_on_the_cluster(client):
    with client.get_executor(pure=False) as ex:
        assert isinstance(ex, cf.Executor)
        fut = ex.submit(inc, 1)
        assert isinstance(fut, cf.Future)
        assert fut.result(timeout=30) == 2
        assert list(ex.map(inc, range(5), timeout=30)) == [1, 2, 3, 4, 5]
        bad = ex.submit(fail, "no")
        with pytest.raises(ValueError, match="no"):
            bad.result(timeout=30)
        done, _ = cf.wait([ex.submit(inc, i) for i in range(3)], timeout=30)
        assert sorted(f.result() for f in done) == [1, 2, 3]
        big = ex.submit(lambda: b"x" * 200_000)  # fetched from its worker, not inline
        assert len(big.result(timeout=30)) == 200_000
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(inc, 1)
    with pytest.raises(TypeError, match="unsupported arguments"):
        client.get_executor(key="x")


def test_cancelling_an_executor_future_cancels_its_task(client, gate):
    ex = client.get_executor(pure=False)
    fut = ex.submit(gated, gate.path, 1)
    assert fut.cancel()
    assert fut.cancelled()
    wait_for(lambda: not any(client.processing().values()))
    ex.shutdown(wait=False)


# --- scheduler file --------------------------------------------------------------------------


def test_write_scheduler_file_lets_another_client_connect(client, tmp_path):
    path = str(tmp_path / "scheduler.json")
    with Client(client.scheduler_address, set_as_default=False) as writer:
        writer.write_scheduler_file(path)
        with open(path) as f:
            info = json.load(f)
        assert info["address"] == client.scheduler_address
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        with Client(scheduler_file=path, set_as_default=False) as reader:
            assert reader.submit(inc, 1, pure=False).result(timeout=120) == 2
        writer.write_scheduler_file(path)  # the same path again is fine
        with pytest.raises(ValueError, match="scheduler file is already"):
            writer.write_scheduler_file(str(tmp_path / "other.json"))
    with pytest.raises(TypeError, match="path"):
        client.write_scheduler_file(42)


# --- logging forwarded from workers ----------------------------------------------------------


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _log_in_task(name: str, message: str) -> None:
    log = logging.getLogger(name)
    log.setLevel(logging.INFO)
    log.info("%s from a task", message)


def test_forward_logging_hands_worker_records_to_the_clients_logger(client):
    name = "shoal-test-forwarded"
    collect = _Collect()
    logging.getLogger(name).addHandler(collect)
    try:
        client.forward_logging(name, level=logging.INFO)
        client.submit(_log_in_task, name, "hello", pure=False).result(timeout=30)
        wait_for(lambda: any(r.getMessage() == "hello from a task" for r in collect.records))
        record = next(r for r in collect.records if r.getMessage() == "hello from a task")
        assert record.levelname == "INFO" and record.name == name

        def handlers_on_worker() -> int:
            return len(logging.getLogger(name).handlers)

        assert all(n == 1 for n in client.run(handlers_on_worker).values())
        client.unforward_logging(name)
        assert all(n == 0 for n in client.run(handlers_on_worker).values())
        with pytest.raises(ValueError, match="not forwarded"):
            client.unforward_logging(name)
    finally:
        logging.getLogger(name).removeHandler(collect)
    with pytest.raises(TypeError, match="level"):
        client.forward_logging(name, level=1.5)
    with pytest.raises(ValueError, match="unknown logging level"):
        client.forward_logging(name, level="LOUD")


# --- worker callbacks ------------------------------------------------------------------------


def test_register_worker_callbacks_runs_on_every_worker_now_and_later(make_client):
    c = make_client(n_workers=1, processes=False)

    def mark(dask_worker) -> None:
        dask_worker.callback_marker = "set"

    def marker(dask_worker) -> str | None:
        return getattr(dask_worker, "callback_marker", None)

    answers = c.register_worker_callbacks(setup=mark)
    assert [a["status"] for a in answers.values()] == ["OK"]
    assert set(c.run(marker).values()) == {"set"}
    c.cluster.scale(2)
    c.wait_for_workers(2, timeout=30)
    wait_for(lambda: set(c.run(marker).values()) == {"set"} and len(c.run(marker)) == 2)
    with pytest.raises(TypeError, match="function"):
        c.register_worker_callbacks(setup="not callable")


def test_as_completed_next_is_next(client):
    ac = shoal.as_completed([client.submit(inc, 1, pure=False)])
    assert ac.next().result(timeout=30) == 2


def test_who_has_replicate_rebalance_cancel_take_a_persisted_collection(client):
    # dask reads a collection's futures (futures_of) in who_has, replicate, rebalance,
    # cancel and retry: `client.who_has(persisted)` must not answer {}.
    import dask.array as da

    x = client.persist(da.arange(40, chunks=10) + 1)
    futures = futures_of(x)
    assert len(futures) == 4
    wait(x, timeout=30)
    assert set(client.who_has(x)) == {f.key for f in futures}
    client.replicate(x)
    assert all(len(holders) == 2 for holders in client.who_has(x).values())
    client.rebalance(x)
    client.cancel(x)
    assert {f.status for f in futures} == {"cancelled"}
