"""What a lock inside a task becomes when the task is pickled for the cluster
(shoal/protocol/_process_locks.py): dask's SerializableLock (one per process) is sent as a
cluster-wide shoal Lock of its token; a thread lock is refused with ProcessLockError, which
dask's compute path reads as "run this task here"."""

from __future__ import annotations

import pickle
import threading

import pytest
from dask.utils import SerializableLock

from shoal.client._locks import Lock
from shoal.protocol._process_locks import LOCK_PREFIX, ProcessLockError, process_lock_in
from shoal.protocol._serialize import FunctionCache, dumps_task

from .test_serialize import double, ship


def test_a_serializable_lock_in_a_task_arrives_as_the_cluster_lock_of_its_token() -> None:
    lock = SerializableLock("store-token")
    func, got, again = ship((double, lock, {"lock": lock}))
    assert func is double
    assert isinstance(got, Lock) and got.name == f"{LOCK_PREFIX}store-token"
    assert isinstance(again["lock"], Lock) and again["lock"].name == got.name


def test_a_serializable_lock_pickled_outside_a_task_stays_one_per_process() -> None:
    lock = SerializableLock("plain")
    back = pickle.loads(pickle.dumps(lock))
    assert type(back) is SerializableLock and back.lock is lock.lock


@pytest.mark.parametrize(("make", "name"), [(threading.Lock, "threading.Lock"),
                                            (threading.RLock, "threading.RLock")])
def test_a_task_holding_a_thread_lock_is_refused_with_process_lock_error(make, name) -> None:
    class Target:  # as xarray's writers hold theirs: inside another object
        def __init__(self) -> None:
            self.lock = make()

    with pytest.raises(ProcessLockError, match=f"holds a {name} of this process") as info:
        dumps_task((double, Target()), FunctionCache())
    assert isinstance(info.value, TypeError)  # what an unpicklable argument raised before
    assert pickle.loads(pickle.dumps(info.value)).args == info.value.args


def test_other_unpicklable_arguments_are_not_taken_for_locks() -> None:
    gen = (i for i in range(3))
    assert process_lock_in(gen) is None
    with pytest.raises(TypeError) as info:
        dumps_task((double, gen), FunctionCache())
    assert not isinstance(info.value, ProcessLockError)
