"""Every message shoal's processes exchange, declared in one place.

Owns: the message kinds (one small slotted class each, with a unique tag), their field
order on the wire, and validation on decode. Must not know about sockets or task logic.

Wire form: a message is the tuple ``(tag, *fields)``; a batch of messages is one msgpack
array in one frame (see ``_framing``). Messages are plain slotted dataclasses rather than
frozen ones because construction is on the per-task hot path; nobody mutates them.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeVar

from typing_extensions import dataclass_transform

from shoal.protocol._serialize import Serialized
from shoal.protocol._wire_checks import _DEEP, _NUM, _SEQ, ProtocolError

# 2: UpdateGraph carries `more` (graphs sent in pieces); 3: one-frame payloads as ext 2,
# and run ids in Compute and the task reports; 4: Compute.drop and TaskDone.dropped (inputs
# a task reads last, dropped by its worker as it ends); 5: Computes and TasksDone (many
# tasks' computes or results in one message, as columns), and KeysDone (results to a client);
# 6: RetireAsked (a worker's lifetime is over) and ProfileAsk (client.profile);
# 8: CoordQueueRelease (Queue.close); 9-11: spilled bytes on disk in the heartbeat, the
# worker's last words when its nanny kills it for memory, refused (blocked) requests;
# 12: a templated task payload names its layer's shared part, sent once through the
# function table, instead of carrying it (protocol/_call.py); 13: a client's Hello names
# the session it had before (``previous``), which the scheduler drops at once on reconnect;
# 14: a nanny's own word that it kills its worker for memory (NannyMemoryTerminated, Hello
# role "nanny"); 15: a worker's Register may name it by a float, bool, bytes or tuple (as
# dask's names), and result type names are dask's typename ("numpy.ndarray"); 16:
# CoordWithdraw and CoordQueueReturn (a cancelled awaiting call of a primitive); 17: a
# result's pickled class in the task and key reports (``pickled_type``), for Future.type,
# and SpanTasks (the keys submitted in a span block); 18: GraphAnnotations (the
# dask.annotate names shoal does not act on, for scheduler plugins' update_graph); 20:
# UpdateGraph.held (the keys of a graph's piece that its later pieces use: only those are
# kept until its last piece)
PROTOCOL_VERSION = 20

Key = Any  # str, int, float or a tuple of them (dask keys)




class Message:
    tag: ClassVar[str]
    __slots__ = ()

    _fields_of: ClassVar[Any]  # operator.attrgetter of the fields, set at declaration

    def to_wire(self) -> tuple[Any, ...]:
        return (self.tag, *self._fields_of(self))


_REGISTRY: dict[str, type[Message]] = {}
# Per tag: (field name, accepted types or None for "anything") for each field, in order.
_CHECKS: dict[str, tuple[tuple[str, tuple[type, ...] | None], ...]] = {}

# Per tag, what from_wire needs in one lookup (it runs for every message received):
# (class, length of the wire tuple, (index, field name, accepted types) of checked fields).
_DECODE: dict[str, tuple[type[Message], int, tuple[tuple[int, str, tuple[type, ...]], ...]]] = {}



def _accepts(annotation: str) -> tuple[type, ...] | None:
    """The wire types a field declared as ``annotation`` may hold (None: any value)."""
    out: list[type] = []
    for part in (p.strip() for p in re.split(r"\|(?![^\[]*\])", annotation)):
        base = part.split("[", 1)[0]
        if base == "Any":
            return None
        if base == "Key":
            return (str, bytes, int, float, tuple)
        kinds: dict[str, tuple[type, ...]] = {
            "str": (str,), "int": (int,), "float": _NUM, "bool": (bool,), "bytes": (bytes,),
            "list": _SEQ, "tuple": _SEQ, "dict": (dict,), "None": (type(None),),
            "Serialized": (Serialized,),
        }
        if base not in kinds:
            raise TypeError(f"message field type {annotation!r} has no wire check")
        out.extend(kinds[base])
    return tuple(dict.fromkeys(out))


_C = TypeVar("_C", bound=type)


@dataclass_transform()
def _message(tag: str) -> Callable[[_C], _C]:
    def wrap(cls: Any) -> Any:
        cls = dataclass(slots=True, eq=True, repr=True)(cls)
        cls.tag = tag
        if tag in _REGISTRY:
            raise RuntimeError(f"duplicate message tag {tag!r}")
        _REGISTRY[tag] = cls
        names = [f.name for f in fields(cls)]
        _CHECKS[tag] = tuple((f.name, _accepts(str(f.type))) for f in fields(cls))
        _DECODE[tag] = (cls, len(names) + 1, tuple(
            (i, name, kinds) for i, (name, kinds) in enumerate(_CHECKS[tag], 1)
            if kinds is not None
        ))
        # attrgetter of several names returns a tuple; of one, a bare value: wrap it.
        if len(names) > 1:
            cls._fields_of = operator.attrgetter(*names)
        else:
            one = operator.attrgetter(*names) if names else None
            cls._fields_of = staticmethod(lambda m: (one(m),) if one is not None else ())
        return cls

    return wrap


def from_wire(item: Any) -> Message:
    """Build a message from its wire tuple, or raise :class:`ProtocolError`."""
    if not isinstance(item, (tuple, list)) or not item or not isinstance(item[0], str):
        raise ProtocolError(f"expected a (tag, *fields) array, got {type(item).__name__}")
    tag = item[0]
    spec = _DECODE.get(tag)
    if spec is None:
        raise ProtocolError(f"unknown message tag {tag!r}")
    cls, length, checks = spec
    if len(item) != length:
        if tag == "hello" and len(item) == length - 1:  # an older peer's: see Hello
            return from_wire((*item, ""))
        raise ProtocolError(
            f"message {tag!r} needs {length - 1} fields, got {len(item) - 1}"
        )
    for i, name, kinds in checks:
        value = item[i]
        if not isinstance(value, kinds):
            raise ProtocolError(
                f"message {tag!r}: field {name!r} must be "
                f"{' or '.join(k.__name__ for k in kinds)}, got {type(value).__name__}"
            )
    deep = _DEEP.get(tag)
    if deep is not None:
        deep(item)
    return cls(*item[1:])


def message_kinds() -> dict[str, type[Message]]:
    return dict(_REGISTRY)


# --- handshake (any peer) ----------------------------------------------------------------


@_message("hello")
class Hello(Message):
    """First message on every connection: who is speaking and which protocol version.

    ``previous``: a client reconnecting names the session the scheduler gave it before
    (its welcome's ``client``); the scheduler drops that session at once, as if its
    connection had closed, since it may still look open (a half-open link). A Hello of
    protocol 12 or older, without it, is still read, so that the version check can say
    what is wrong."""

    role: str  # "client" | "worker" | "peer" | "coordination" (a task thread's Lock channel)
    version: int
    name: str
    previous: str = ""


# --- client -> scheduler -----------------------------------------------------------------


@_message("update-graph")
class UpdateGraph(Message):
    """New tasks, and the keys the client holds futures for.

    ``tasks`` rows: (key, payload|None, dependencies, fids, priority, retries, workers, prefix).
    """

    tasks: list[tuple[Any, ...]]
    wanted: list[Key]
    functions: dict[str, bytes]
    actors: list[Key] | None = None  # keys among ``tasks`` whose results are actors
    # Only for tasks that have them: (key, resources dict or None, allow_other_workers).
    restrictions: list[tuple[Any, ...]] | None = None
    # ``stream`` > 0: a piece of a large graph the client sends in pieces, that stream's
    # number (unique per client); ``more``: more pieces of it follow (each row's inputs are
    # in this piece or an earlier one). The scheduler keeps a stream's tasks until its last
    # piece; a whole graph (stream 0), or another stream's piece, in between changes nothing.
    more: bool = False
    stream: int = 0
    # A piece with ``more``: its keys that later pieces use, the only ones kept for them
    # (None: every key of the piece not in ``wanted``).
    held: list[Key] | None = None


@_message("graph-annotations")
class GraphAnnotations(Message):
    """The annotations shoal does not act on (the rows carry retries, priority and workers,
    ``restrictions`` resources and allow_other_workers) of the tasks of the graph whose
    last ``UpdateGraph`` follows at once, of stream ``stream`` (0: a whole graph):
    ``{name: {key: value}}`` pickled, for scheduler plugins' ``update_graph`` (unpickled
    only while one is registered). Sent only when there are some, so that a graph without
    them costs nothing more on the wire."""

    stream: int
    annotations: Serialized


@_message("span-tasks")
class SpanTasks(Message):
    """The tasks ``keys`` (of the graph that follows) were submitted in a ``span`` block:
    its tags ``names`` and ``ids`` from the outermost block in (the ``"span"`` annotation),
    for the scheduler's span records (``scheduler/_spans.py``)."""

    names: list[str]
    ids: list[str]
    keys: list[Key]


@_message("release-keys")
class ReleaseKeys(Message):
    keys: list[Key]


@_message("cancel-keys")
class CancelKeys(Message):
    """Drop the client's interest in ``keys``; with ``force``, every client's (dask's rule)."""

    keys: list[Key]
    force: bool


@_message("retry-keys")
class RetryKeys(Message):
    keys: list[Key]


@_message("scatter")
class Scatter(Message):
    """Data the client puts into cluster memory: (key, data, nbytes, typename) rows."""

    request_id: int
    items: list[tuple[Key, Serialized, int, str]]
    workers: list[str | int] | None  # addresses, hosts or names
    broadcast: bool


@_message("request")
class Request(Message):
    """A non-hot-path question to the scheduler; answered by a :class:`Response`."""

    request_id: int
    op: str
    args: dict[str, Any]


# --- scheduler -> client -----------------------------------------------------------------


@_message("key-done")
class KeyDone(Message):
    """A wanted key is in memory; small results ride along in ``inline``; ``pickled_type``
    is :class:`TaskDone`'s (the class of a result not inline that its name does not find)."""

    key: Key
    nbytes: int
    typename: str
    inline: Serialized | None
    pickled_type: bytes | None = None


@_message("keys-done-as-columns")
class KeysDone(Message):
    """Several :class:`KeyDone` as columns, row ``i`` of each for ``keys[i]``, in the order
    the scheduler decided them (one client's results of one scheduler step)."""

    keys: list[Key]
    nbytes: list[int]
    typenames: list[str]
    inlines: list[Serialized | None]
    pickled_types: list[bytes | None]


@_message("key-erred")
class KeyErred(Message):
    key: Key
    error: dict[str, Any]  # ErrorInfo.to_wire()


@_message("key-cancelled")
class KeyCancelled(Message):
    key: Key
    reason: str


@_message("cluster-restarted")
class ClusterRestarted(Message):
    """Scheduler -> every client: ``client.restart()`` dropped every task; each future the
    client holds is cancelled (dask's "scheduler-restart")."""

    reason: str


@_message("response")
class Response(Message):
    request_id: int
    ok: bool
    value: Any


# --- scheduler -> worker -----------------------------------------------------------------


@_message("compute")
class Compute(Message):
    """Run a task. ``deps`` rows: (key, [worker addresses holding it], nbytes). ``run``
    names this assignment of the key to this worker (the scheduler numbers them): the
    worker's reports on the task echo it, so a report of an earlier assignment is told
    apart from one of this. ``drop``: inputs held here that this task reads last (nothing
    else needs them): the worker drops them when the task succeeds, and says so in its
    ``TaskDone``, instead of holding them until the scheduler's free arrives."""

    key: Key
    payload: Serialized
    deps: list[tuple[Key, list[str], int]]
    functions: dict[str, bytes]
    priority: Any
    send_inline: bool
    prefix: str
    run: int
    drop: tuple[Key, ...] = ()


@_message("computes-as-columns")
class Computes(Message):
    """Run several tasks: :class:`Compute`'s fields as columns, row ``i`` of each for
    ``keys[i]`` (the computes the scheduler sent one worker in one loop step, in order).
    ``functions`` serves every row. There is no ``prefix`` column: workers do not read it.
    One message instead of one per task: no message object, wire tuple or field check per
    task on either side, and the columns are checked on decode in bulk (``_columns``)."""

    keys: list[Key]
    payloads: list[Serialized]
    deps: list[list[tuple[Key, list[str], int]]]
    functions: dict[str, bytes]
    priorities: list[Any]
    send_inline: list[bool]
    runs: list[int]
    drops: list[tuple[Key, ...]]


@_message("free-keys")
class FreeKeys(Message):
    keys: list[Key]


@_message("drop-functions")
class DropFunctions(Message):
    """No task uses these function ids any more: a worker forgets their blobs, a client
    forgets it sent them (and sends them again if it uses them again)."""

    fids: list[str]


@_message("store")
class Store(Message):
    """Scattered data for the worker to hold."""

    key: Key
    data: Serialized
    nbytes: int


@_message("run")
class Run(Message):
    """Run a function once on the worker (``client.run``); answered by a Response."""

    request_id: int
    function: Serialized
    wait: bool = True  # False: an async function is started, and answered None at once


@_message("close")
class Close(Message):
    reason: str


@_message("restart-worker-process")
class RestartWorker(Message):
    """Scheduler -> worker: leave now to be replaced by a fresh one. A worker with a nanny
    exits at once (its nanny starts a new process); one without registers again as a fresh
    worker (a new session)."""

    reason: str


@_message("register-reply")
class RegisterReply(Message):
    """The scheduler's answer to a worker's ``Register``. Refused (with the reason) when a
    worker at the same address is still connected; the scheduler then closes the connection."""

    accepted: bool
    reason: str


# --- worker -> scheduler -----------------------------------------------------------------


@_message("register")
class Register(Message):
    address: str
    # Any name dask carries (``_wire_checks.is_worker_name``): LocalCluster's 0, 1, ... stay
    # ints, a float, bool or tuple stays one (tuples arrive as tuples: use_list=False).
    name: str | int | float | bytes | tuple
    nthreads: int
    memory_limit: int
    pid: int
    host: str
    # Random per worker process: only the same worker may replace a connection that still
    # looks open (a reconnect after a partition left the old one half-open).
    incarnation: str = ""
    resources: dict[str, float] | None = None  # abstract resources offered ({"GPU": 2})


@_message("tasks-started")
class TasksStarted(Message):
    """The worker's threads began running these tasks (batched with other reports), for
    these runs (``Compute.run``, one per key). Empty: the worker process is ready to run
    tasks (its background imports are done); until a first one, its death blames no task."""

    keys: list[Key]
    runs: list[int]


@_message("worker-goodbye")
class WorkerGoodbye(Message):
    """The worker is closing on purpose (told to, or retiring): not a crash."""

    reason: str


@_message("worker-lifetime-over")
class RetireAsked(Message):
    """Worker -> scheduler: this worker's lifetime is over (``shoal worker --lifetime``):
    move what others still need off it, then close it (``Close``), as ``retire_workers``
    does."""

    reason: str


@_message("task-done")
class TaskDone(Message):
    key: Key
    nbytes: int
    typename: str
    start: float
    stop: float
    thread: int
    inline: Serialized | None
    run: int  # the ``Compute.run`` this result answers
    dropped: tuple[Key, ...] = ()  # inputs of ``Compute.drop`` the worker dropped as it ended
    # The result's class pickled, when a client wants the result, it is not ``inline`` and
    # its ``typename`` does not find the class (one defined inside a function): for
    # ``Future.type``, as dask's worker sends every result's pickled type.
    pickled_type: bytes | None = None


@_message("tasks-done-as-columns")
class TasksDone(Message):
    """Several :class:`TaskDone` as columns, row ``i`` of each for ``keys[i]``, in the order
    the worker reported them (consecutive results of one hand-back from its threads)."""

    keys: list[Key]
    nbytes: list[int]
    typenames: list[str]
    starts: list[float]
    stops: list[float]
    threads: list[int]
    inlines: list[Serialized | None]
    runs: list[int]
    dropped: list[tuple[Key, ...]]
    pickled_types: list[bytes | None]


@_message("task-erred")
class TaskErred(Message):
    key: Key
    error: dict[str, Any]
    start: float
    stop: float
    thread: int
    run: int  # the ``Compute.run`` this failure answers


@_message("task-rescheduled-by-task")
class TaskRescheduled(Message):
    """Worker -> scheduler: the task raised ``Reschedule``; place it again (not a failure)."""

    key: Key
    run: int  # the ``Compute.run`` this answers


@_message("scatter-stored")
class ScatterStored(Message):
    """The worker holds scattered ``key`` (``error`` None), or could not load it."""

    key: Key
    error: dict[str, Any] | None


@_message("missing-data")
class MissingData(Message):
    """A worker could not fetch ``key`` from ``worker`` for ``for_key``."""

    key: Key
    worker: str
    for_key: Key


@_message("transfer")
class Transfer(Message):
    """For the task stream: a fetch of dependencies that took place."""

    keys: list[Key]
    peer: str
    nbytes: int
    start: float
    stop: float


@_message("heartbeat")
class Heartbeat(Message):
    memory_process: int
    memory_managed: int  # bytes of the values held in memory
    cpu: float
    executing: int
    memory_spilled: int = 0  # bytes (in memory) of the values spilled to disk
    memory_spilled_disk: int = 0  # bytes their spill files take (compressed or not)


@_message("worker-memory-terminated")
class MemoryTerminated(Message):
    """Worker -> scheduler, its last words: its nanny is killing it because its process
    took ``process`` bytes, past ``fraction`` of its ``limit``
    (distributed.worker.memory.terminate). The connection's loss follows."""

    process: int
    limit: int
    fraction: float


@_message("nanny-memory-terminated")
class NannyMemoryTerminated(Message):
    """Nanny -> scheduler, on a connection of its own (``Hello`` role ``"nanny"``): it is
    killing its worker ``worker`` (an address) because its process took ``process``
    bytes, past ``fraction`` of its ``limit``: the worker's own ``MemoryTerminated``
    does not come when the worker is too busy to answer the nanny's signal in time.
    Answered by a ``Response`` once noted; the nanny kills after the answer, so the
    worker's loss comes after it."""

    request_id: int
    worker: str
    process: int
    limit: int
    fraction: float


@_message("nanny-worker-exited")
class NannyWorkerExited(Message):
    """Nanny -> scheduler, on a connection of its own (``Hello`` role ``"nanny"``): its
    worker ``worker`` (an address) exited unasked (killed, crashed). The scheduler removes
    it now if it has not yet (the loss of its connection may come later) and answers with
    a ``Response`` whose value is True when ``retire_workers`` closed it, or was closing
    it when it died: its nanny then does not restart it (dask's retire_workers tells the
    nanny first). ``pid``: the process's, so that a new worker that took the same address
    meanwhile is not removed in its place."""

    request_id: int
    worker: str
    pid: int


@_message("worker-memory-paused")
class MemoryPaused(Message):
    """The worker's process memory passed (``paused``) or fell back below (not
    ``paused``) its pause threshold: it starts no new tasks nor fetches meanwhile."""

    paused: bool


# --- anyone -> worker (data plane) --------------------------------------------------------


@_message("get-data")
class GetData(Message):
    request_id: int
    keys: list[Key]


@_message("data")
class Data(Message):
    """Values asked for; ``errors`` holds those that exist but cannot be serialized.
    ``more``: a piece of a reply split by size; more pieces follow (see ``_pieces``)."""

    request_id: int
    items: dict[Key, Serialized]
    missing: list[Key]
    errors: dict[Key, Any]
    more: bool = False


# --- actors: a caller (client or task) <-> the worker holding the actor ---------------------


@_message("actor-call")
class ActorCall(Message):
    """Call method ``name`` of the actor ``key`` held by the receiving worker, with ``args``
    the pickled ``(args, kwargs)``; or, when ``args`` is None, read attribute ``name``.
    Answered by an :class:`ActorResult` with the same ``request_id``."""

    request_id: int
    key: Key
    name: str
    args: Serialized | None


@_message("actor-result")
class ActorResult(Message):
    """The outcome of an ActorCall: the pickled value (``ok``), or an error dict."""

    request_id: int
    ok: bool
    value: Any
# --- tasks that launch tasks, fire-and-forget, topics, datasets (issue 10) -----------------


@_message("task-seceded")
class TaskSeceded(Message):
    """Worker -> scheduler: a running task left its thread slot (``secede()``); it no longer
    counts as busy. ``duration`` is how long it computed before seceding."""

    key: Key
    duration: float
    run: int  # the ``Compute.run`` of the task that seceded


@_message("fire-and-forget")
class FireAndForget(Message):
    """Client -> scheduler: run these keys to completion even when no client wants them."""

    keys: list[Key]


@_message("topic-log")
class TopicLog(Message):
    """Client or worker -> scheduler: log ``msg`` under each of ``topics``."""

    topics: list[str]
    msg: Any


@_message("topic-subscribe")
class TopicSubscribe(Message):
    """Client -> scheduler: start (``subscribe=True``) or stop receiving a topic's events."""

    topic: str
    subscribe: bool


@_message("topic-get")
class TopicGet(Message):
    """Client -> scheduler: the stored events of ``topic`` (all topics when None)."""

    request_id: int
    topic: str | None


@_message("topic-event")
class TopicEvent(Message):
    """Scheduler -> subscribed client: a new event ``(time, msg)`` on ``topic``."""

    topic: str
    time: float
    msg: Any


@_message("dataset-publish")
class DatasetPublish(Message):
    """Client -> scheduler: (name, pickled value, keys it holds) rows to publish."""

    request_id: int
    items: list[tuple[Any, bytes, list[Key]]]
    override: bool


@_message("dataset-unpublish")
class DatasetUnpublish(Message):
    request_id: int
    names: list[Any]


@_message("dataset-get")
class DatasetGet(Message):
    """Client -> scheduler: the pickled values of ``names`` (None for an unknown name)."""

    request_id: int
    names: list[Any]


@_message("dataset-list")
class DatasetList(Message):
    request_id: int


# --- controlling a running cluster: plugins, uploads, copies (issue 11) ----------------------


@_message("plugin-setup")
class PluginSetup(Message):
    """Scheduler -> worker: unpickle ``plugin`` (a worker or nanny plugin, ``kind``) and
    set it up under ``name``, replacing (tearing down) one of the same name. Answered by a
    Response with the same ``request_id`` (0: a re-send to a joining worker, not awaited)."""

    request_id: int
    name: str
    plugin: Serialized
    kind: str  # "worker" | "nanny"


@_message("plugin-teardown")
class PluginTeardown(Message):
    """Scheduler -> worker: tear down and forget the plugin ``name``; answered by a Response."""

    request_id: int
    name: str


@_message("copy-keys")
class CopyKeys(Message):
    """Scheduler -> worker: fetch ``keys`` from their holders (``(key, [holders])`` rows)
    and keep them, for ``replicate``/``rebalance``; answered by a Response whose value is
    ``[(key, nbytes)]`` for the keys now held."""

    request_id: int
    keys: list[tuple[Key, list[str]]]


# --- statistical profiler (client.profile) ----------------------------------------------------


@_message("profile-tree-ask")
class ProfileAsk(Message):
    """Scheduler -> worker: the worker's profile (``_profile_tree`` format) of the samples
    between ``start`` and ``stop`` (times as ``time.time()``; None: open), of the tasks of
    key prefix ``key`` only when given; with ``server``, of its event loop thread instead
    of its tasks. Answered by a Response whose value is the tree."""

    request_id: int
    start: float | None
    stop: float | None
    key: str | None
    server: bool


# The coordination primitives' messages are declared in their own module (for length);
# importing it registers their kinds here.
from shoal.protocol import _coord_messages  # noqa: E402, F401
