"""What a user gives a hand-made ``Worker`` (its name, thread count, memory limit) goes to
the scheduler in its ``Register``: a value the wire format cannot carry is refused up front
with a TypeError naming it (it was dropped by the transport, and the worker waited for a
reply for ever), and a ``Register`` that still cannot be encoded ends ``start`` with one.
Names of the types dask carries (str, bytes, bool, int, float, tuples of them) are kept."""

from __future__ import annotations

import asyncio

import pytest

from shoal.worker._server import Worker

NOWHERE = "tcp://127.0.0.1:1"  # never reached: the checks come first


@pytest.mark.parametrize("name", [object(), 2**70, [1, 2], ("a", [1]), float("nan")])
def test_a_worker_name_dask_would_not_carry_is_refused_up_front(name: object) -> None:
    with pytest.raises(TypeError, match="name"):
        Worker(NOWHERE, name=name, resources="")  # type: ignore[arg-type]


def test_names_of_dasks_types_are_kept() -> None:
    assert Worker(NOWHERE, name="w-1", resources="").name == "w-1"
    assert Worker(NOWHERE, name=3, resources="").name == 3
    for name in (1.5, True, ("a", 1), b"raw"):
        kept = Worker(NOWHERE, name=name, resources="").name
        assert kept == name and type(kept) is type(name)
    assert Worker(NOWHERE, resources="").name is None


@pytest.mark.parametrize(("arg", "value"), [("nthreads", "2"), ("nthreads", 0.5),
                                            ("memory_limit", object()),
                                            ("memory_limit", 2**70)])
def test_thread_counts_and_memory_limits_that_cannot_go_are_refused_up_front(
    arg: str, value: object,
) -> None:
    with pytest.raises(TypeError, match=arg):
        Worker(NOWHERE, resources="", **{arg: value})  # type: ignore[arg-type]


def test_a_registration_that_cannot_be_encoded_ends_start_with_a_type_error() -> None:
    async def go() -> None:
        worker = Worker(NOWHERE, resources="", death_timeout=60)
        worker.name = 2**70  # (past the checks: a value msgpack cannot carry)
        try:
            with pytest.raises(TypeError, match="could not encode its registration"):
                await asyncio.wait_for(worker.start(), 10)
        finally:
            await worker.close()

    asyncio.run(go())
