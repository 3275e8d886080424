"""Results: waiting for futures and reading their values, written once for both faces.

Owns: ``result``/``exception``/``traceback`` of a Future, ``gather``, and done-callbacks.
The waiting-and-reading is one coroutine (``gather_async``) run on shoal's loop behind
``Client.sync``. A blocking caller first waits on the futures' ``threading.Event``s in its
own thread (no loop wake-up per future) and reads what came inline with the key-done
messages there; only a value that has to be fetched from a worker takes the coroutine, which
then finds the futures settled. Functions take the client (``ClientCore``) first and are
attached to ``Client`` as methods.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from shoal import _loop
from shoal.client._fetch import fetch_async
from shoal.client._future import (
    NOT_PLAIN,
    Future,
    FutureState,
    failure_of_state,
    first_failed,
    settled,
    settled_or_failed,
)
from shoal.client._returned import load_for, may_hold_futures
from shoal.client._structure import collect_futures, rebuild
from shoal.protocol._errors import error_to_exception, error_traceback

if TYPE_CHECKING:
    from shoal.client._core import ClientCore as Client  # the protocol: never the facade

logger = logging.getLogger("shoal.client")


def wait_one(self: Client, fut: Future, timeout: float | None) -> None:
    if not fut._state.wait(timeout):
        raise TimeoutError(f"future {fut.key!r} did not finish within {timeout} s")


def result(self: Client, fut: Future, timeout: float | None, asynchronous: bool | None = None) -> Any:
    if not (self.asynchronous if asynchronous is None else asynchronous):
        wait_one(self, fut, timeout)
        st = fut._state  # settled: unless it must be fetched, no loop round trip
        if st.status != "finished":
            raise exception_of(fut)
        if st.inline is not None:
            if may_hold_futures(st.inline):
                return load_for(self, FutureState.inline_value, st)
            return st.inline_value()
    return self.sync(result_within, self, fut, timeout, asynchronous=asynchronous)


async def result_within(self: Client, fut: Future, timeout: float | None) -> Any:
    try:
        return await asyncio.wait_for(gather_async(self, fut), timeout)
    except TimeoutError:
        if not fut.done():
            raise TimeoutError(f"future {fut.key!r} did not finish within {timeout} s") from None
        raise TimeoutError(f"the result of {fut.key!r} could not be fetched within {timeout} s") from None


def failure(self: Client, fut: Future, timeout: float | None, what: str,
            asynchronous: bool | None = None) -> Any:
    """``Future.exception()`` (``what="exception"``) or ``Future.traceback()``."""
    if self.asynchronous if asynchronous is None else asynchronous:
        return self.sync(failure_when_done, self, fut, what, callback_timeout=timeout)
    wait_one(self, fut, timeout)
    return failure_of(fut, what)


async def failure_when_done(self: Client, fut: Future, what: str) -> Any:
    await settled([fut._state])
    return failure_of(fut, what)


def failure_of(fut: Future, what: str) -> Any:
    """A settled future's exception (``what="exception"``) or remote traceback; None if it
    did not fail."""
    st = fut._state
    if st.status != "error" or st.error is None:
        return None
    if what == "traceback":
        return error_traceback(st.error)
    return error_to_exception(st.error)


def cancelled_error(reason: Any, msg: Any) -> dict[str, Any]:
    """A future's ``error`` once ``Client.cancel(reason=, msg=)`` cancelled it."""
    reason = reason or "unknown"
    message = f"cancelled for reason: {reason}." + (f"\n{msg}" if msg else "")
    return {"kind": "cancelled", "type": "CancelledError", "message": message,
            "reason": reason, "msg": msg, "exception": None, "traceback": None, "tb_text": ""}


def exception_of(fut: Future) -> BaseException:
    """What asking for the value of a settled, unsuccessful future raises."""
    return failure_of_state(fut.key, fut._state)


def add_callback(self: Client, fut: Future, fn: Callable[[Future], Any]) -> None:
    when_done(fut, fn)


def when_done(fut: Future, fn: Callable[[Future], Any]) -> None:
    """Call ``fn(fut)`` on the loop thread once ``fut`` is done; ``fut`` may have been
    released (its key's state is then cancelled, and the call comes all the same)."""
    def call() -> None:
        try:
            fn(fut)
        except Exception:
            logger.exception("error in a done-callback of future %r", fut.key)

    # A pending future takes the callback directly (no wake-up of the loop, which
    # matters when as_completed(...).add runs once per result); a settled one gets it
    # called soon on the loop thread, where every callback runs.
    if not fut._state.add_callback_if_pending(call):
        _loop.call_soon(call)


def gather(self: Client, futures: Any, errors: str = "raise", direct: Any = None,
           asynchronous: Any = None) -> Any:
    """Wait for futures and return their results, in the same structure
    (list, tuple, dict, nested, or a single future); an awaitable of them when
    asynchronous.

    Args:
        errors: "raise" (the first failure is raised) or "skip", as dask's: a failed or
            cancelled future that is an item of ``futures`` itself, a list, is left out;
            anywhere else (a tuple, dict or set, nested, or a single future) it gives None.
    """
    if errors not in ("raise", "skip"):
        raise ValueError(f"errors must be 'raise' or 'skip', got {errors!r}")
    self._check_open()
    if isinstance(futures, Iterator):
        return (gather(self, f, errors=errors, asynchronous=asynchronous) for f in futures)
    if not (self.asynchronous if asynchronous is None else asynchronous):
        flat: list[Future] = []
        collect_futures(futures, flat)
        if errors == "raise":  # as dask's: the first failure ends the wait
            first = settled_or_failed(flat)
            if first is not None:
                raise exception_of(first)
        else:
            for f in flat:
                f._state.wait(None)
        values, failed, fetch = split(self, flat, errors)
        if not fetch:  # all here: no loop round trip
            return rebuild(futures, values, failed)
    return self.sync(gather_async, self, futures, errors, asynchronous=asynchronous)


async def gather_async(self: Client, futures: Any, errors: str = "raise") -> Any:
    flat: list[Future] = []
    collect_futures(futures, flat)
    if errors == "raise":  # as dask's: the first failure ends the wait
        await settled((f._state for f in flat), _unsuccessful)
        first = first_failed(flat)
        if first is not None:
            raise exception_of(first)
    else:
        await settled(f._state for f in flat)
    values, failed, fetch = split(self, flat, errors)
    if fetch:
        values.update(await fetch_async(self, fetch))
    return rebuild(futures, values, failed)


def _unsuccessful(st: FutureState) -> bool:
    return st.status != "finished"


def split(self: Client, flat: list[Future], errors: str
          ) -> tuple[dict[Any, Any], set[Any], list[Any]]:
    """Settled futures' inline values, failed keys (``errors="skip"``; with "raise" the
    first failure is raised) and the keys whose values must be fetched from workers.
    One pass, so that a later message about a key cannot slip between the looks. Futures
    inside the values become this client's."""
    values: dict[Any, Any] = {}
    failed: set[Any] = set()
    fetch: dict[Any, None] = {}
    for f in flat:
        st = f._state
        if st.status == "finished":
            inline = st.inline
            if inline is not None:
                value = st.plain_value()  # (most of a map's: None, read once for all)
                if value is NOT_PLAIN:
                    value = (load_for(self, FutureState.inline_value, st)
                             if may_hold_futures(inline) else st.inline_value())
                values[f.key] = value
            else:
                fetch[f.key] = None
        elif errors == "skip":
            failed.add(f.key)
        else:
            raise exception_of(f)
    return values, failed, list(fetch)
