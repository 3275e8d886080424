"""Futures: handles on remote results, shared per key within a client.

Owns: a key's status as the client sees it (pending, finished, error, cancelled, lost),
waiting for it from user threads, done-callbacks, and reference counting so that a result
is released on the cluster when no Future for it remains.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dask._task_spec import TaskRef

from shoal.protocol._serialize import Serialized

if TYPE_CHECKING:
    from shoal.client._client import Client

_NO_VALUE = object()
# Guards FutureState.status changes against callback registration from user threads.
_callbacks_lock = threading.Lock()


class FutureState:
    """What the client knows about one key; shared by every Future of that key."""

    __slots__ = ("_event", "callbacks", "error", "inline", "nbytes", "status", "typename")

    def __init__(self) -> None:
        self.status = "pending"
        self.inline: Serialized | None = None
        self.error: dict[str, Any] | None = None
        self.nbytes = -1
        self.typename = ""
        self._event: threading.Event | None = None
        self.callbacks: list[Callable[[], None]] = []

    def done(self) -> bool:
        return self.status != "pending"

    def wait(self, timeout: float | None) -> bool:
        if self.status != "pending":
            return True
        event = self._event
        if event is None:
            event = self._event = threading.Event()
        if self.status != "pending":
            return True
        return event.wait(timeout)

    def settle(self, status: str) -> None:
        """Called on the loop thread when the key reaches a final status."""
        with _callbacks_lock:
            self.status = status
            callbacks, self.callbacks = self.callbacks, []
        event = self._event
        if event is not None:
            event.set()
        for cb in callbacks:
            cb()

    def add_callback_if_pending(self, cb: Callable[[], None]) -> bool:
        """Register ``cb`` to run when the key settles; False if it already has (any
        thread may call this; ``settle`` runs the callbacks on the loop thread)."""
        with _callbacks_lock:
            if self.status != "pending":
                return False
            self.callbacks.append(cb)
            return True

    def reset(self) -> None:
        self.status = "pending"
        self.inline = None
        self.error = None
        self._event = None


class Future(TaskRef):
    """A remote result. ``result()`` waits for it; dropping every Future of a key releases it.

    Subclasses dask's ``TaskRef`` so dask graphs (``delayed(f)(future)``) see it as a
    dependency.
    """

    __slots__ = ("__weakref__", "_client", "_state")

    def __init__(self, key: Any, client: Client, state: FutureState | None = None) -> None:
        super().__init__(key)
        self._client = client
        self._state = state if state is not None else client._state_for(key)
        client._incref(key)

    @classmethod
    def _new(cls, key: Any, client: Client, state: FutureState) -> Future:
        """A future whose reference the caller has already counted (bulk creation)."""
        fut = cls.__new__(cls)
        fut.key = key
        fut._client = client
        fut._state = state
        return fut

    # --- status -------------------------------------------------------------------------------

    @property
    def client(self) -> Client:
        return self._client

    @property
    def status(self) -> str:
        """'pending', 'finished', 'error', 'cancelled' or 'lost'."""
        return self._state.status

    @property
    def type(self) -> str:
        return self._state.typename

    def done(self) -> bool:
        """True once the result is in memory, failed, or was cancelled."""
        return self._state.done()

    def cancelled(self) -> bool:
        return self._state.status == "cancelled"

    # --- results ----------------------------------------------------------------------------

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the result and return it; raise the task's exception if it failed.

        Raises:
            TimeoutError: not done within ``timeout`` seconds.
            CancelledError: the future was cancelled.
        """
        return self._client._result(self, timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The exception the task raised, or None if it succeeded."""
        self._client._wait_one(self, timeout)
        if self._state.status == "error" and self._state.error is not None:
            from shoal.protocol._errors import error_to_exception

            return error_to_exception(self._state.error)
        return None

    def traceback(self, timeout: float | None = None) -> Any:
        """The remote traceback of a failed task (a traceback object), or None."""
        self._client._wait_one(self, timeout)
        if self._state.status == "error" and self._state.error is not None:
            from shoal.protocol._errors import error_traceback

            return error_traceback(self._state.error)
        return None

    def add_done_callback(self, fn: Callable[[Future], Any]) -> None:
        """Call ``fn(future)`` once the future is done (on shoal's event-loop thread;
        exceptions in it are logged, not raised)."""
        self._client._add_callback(self, fn)

    def cancel(self, **kwargs: Any) -> None:
        """Cancel the computation of this key (if nothing else needs it, it stops)."""
        self._client.cancel([self], **kwargs)

    def retry(self, **kwargs: Any) -> None:
        """Run a failed task (and its failed inputs) again."""
        self._client.retry([self], **kwargs)

    def release(self) -> None:
        """Drop this future's hold on the result now rather than at garbage collection."""
        client, self._client = self._client, None  # type: ignore[assignment]
        if client is not None:
            client._decref(self.key, self._state)

    # --- dask integration ---------------------------------------------------------------------

    def __dask_tokenize__(self) -> Any:
        return (type(self).__name__, self.key)

    def __reduce__(self) -> Any:
        return TaskRef, (self.key,)

    def __del__(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            try:
                client._decref(self.key, self._state)
            except Exception:
                pass

    def __await__(self) -> Any:
        return self._client._result_async(self).__await__()

    def __repr__(self) -> str:
        extra = f", type: {self._state.typename}" if self._state.typename else ""
        return f"<Future: {self._state.status}{extra}, key: {self.key}>"

    def _repr_html_(self) -> str:
        import html

        return (
            f"<strong>Future: {html.escape(str(self.key))}</strong> "
            f"<span>status: {self._state.status}</span>"
            + (f", <span>type: {html.escape(self._state.typename)}</span>" if self._state.typename else "")
        )

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Future) and other.key == self.key and other._client is self._client
