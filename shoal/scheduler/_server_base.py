"""What every part of :class:`~shoal.scheduler._server.Scheduler` shares: :class:`ShellBase`
declares the shell's attributes and the methods one part calls on another, with their types.

``Scheduler`` is one object assembled from mixins, one per concern: ``_server_messages``
(messages in, as events), ``_server_commands`` (events applied to the state, its commands
carried out as messages), ``_server_side`` (the topics and datasets machines) and
``_server_runs`` (questions fanned out to workers). Each mixin derives from
:class:`ShellBase` so that mypy checks it on its own; the attributes are set in
``Scheduler.__init__``.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
from typing import TYPE_CHECKING, Any

from shoal.comm import Connection
from shoal.protocol._messages import Message, Request, Response
from shoal.protocol._serialize import Serialized

if TYPE_CHECKING:
    from shoal._logs import LogRing
    from shoal.scheduler._amm_shell import AmmShell
    from shoal.scheduler._datasets import Datasets
    from shoal.scheduler._metadata import Metadata
    from shoal.scheduler._plugins import SchedulerPlugins
    from shoal.scheduler._state import SchedulerState
    from shoal.scheduler._topics import Topics
    from shoal.scheduler._turns import Turn
    from shoal.scheduler.coordination._shell import CoordinationShell


class ShellBase:
    """The attributes of the scheduler shell (set in ``Scheduler.__init__``) and the methods
    the parts call across modules. Declarations only: no behaviour lives here."""

    address: str
    state: SchedulerState
    topics: Topics
    datasets: Datasets
    plugin_host: SchedulerPlugins
    coordination: CoordinationShell
    metadata: Metadata
    logs: LogRing
    amm: AmmShell
    retiring: dict[str, int]
    retired: dict[str, None]
    _workers: dict[str, Connection]
    _worker_fids: dict[str, set[str]]
    _held: list[Connection]
    _held_clients: list[Connection]
    _turn: Turn
    _waiting: collections.deque[Connection]
    _steps_armed: bool
    _clients: dict[str, Connection]
    _functions: dict[str, bytes]
    _client_fids: dict[str, set[str]]
    _forgotten: collections.OrderedDict[str, bytes]
    _scattered: dict[Any, tuple[Serialized, int]]
    _pending_runs: dict[int, tuple[Connection, int, dict[str, Any], set[str]]]
    _run_futures: dict[int, asyncio.Future[Any]]
    _worker_joined: asyncio.Event
    _ids: itertools.count[int]

    if TYPE_CHECKING:
        # Defined once each, in the module named; declared here so mypy checks the callers.

        # _server
        def _spawn(self, coro: Any) -> None: ...
        def _hook(self, hook: str, *args: Any, **kwargs: Any) -> None: ...
        async def wait_for_workers(self, n: int, timeout: float | None) -> None: ...
        async def _answer(self, conn: Connection, msg: Request) -> None: ...

        # _server_commands
        def _apply(self, events: list[Any]) -> None: ...

        # _server_side
        def _on_side_message(self, sender: str, msg: Message) -> None: ...
        def _apply_side(self, machine: Any, events: list[Any]) -> None: ...

        # _server_runs
        def _on_run_response(self, address: str | None, msg: Response) -> None: ...
        def _fail_runs_for(self, address: str) -> None: ...
