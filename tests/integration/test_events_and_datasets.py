"""Issue 10: structured events (``log_event`` / ``get_events`` / ``subscribe_topic``),
``shoal.print`` / ``shoal.warn`` from tasks, and published datasets, on real clusters."""

from __future__ import annotations

import os
import threading
import uuid
import warnings

import dask
import pytest

import shoal
from shoal import Client, get_worker

from ._helpers import scheduler_tasks, wait_for

pytestmark = pytest.mark.integration


def inc(x):
    return x + 1


def topic() -> str:
    return f"topic-{uuid.uuid4().hex[:8]}"


# --- events ----------------------------------------------------------------------------------


def test_log_event_then_get_events(client: Client) -> None:
    name = topic()
    client.log_event(name, {"step": 1})
    client.log_event([name, name + "-b"], "two")
    events = client.get_events(name)
    assert [msg for _, msg in events] == [{"step": 1}, "two"]
    assert all(isinstance(t, float) for t, _ in events)
    assert [m for _, m in client.get_events()[name + "-b"]] == ["two"]
    assert client.get_events(topic()) == ()


def test_membership_events_on_all_and_their_own_topics(client: Client) -> None:
    # dask's shapes: each worker's add-worker on "all" (with its address) and on its topic
    workers = set(client.scheduler_info()["workers"])
    joined = {m["worker"] for _, m in client.get_events("all") if m["action"] == "add-worker"}
    assert workers <= joined
    for address in workers:
        assert {"action": "add-worker"} in [m for _, m in client.get_events(address)]
    with Client(client.scheduler_address, set_as_default=False):
        mine = [m for _, m in client.get_events("all") if m.get("client") is not None]
        assert mine[-1]["action"] == "add-client"
        name = mine[-1]["client"]
    wait_for(lambda: {"action": "remove-client", "client": name}
             in [m for _, m in client.get_events(name)])


def test_client_actions_are_said_on_the_client_topic_as_dask_s(client: Client) -> None:
    with Client(client.scheduler_address, set_as_default=False) as c:
        fut = c.submit(inc, 1)
        assert fut.result() == 2
        c.scatter([1, 2])
        c.cancel([fut])
        wait_for(lambda: [m["action"] for _, m in c.get_events(c.id)] == [
            "add-client", "update-graph", "scatter", "cancel"])
        stamps = [t for t, _ in c.get_events(c.id)]
        assert all(isinstance(t, float) for t in stamps) and stamps == sorted(stamps)
        graph = [m for _, m in c.get_events("scheduler") if m["action"] == "update-graph"]
        assert graph and graph[-1]["status"] == "OK"
        assert graph[-1]["metrics"]["tasks"] == 1
        assert {"action": "scatter", "client": c.id, "count": 2} in [
            m for _, m in c.get_events("all")]
    wait_for(lambda: {"action": "remove-client", "client": c.id}
             in [m for _, m in client.get_events(c.id)])


def test_subscribe_topic_calls_the_handler_for_new_events(client: Client) -> None:
    name = topic()
    got: list[object] = []
    client.subscribe_topic(name, got.append)
    try:
        client.log_event(name, 1)
        client.submit(log_from_task, name, 2, pure=False).result(timeout=30)
        wait_for(lambda: len(got) == 2, timeout=30)
        assert sorted(msg for _, msg in got) == [1, 2]  # type: ignore[misc]
    finally:
        client.unsubscribe_topic(name)
    with pytest.raises(ValueError, match="No event handler"):
        client.unsubscribe_topic(name)


def log_from_task(name, value):
    get_worker().log_event(name, value)


def test_handler_of_another_client_sees_events(client: Client) -> None:
    name = topic()
    seen = threading.Event()
    with Client(client.cluster, set_as_default=False) as other:
        other.subscribe_topic(name, lambda event: seen.set())
        # Subscribing is in order with logging on `other`'s connection; make sure it
        # reached the scheduler before logging from another client.
        other.get_events(name)
        client.log_event(name, "hello")
        assert seen.wait(30)


def test_coroutine_handler_is_awaited(client: Client) -> None:
    name = topic()
    got: list[object] = []

    async def handler(event):
        got.append(event[1])

    client.subscribe_topic(name, handler)
    try:
        client.log_event(name, "async")
        wait_for(lambda: got == ["async"], timeout=30)
    finally:
        client.unsubscribe_topic(name)


def test_event_log_length_follows_dask_config(make_client) -> None:
    with dask.config.set({"distributed.admin.low-level-log-length": 2}):
        c = make_client(n_workers=1)
    name = topic()
    for i in range(5):
        c.log_event(name, i)
    assert [m for _, m in c.get_events(name)] == [3, 4]


def test_log_event_rejects_what_msgpack_cannot_carry(client: Client) -> None:
    with pytest.raises(TypeError, match="msgpack"):
        client.log_event(topic(), object())
    with pytest.raises(TypeError, match="topic"):
        client.log_event(3, "x")  # type: ignore[arg-type]


def say(x):
    shoal.print("hello from", x, "in a task")
    return x


def say_err(x):
    import sys

    shoal.print("oops", x, file=sys.stderr)


def caution(x):
    shoal.warn(f"careful with {x}")


def test_print_in_a_task_shows_in_the_client(client: Client, capsys) -> None:
    client.submit(say, 7, pure=False).result(timeout=30)
    client.submit(say_err, 8, pure=False).result(timeout=30)

    def printed() -> bool:
        out, err = capsys.readouterr()
        printed.out += out  # type: ignore[attr-defined]
        printed.err += err  # type: ignore[attr-defined]
        return "hello from 7 in a task" in printed.out and "oops 8" in printed.err  # type: ignore[attr-defined]

    printed.out = printed.err = ""  # type: ignore[attr-defined]
    wait_for(printed, timeout=30)
    assert [m["args"] for _, m in client.get_events("print")][-2:] == [
        ("hello from", "7", "in a task"), ("oops", "8"),
    ]


def test_warn_in_a_task_warns_in_the_client(client: Client) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client.submit(caution, "that", pure=False).result(timeout=30)
        wait_for(lambda: any("careful with that" in str(w.message) for w in caught), timeout=30)
    (w,) = [w for w in caught if "careful with that" in str(w.message)]
    assert issubclass(w.category, UserWarning)


def test_print_and_warn_outside_tasks_are_the_builtins(capsys) -> None:
    shoal.print("plain", 1)
    assert capsys.readouterr().out == "plain 1\n"
    with pytest.warns(UserWarning, match="local"):
        shoal.warn("local")
    with open(os.devnull, "w") as devnull:
        shoal.print("to a file", file=devnull)  # outside tasks, any file, as in dask


def print_to_file(path):
    with open(path, "w") as f:
        shoal.print("x", file=f)


def test_print_in_a_task_to_another_file_is_a_type_error(client: Client, tmp_path) -> None:
    fut = client.submit(print_to_file, str(tmp_path / "out.txt"), pure=False)
    with pytest.raises(TypeError, match=r"stdout or sys\.stderr"):
        fut.result(timeout=30)


# --- datasets ---------------------------------------------------------------------------------


def test_publish_list_get_unpublish(client: Client) -> None:
    fut = client.submit(inc, 41, key="ds-model")
    client.publish_dataset(model=fut)
    try:
        assert "model" in client.list_datasets()
        with Client(client.cluster, set_as_default=False) as other:
            got = other.get_dataset("model")
            assert got.key == "ds-model"
            assert got.result(timeout=120) == 42
            assert got.client is other
    finally:
        client.unpublish_dataset("model")
    assert "model" not in client.list_datasets()


def test_published_future_outlives_its_publisher(client: Client) -> None:
    fut = client.submit(inc, 1, key="ds-kept", pure=False)
    fut.result(timeout=30)
    client.publish_dataset(fut, name="kept")
    try:
        del fut
        # The publisher let go; the dataset still holds the key in memory.
        wait_for(lambda: client.cluster.scheduler.tasks["ds-kept"].who_wants == {"published-'kept'"},
                 timeout=30)
        assert scheduler_tasks(client)["ds-kept"].state == "memory"
        assert client.get_dataset("kept").result(timeout=30) == 2
    finally:
        client.unpublish_dataset("kept")
    wait_for(lambda: "ds-kept" not in scheduler_tasks(client), timeout=30)


def test_datasets_mapping(client: Client) -> None:
    fut = client.submit(inc, 9, key="ds-map")
    client.datasets["mapped"] = fut
    try:
        assert "mapped" in client.datasets
        assert client.datasets["mapped"].result(timeout=30) == 10
        assert "mapped" in list(client.datasets)
        assert len(client.datasets) >= 1
    finally:
        del client.datasets["mapped"]
    assert "mapped" not in client.datasets


def test_dataset_of_a_structure_with_futures_and_plain_values(client: Client) -> None:
    futs = client.map(inc, range(3), key=["ds-s0", "ds-s1", "ds-s2"])
    client.publish_dataset({"bundle": {"parts": futs, "note": "three"}})
    try:
        got = client.get_dataset("bundle")
        assert got["note"] == "three"
        assert client.gather(got["parts"]) == [1, 2, 3]
    finally:
        client.unpublish_dataset(["bundle"])


def test_dataset_errors_match_dask(client: Client) -> None:
    with pytest.raises(KeyError, match="not-there"):
        client.get_dataset("not-there")
    assert client.get_dataset("not-there", default=None) is None
    client.publish_dataset(dup=1)
    try:
        with pytest.raises(KeyError, match="already exists"):
            client.publish_dataset(dup=2)
        client.publish_dataset(dup=3, override=True)
        assert client.get_dataset("dup") == 3
    finally:
        client.unpublish_dataset("dup")
    with pytest.raises(ValueError, match="name"):
        client.publish_dataset(1, 2)
    with pytest.raises(ValueError, match="name"):
        client.publish_dataset(name="x")
    client.unpublish_dataset("never-published")  # ignored, as in dask


def test_list_datasets_is_a_tuple_as_in_dask(client: Client) -> None:
    # dask answers a tuple: `client.list_datasets() == ("a",)` in a program must hold.
    client.publish_dataset(tupled=1)
    try:
        names = client.list_datasets()
        assert isinstance(names, tuple) and "tupled" in names
    finally:
        client.unpublish_dataset("tupled")
