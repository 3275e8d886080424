"""dask.distributed's Client methods for looking at (and noting things about) a running
cluster: ``processing``, ``nbytes``, ``call_stack``, ``get_versions``, ``set_metadata`` /
``get_metadata``, ``get_scheduler_logs`` / ``get_worker_logs`` and ``dump_cluster_state``,
each checked for what it answers and how it refuses bad input."""

from __future__ import annotations

import asyncio
import gzip
import logging

import msgpack
import pytest
import yaml

from shoal import Client

from ._helpers import gated, wait_for

pytestmark = pytest.mark.integration


def inc(x: int) -> int:
    return x + 1


# --- processing, nbytes, call_stack ---------------------------------------------------------


def test_processing_names_the_running_key_on_its_worker(client, gate):
    fut = client.submit(gated, gate.path, 1, pure=False)
    wait_for(lambda: any(fut.key in keys for keys in client.processing().values()))
    (worker,) = [w for w, keys in client.processing().items() if fut.key in keys]
    assert set(client.processing(workers=[worker])) == {worker}
    assert client.processing(workers=worker)[worker] == client.processing()[worker]
    gate.open()
    assert fut.result(timeout=30) == 1
    wait_for(lambda: not any(fut.key in keys for keys in client.processing().values()))
    with pytest.raises(TypeError, match="workers="):
        client.processing(workers=[object()])  # (floats are names a worker may have)


def test_nbytes_per_key_and_summed_per_prefix(client):
    futs = client.map(inc, [1, 2, 3])
    client.gather(futs)
    per_key = client.nbytes(keys=futs, summary=False)
    assert set(per_key) == {f.key for f in futs}
    assert all(isinstance(n, int) and n > 0 for n in per_key.values())
    assert client.nbytes(keys=futs)["inc"] == sum(per_key.values())
    assert client.nbytes(keys=[futs[0].key], summary=False) == {futs[0].key: per_key[futs[0].key]}
    assert futs[0].key in client.nbytes(summary=False)
    with pytest.raises(TypeError, match="summary"):
        client.nbytes(summary="yes")
    with pytest.raises(TypeError, match="keys must be"):
        client.nbytes(keys=[["unhashable"]])


def test_call_stack_shows_the_running_tasks_frames(client, gate):
    fut = client.submit(gated, gate.path, 2, pure=False)
    wait_for(lambda: client.call_stack(futures=[fut]), timeout=20)
    stacks = client.call_stack(futures=[fut])
    ((worker, by_key),) = stacks.items()
    assert list(by_key) == [fut.key]
    text = "".join(by_key[fut.key])
    assert "in gated" in text and "time.sleep" in text
    assert fut.key in client.call_stack()[worker]
    assert client.call_stack(keys=["no-such-key"]) == {}
    gate.open()
    fut.result(timeout=30)
    wait_for(lambda: fut.key not in client.call_stack().get(worker, {}))


# --- versions --------------------------------------------------------------------------------


def test_get_versions_of_scheduler_workers_and_client(client):
    versions = client.get_versions(packages=["numpy"])
    assert set(versions) == {"scheduler", "workers", "client"}
    assert set(versions["workers"]) == set(client.scheduler_info()["workers"])
    import numpy

    for side in [versions["scheduler"], versions["client"], *versions["workers"].values()]:
        assert side["packages"]["numpy"] == numpy.__version__
        assert side["packages"]["shoal"] is not None or side["packages"]["dask"] is not None
        assert side["host"]["python"]
    assert client.get_versions(check=True)["client"] == client.get_versions()["client"]
    with pytest.raises(TypeError, match="list of package names"):
        client.get_versions(packages="numpy")


# --- metadata --------------------------------------------------------------------------------


def test_metadata_is_a_nested_dict_on_the_scheduler(client):
    client.set_metadata("meta-x", 123)
    assert client.get_metadata("meta-x") == 123
    client.set_metadata(["meta-x"], {"y": 1})
    client.set_metadata(["meta-x", "w", "z"], 456)
    assert client.get_metadata("meta-x") == {"y": 1, "w": {"z": 456}}
    assert client.get_metadata(["meta-x", "w"]) == {"z": 456}
    client.set_metadata(("tuple", "key"), [1, 2])
    assert list(client.get_metadata(("tuple", "key"))) == [1, 2]
    with Client(client.scheduler_address, set_as_default=False) as other:
        assert other.get_metadata(["meta-x", "w", "z"]) == 456  # shared by every client
    with pytest.raises(KeyError):
        client.get_metadata(["meta-x", "nope"])
    assert client.get_metadata("meta-missing", None) is None
    assert client.get_metadata(["meta-x", "y", "deeper"], default=7) == 7
    with pytest.raises(TypeError, match="msgpack"):
        client.set_metadata("meta-bad", object())
    with pytest.raises(TypeError, match="hashable"):
        client.set_metadata([["a"]], 1)
    client.set_metadata(["meta-x", "y", "z"], 1)  # meta-x.y was 1: a dict now, as in dask
    assert client.get_metadata(["meta-x", "y"]) == {"z": 1}


# --- logs ------------------------------------------------------------------------------------


def test_scheduler_logs_newest_first(client):
    def log_twice() -> None:
        logging.getLogger("shoal.scheduler").warning("introspection-first")
        logging.getLogger("shoal.scheduler").warning("introspection-second")

    client.run_on_scheduler(log_twice)
    logs = client.get_scheduler_logs()
    lines = [line for _level, line in logs]
    first = next(i for i, line in enumerate(lines) if "introspection-first" in line)
    second = next(i for i, line in enumerate(lines) if "introspection-second" in line)
    assert second < first  # newest first, as dask
    assert logs[second][0] == "WARNING" and "shoal.scheduler" in lines[second]
    assert len(client.get_scheduler_logs(n=1)) == 1
    with pytest.raises(ValueError, match="positive"):
        client.get_scheduler_logs(n=0)


def test_scheduler_and_worker_logs_hold_info_lines_as_dask_do(client):
    def log_info() -> None:
        logging.getLogger("shoal.scheduler").info("introspection-info-scheduler")

    def log_info_on_worker() -> None:
        logging.getLogger("shoal.worker").info("introspection-info-worker")

    client.run_on_scheduler(log_info)
    client.run(log_info_on_worker)
    logs = client.get_scheduler_logs()
    assert ("INFO", next(line for lv, line in logs if "introspection-info-scheduler" in line)) \
        in logs
    # As dask's: the scheduler said each worker's arrival at INFO.
    assert any(lv == "INFO" and "register" in line.lower() for lv, line in logs), logs[:20]
    for rows in client.get_worker_logs().values():
        assert any(lv == "INFO" and "introspection-info-worker" in line for lv, line in rows)


def test_worker_logs_from_each_worker(client):
    def log_on_worker(dask_worker) -> str:
        logging.getLogger("shoal.worker").warning("introspection-on %s", dask_worker.address)
        return dask_worker.address

    addresses = list(client.run(log_on_worker))
    logs = client.get_worker_logs()
    assert set(logs) == set(addresses)
    for address in addresses:
        assert any(f"introspection-on {address}" in line for _lv, line in logs[address])
    one = client.get_worker_logs(n=1, workers=[addresses[0]])
    assert list(one) == [addresses[0]] and len(one[addresses[0]]) == 1
    with pytest.raises(ValueError, match="positive"):
        client.get_worker_logs(n=-3)


def test_nanny_logs_of_the_clients_own_cluster(make_client):
    c = make_client(n_workers=1)
    logging.getLogger("shoal.nanny").warning("introspection-nanny-line")
    logs = c.get_worker_logs(nanny=True)
    (rows,) = logs.values()
    assert any("introspection-nanny-line" in line for _lv, line in rows)


# --- dump_cluster_state ----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["msgpack", "yaml"])
def test_dump_cluster_state_writes_scheduler_and_workers(client, tmp_path, fmt):
    fut = client.submit(inc, 41, pure=False)
    fut.result(timeout=30)
    client.dump_cluster_state(str(tmp_path / "dump"), format=fmt)
    if fmt == "msgpack":
        with gzip.open(tmp_path / "dump.msgpack.gz") as f:
            state = msgpack.unpackb(f.read(), strict_map_key=False)
    else:
        state = yaml.safe_load((tmp_path / "dump.yaml").read_text())
    task = state["scheduler"]["tasks"][str(fut.key)]
    assert task["state"] == "memory" and task["who_has"]
    assert set(state["workers"]) == set(client.scheduler_info()["workers"])
    holder = task["who_has"][0]
    assert str(fut.key) in state["workers"][holder]["data"]
    assert state["versions"]["client"]["packages"]


def test_dump_cluster_state_refuses_what_it_cannot_do(client, tmp_path):
    with pytest.raises(ValueError, match="format"):
        client.dump_cluster_state(str(tmp_path / "d"), format="json")
    with pytest.raises(ValueError, match="write_from_scheduler"):
        client.dump_cluster_state(str(tmp_path / "d"), write_from_scheduler=True)
    with pytest.raises(ValueError, match="storage options"):
        client.dump_cluster_state(str(tmp_path / "d"), anon=True)


# --- the asynchronous face -------------------------------------------------------------------


def test_introspection_methods_are_awaitable_on_an_asynchronous_client(client):
    async def main() -> None:
        async with Client(client.scheduler_address, asynchronous=True,
                          set_as_default=False) as c:
            assert c.asynchronous
            await c.set_metadata(["async-meta", "a"], 1)
            assert await c.get_metadata("async-meta") == {"a": 1}
            assert isinstance(await c.processing(), dict)
            assert isinstance(await c.get_scheduler_logs(n=5), tuple)
            assert set(await c.get_worker_logs(n=1)) == set(c.scheduler_info(
                asynchronous=False)["workers"])
            assert "client" in await c.get_versions()

    asyncio.run(main())


def test_connecting_to_a_scheduler_of_other_versions_warns(client, monkeypatch):
    from shoal._versions import required_versions
    from shoal.scheduler import _server_messages

    other = {**required_versions(), "dask": "1.0.0-elsewhere"}
    monkeypatch.setattr(_server_messages, "required_versions", lambda: other)
    with pytest.warns(UserWarning, match=r"Mismatched versions(.|\n)*dask \(client: .*, "
                                         r"scheduler: 1.0.0-elsewhere\)"):
        c = Client(client.scheduler_address, set_as_default=False)
    c.close()


def test_connecting_to_a_scheduler_of_the_same_versions_is_quiet(client, recwarn):
    with Client(client.scheduler_address, set_as_default=False):
        pass
    assert not [w for w in recwarn if "Mismatched versions" in str(w.message)]


def test_metadata_of_a_task_goes_when_the_task_is_forgotten_as_in_dask(client):
    fut = client.submit(inc, 1, key="meta-task-1")
    assert fut.result() == 2
    client.set_metadata(["meta-task-1", "note"], "mine")
    client.set_metadata("meta-plain", {"kept": True})
    assert client.get_metadata(["meta-task-1", "note"]) == "mine"
    del fut
    wait_for(lambda: client.get_metadata("meta-task-1", None) is None, timeout=30)
    assert client.get_metadata("meta-plain") == {"kept": True}


def test_client_scheduler_address_is_the_schedulers_as_in_dask(client):
    # Programs pass `client.scheduler.address` on (to another Client, a log line); dask's
    # `client.scheduler` is its connection to the scheduler, None once closed.
    assert client.scheduler.address == client.scheduler_address
    assert client.scheduler.address == client.scheduler_info()["address"]
    with pytest.raises(AttributeError, match="run_on_scheduler"):
        client.scheduler.identity  # noqa: B018 -- dask's RPC calls are not shoal's
    other = Client(client.cluster, set_as_default=False)
    other.close()
    assert other.scheduler is None
