"""Exceptions crossing processes: error dicts, rebuilding, fallbacks and truncation."""

from __future__ import annotations

import pickle
import sys
import threading
import traceback
import types
from concurrent.futures import CancelledError
from typing import Any

import pytest

from shoal.protocol._errors import (
    MAX_MESSAGE,
    MAX_TRACEBACK,
    KilledWorker,
    LostDataError,
    RemoteError,
    error_to_exception,
    error_traceback,
    exception_to_error,
    scheduler_error,
)
from shoal.protocol._serialize import Serialized


class CustomError(Exception):
    pass


def inner_function(value: Any) -> None:
    raise ValueError(f"bad value {value!r}")


def outer_function(value: Any) -> None:
    inner_function(value)


def captured(fn: Any, *args: Any, key: Any = "task-1") -> dict[str, Any]:
    try:
        fn(*args)
    except BaseException as exc:
        return exception_to_error(exc, exc.__traceback__, key, "tcp://w1", 12.5)
    raise AssertionError("fn did not raise")


def raise_(exc: BaseException) -> None:
    raise exc


def test_error_dict_describes_the_exception() -> None:
    error = captured(outer_function, 3, key=("x", 1))
    assert error["kind"] == "exception"
    assert error["type"] == "builtins.ValueError"
    assert error["message"] == "bad value 3"
    assert error["key"] == ("x", 1)
    assert error["worker"] == "tcp://w1" and error["time"] == 12.5
    assert "inner_function" in error["tb_text"]
    assert isinstance(error["exception"], Serialized)


def test_round_trip_keeps_type_message_and_traceback_frames() -> None:
    error = captured(outer_function, 3)
    # the dict crosses a process boundary as pickle
    error = pickle.loads(pickle.dumps(error))
    exc = error_to_exception(error)
    assert type(exc) is ValueError
    assert str(exc) == "bad value 3"
    names = [frame.name for frame in traceback.extract_tb(exc.__traceback__)]
    assert names[-2:] == ["outer_function", "inner_function"]
    assert error_traceback(error) is not None


def test_custom_exception_class_round_trips() -> None:
    exc = error_to_exception(captured(raise_, CustomError("mine")))
    assert type(exc) is CustomError and str(exc) == "mine"


class NeedsTwoArgs(Exception):
    """A common shape: ``__init__`` takes its own arguments and passes a message up, so
    pickle's ``cls(*args)`` cannot rebuild it."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code, self.detail = code, detail


def test_exception_with_its_own_init_arguments_keeps_its_type_and_attributes() -> None:
    # dask.distributed rebuilds such an exception without calling __init__ (``except
    # NeedsTwoArgs`` works there); shoal raised a RemoteError instead.
    error = pickle.loads(pickle.dumps(captured(raise_, NeedsTwoArgs(404, "gone"))))
    exc = error_to_exception(error)
    assert type(exc) is NeedsTwoArgs
    assert str(exc) == "404: gone" and (exc.code, exc.detail) == (404, "gone")
    assert exc.__traceback__ is not None


def test_exception_whose_class_cannot_be_unpickled_becomes_remote_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = types.ModuleType("shoal_test_gone_module")
    Gone = type("Gone", (Exception,), {"__module__": module.__name__})
    module.Gone = Gone  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    error = captured(raise_, Gone("it went away"))
    assert error["exception"] is not None
    monkeypatch.delitem(sys.modules, module.__name__)  # the client does not have it
    exc = error_to_exception(error)
    assert isinstance(exc, RemoteError)
    assert exc.type_name == "shoal_test_gone_module.Gone"
    assert exc.message == "it went away"
    assert str(exc) == "shoal_test_gone_module.Gone: it went away"
    assert "Gone" in exc.traceback_text
    assert exc.__traceback__ is not None  # the remote traceback is still attached


def test_exception_that_cannot_be_pickled_at_all_becomes_remote_error() -> None:
    class Holder(Exception):
        def __init__(self) -> None:
            super().__init__("holds a lock")
            self.lock = threading.Lock()

    error = captured(raise_, Holder())
    assert error["exception"] is None
    exc = error_to_exception(error)
    assert isinstance(exc, RemoteError)
    assert "holds a lock" in str(exc)


def test_exception_whose_str_fails_is_described() -> None:
    class Broken(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    error = captured(raise_, Broken())
    assert "str() of the Broken failed" in error["message"]


def test_huge_message_is_truncated_with_a_note() -> None:
    error = captured(raise_, ValueError("x" * 1_000_000))
    assert len(error["message"]) < MAX_MESSAGE + 200
    assert "characters truncated by shoal" in error["message"]
    assert len(error["tb_text"]) < MAX_TRACEBACK + 200
    exc = error_to_exception(error)
    assert type(exc) is ValueError
    assert len(str(exc)) < MAX_MESSAGE + 200
    assert "truncated" in str(exc)


def test_long_but_not_huge_message_is_kept_whole_on_the_exception() -> None:
    error = captured(raise_, ValueError("y" * (MAX_MESSAGE + 10)))
    assert "truncated" in error["message"]
    assert str(error_to_exception(error)) == "y" * (MAX_MESSAGE + 10)


def test_scheduler_errors_rebuild_to_their_exceptions() -> None:
    killed = scheduler_error("killed", "shoal.KilledWorker", "died", "t", workers=["a", "b"])
    exc = error_to_exception(killed)
    assert isinstance(exc, KilledWorker)
    assert exc.task == "t" and exc.workers == ["a", "b"] and exc.last_worker == "b"
    assert exc.allowed_failures == 1  # (an error dict without it: the deaths but the last)
    told = scheduler_error("killed", "shoal.KilledWorker", "died", "t", workers=["a"],
                           allowed_failures=0)
    assert error_to_exception(told).allowed_failures == 0  # type: ignore[attr-defined]
    lost = error_to_exception(scheduler_error("lost-data", "shoal.LostDataError", "gone", "t"))
    assert isinstance(lost, LostDataError) and str(lost) == "gone"
    cancelled = error_to_exception(scheduler_error("cancelled", "x", "by user", "t"))
    assert isinstance(cancelled, CancelledError)


def test_killed_worker_message_names_workers_and_fix() -> None:
    exc = KilledWorker("t", "tcp://b:2", 1, workers=["tcp://a:1", "tcp://b:2"])
    text = str(exc)
    assert "tcp://a:1" in text and "tcp://b:2" in text
    assert "allowed-failures" in text


@pytest.mark.parametrize(
    "exc",
    [KilledWorker("t", "w1", 3), RemoteError("m.E", "msg", "tb"), LostDataError("gone")],
    ids=type,
)
def test_shoal_exceptions_pickle(exc: BaseException) -> None:
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc)
    assert str(back) == str(exc)


def test_garbage_error_dict_never_raises() -> None:
    exc = error_to_exception({"exception": Serialized([b"not a pickle"]),
                              "traceback": Serialized([b"junk"]), "type": "T", "message": "m"})
    assert isinstance(exc, RemoteError) and str(exc) == "T: m"
    assert isinstance(error_to_exception({}), RemoteError)


def test_lost_connection_is_an_oserror_as_dasks_comm_closed_error() -> None:
    # A worker that died during client.run, or a closed client's futures: dask gives its
    # CommClosedError, an OSError, which `except OSError` around client.run catches.
    exc = error_to_exception({"kind": "lost", "type": "CommClosedError",
                              "message": "worker tcp://w:1 died during run",
                              "exception": None, "traceback": None, "tb_text": ""})
    assert isinstance(exc, OSError) and type(exc).__name__ == "CommClosedError"
    assert "died during run" in str(exc)
    assert type(pickle.loads(pickle.dumps(exc))) is type(exc)
