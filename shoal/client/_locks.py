"""Lock, Semaphore and MultiLock: dask.distributed's names, signatures and semantics, with
the state kept by the scheduler (shoal/scheduler/coordination).

As in dask, a Lock is a Semaphore of one lease (they share names), and a lease is returned
when its holder releases it, when the holder's connection to the scheduler closes (a
client that exits, a worker that dies), or when the holder stops refreshing it for
``distributed.scheduler.locks.lease-timeout`` (``"inf"``: never). MultiLock names are a
namespace of their own, as in dask.
"""

from __future__ import annotations

import collections
import inspect
import itertools
import threading
import uuid
from typing import TYPE_CHECKING, Any

import dask
from dask.utils import parse_timedelta

from shoal import _loop
from shoal.client._coord_faces import Ask, Tell, two_faced
from shoal.client._coordination import AwaitableSelf, call, find_client, send
from shoal.client._timeouts import wait_timeout
from shoal.protocol._coord_messages import (
    CoordMultiLockAcquire,
    CoordMultiLockRelease,
    CoordSemaphoreAcquire,
    CoordSemaphoreClose,
    CoordSemaphoreRefresh,
    CoordSemaphoreRelease,
    CoordSemaphoreValue,
)

if TYPE_CHECKING:
    from shoal.client._client import Client


# Lease ids: unique per process (a random token drawn once) and per acquire (a counter).
# uuid4() per acquire reads os.urandom, a system call that gives up the GIL on the path
# of every Lock round trip.
_PROCESS_TOKEN = uuid.uuid4().hex
_lease_numbers = itertools.count()


def _lease_timeout() -> float | None:
    value = dask.config.get("distributed.scheduler.locks.lease-timeout", "30s")
    if value == "inf" or value is None:
        return None
    return float(parse_timedelta(value, default="s"))


async def _awaited(value: Any) -> Any:
    """``value``, awaited if a two-faced call gave an awaitable (an asynchronous client)."""
    return await value if inspect.isawaitable(value) else value


def _is_client(value: Any) -> bool:
    from shoal.client._client import Client

    return isinstance(value, Client)


def _check_name(name: Any, what: str) -> None:
    if name is not None and not isinstance(name, str):
        raise TypeError(f"{what} name must be a string, got {type(name).__name__}: {name!r}")


def _true(_: None) -> bool:
    return True


class Semaphore(AwaitableSelf):
    """A semaphore of ``max_leases`` leases kept by the scheduler.

    Args:
        max_leases: how many holders may hold a lease at once (at least 1).
        name: shared by every Semaphore (and Lock) that coordinates; random if None.
        client: the Client to use; default: the current one (the worker's inside a task).

    Raises:
        ValueError: ``max_leases`` is not a positive integer; on acquire, a semaphore of
            this name already exists with another ``max_leases``; no client is running.
    """

    def __init__(self, max_leases: int = 1, name: str | None = None, scheduler_rpc: Any = None,
                 loop: Any = None, *, client: Client | None = None) -> None:
        if isinstance(max_leases, bool) or not isinstance(max_leases, int) or max_leases < 1:
            raise ValueError(f"max_leases must be a positive integer, got {max_leases!r}")
        _check_name(name, type(self).__name__)
        self.max_leases = max_leases
        self.name = name or f"semaphore-{uuid.uuid4().hex}"
        self.id = uuid.uuid4().hex
        self.refresh_leases = True
        self._client = client
        self._leases: collections.deque[str] = collections.deque()
        self._lease_timeout = _lease_timeout()
        self._refreshing = False  # a refresh timer is armed (under _refresh_lock)
        self._refresh_lock = threading.Lock()

    def _get_client(self) -> Client:
        client = find_client(self._client, type(self).__name__)
        if self._client is None:
            self._client = client
        return client

    def register(self, **kwargs: Any) -> None:
        """Kept for dask compatibility: shoal creates the semaphore at its first acquire."""

    @two_faced
    def acquire(self, timeout: Any = None) -> Ask:
        """Take a lease, waiting for one to be free.

        Args:
            timeout: seconds (or "200ms") to wait; None waits as long as it takes.

        Returns:
            True once a lease is held; False if none was free within ``timeout``.
        """
        return self._acquire(timeout)

    def _acquire(self, timeout: Any) -> Ask:
        client = self._get_client()
        seconds = wait_timeout(timeout, f"{type(self).__name__}.acquire")
        lease = f"{_PROCESS_TOKEN}-{next(_lease_numbers)}"

        def make(rid: int) -> CoordSemaphoreAcquire:
            return CoordSemaphoreAcquire(
                rid, self.name, self.max_leases, lease, self._lease_timeout, seconds)

        return Ask(client, make, lambda client, rid, ok: self._on_answer(client, lease, ok),
                   lambda client, ok: self._give_back(client, lease, ok), then=bool,
                   channel=True)

    @two_faced
    def release(self) -> Tell:
        """Give back the oldest lease this object holds.

        Raises:
            RuntimeError: it holds none ("Released too often", as in dask).
        """
        if not self._leases:
            raise RuntimeError("Released too often")
        client = self._get_client()
        lease = self._leases.popleft()
        return Tell(client, CoordSemaphoreRelease(self.name, lease), _true, channel=True)

    @two_faced
    def get_value(self) -> Ask:
        """How many leases are held now (by anyone)."""
        return Ask(self._get_client(), lambda rid: CoordSemaphoreValue(rid, self.name),
                   then=int)

    def close(self) -> None:
        """Forget this semaphore on the scheduler (leases still held are dropped, and this
        object stops refreshing them)."""
        call(self._get_client(), lambda rid: CoordSemaphoreClose(rid, self.name))
        self._leases.clear()

    # --- keeping leases alive ----------------------------------------------------------------

    def _on_answer(self, client: Client, lease: str, ok: Any) -> Any:
        """On the loop, as the answer to an acquire is read: a granted lease is this
        object's from now on, and kept alive."""
        if ok:
            self._lease_taken(client, lease)
        return ok

    def _give_back(self, client: Client, lease: str, ok: Any) -> None:
        """An acquire was cancelled or interrupted, but the lease came: release it."""
        if not ok:
            return
        with self._refresh_lock:
            if lease not in self._leases:
                return
            self._leases.remove(lease)
        send(client, CoordSemaphoreRelease(self.name, lease))

    def _lease_taken(self, client: Client, lease: str) -> None:
        """In any thread: ``lease`` is this object's from now on; while it holds leases, the
        loop tells the scheduler every lease-timeout / 5 (a timer armed once, not per
        acquire: a task thread's acquire does not wake the loop)."""
        with self._refresh_lock:
            self._leases.append(lease)
            if self._lease_timeout is None or self._refreshing:
                return
            self._refreshing = True
        interval = self._lease_timeout / 5

        def refresh() -> None:
            with self._refresh_lock:
                leases = list(self._leases)
                if not leases or not self.refresh_leases or client.status != "running":
                    self._refreshing = False
                    return
            client._send(CoordSemaphoreRefresh(self.name, leases))
            _loop.get_loop().call_later(interval, refresh)

        _loop.call_soon(lambda: _loop.get_loop().call_later(interval, refresh))

    # --- protocols -------------------------------------------------------------------------

    def __enter__(self) -> Semaphore:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    async def __aenter__(self) -> Semaphore:
        await _awaited(self.acquire())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await _awaited(self.release())

    def __getstate__(self) -> Any:
        return (self.name, self.max_leases)

    def __setstate__(self, state: Any) -> None:
        name, max_leases = state
        self.__init__(max_leases=max_leases, name=name)  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.name}, max_leases={self.max_leases}>"


class Lock(Semaphore):
    """A lock kept by the scheduler: ``with Lock("db"): ...`` from the client or a task.

    A Semaphore of one lease, as in dask (the two share names). Not re-entrant: a second
    ``acquire`` waits, even from the same object.

    Args:
        name: shared by every Lock that coordinates; random if None.
        scheduler_rpc, loop: dask's positional parameters, accepted and ignored (shoal
            reaches the scheduler through a client); a Client passed second, as older dask
            took it, is used as ``client``.
        client: (keyword only, shoal's) the Client to use; default: the current one (the
            worker's inside a task).
    """

    def __init__(self, name: str | None = None, scheduler_rpc: Any = None, loop: Any = None,
                 *, client: Client | None = None) -> None:
        _check_name(name, "Lock")
        if client is None and _is_client(scheduler_rpc):
            # Older dask took ``client`` second: ``Lock(name, client)`` still means that
            # client (today's dask would take it for its scheduler rpc and fail).
            client = scheduler_rpc
        super().__init__(max_leases=1, name=name or f"lock-{uuid.uuid4().hex}", client=client)

    @two_faced
    def acquire(self, blocking: bool = True, timeout: Any = None) -> Ask:  # type: ignore[override]
        """Take the lock.

        Args:
            blocking: False: don't wait at all (``timeout`` must then be None).
            timeout: seconds (or "200ms") to wait; None waits as long as it takes.

        Returns:
            True if the lock is now held by this object; False if not within ``timeout``.

        Raises:
            ValueError: a timeout with ``blocking=False``.
        """
        if not blocking:
            if timeout is not None:
                raise ValueError("can't specify a timeout for a non-blocking call")
            timeout = 0
        return self._acquire(timeout)

    @two_faced
    def locked(self) -> Ask:
        """Whether anyone holds the lock now."""
        return Ask(self._get_client(), lambda rid: CoordSemaphoreValue(rid, self.name),
                   then=lambda held: held == 1)

    def __getstate__(self) -> Any:
        return self.name

    def __setstate__(self, state: Any) -> None:
        self.__init__(name=state)  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"<Lock: {self.name}>"


class MultiLock:
    """Several locks taken all at once, without deadlock, first come first served.

    Args:
        names: the lock names (a namespace apart from Lock's, as in dask).
        client: the Client to use; default: the current one (the worker's inside a task).
    """

    def __init__(self, names: list[str] | None = None, client: Client | None = None) -> None:
        self.names = list(names or [])
        for name in self.names:
            _check_name(name, "MultiLock")
        self.id = uuid.uuid4().hex
        self._client = client
        self._locked = False

    @two_faced
    def acquire(self, blocking: bool = True, timeout: Any = None,
                num_locks: int | None = None) -> Ask:
        """Take all the locks (or ``num_locks`` of them), or none.

        Returns:
            True once they are held; False if not within ``timeout``.

        Raises:
            ValueError: a timeout with ``blocking=False``; no names; a bad ``num_locks``.
        """
        seconds = wait_timeout(timeout, "MultiLock.acquire")
        if not blocking:
            if seconds is not None:
                raise ValueError("can't specify a timeout for a non-blocking call")
            seconds = 0
        if not self.names:
            raise ValueError("MultiLock has no lock names: pass names=['a', 'b', ...]")
        client = find_client(self._client, "MultiLock")
        self._client = client
        n = num_locks or len(self.names)
        # A grant that comes after the withdrawal was sent is released by the withdrawal
        # itself (late_undo=False): a release sent from here could reach the scheduler after
        # this object's next acquire of the same id, and release that one.
        return Ask(client, lambda rid: CoordMultiLockAcquire(rid, self.names, self.id, n, seconds),
                   undo=self._give_back, then=self._acquired, late_undo=False)

    def _acquired(self, ok: Any) -> bool:
        self._locked = bool(ok)
        return self._locked

    def _give_back(self, client: Client, ok: Any) -> None:
        """An acquire was cancelled or interrupted as the locks came: release them."""
        if ok:
            send(client, CoordMultiLockRelease(self.id))

    @two_faced
    def release(self) -> Tell:
        """Give all the locks back.

        Raises:
            ValueError: they are not held ("Lock is not yet acquired", as in dask).
        """
        if not self.locked():
            raise ValueError("Lock is not yet acquired")
        return Tell(find_client(self._client, "MultiLock"), CoordMultiLockRelease(self.id),
                    self._released)

    def _released(self, _: None) -> None:
        self._locked = False

    def locked(self) -> bool:
        """Whether this object holds its locks."""
        return self._locked

    def __enter__(self) -> MultiLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    async def __aenter__(self) -> MultiLock:
        await _awaited(self.acquire())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await _awaited(self.release())

    def __reduce__(self) -> Any:
        return (type(self), (self.names,))

    def __repr__(self) -> str:
        return f"<MultiLock: {self.names}>"
