"""One sample of every message kind, with values of the types the wire really carries."""

from __future__ import annotations

from typing import Any

from shoal.protocol import _coord_messages as cm
from shoal.protocol import _messages as m
from shoal.protocol._serialize import Serialized

SMALL = Serialized([b"\x80\x05K\x01."])
TWO_FRAMES = Serialized([b"head", b"buffer"])

SAMPLES: dict[str, m.Message] = {
    "hello": m.Hello("client", m.PROTOCOL_VERSION, "client-1"),
    "update-graph": m.UpdateGraph(
        [("inc-1", SMALL, [], ["fid1"], (0, 1), 0, None, "inc"),
         (("sum", 0), None, ["inc-1"], [], (0, 2), 2, ["w1"], "sum")],
        ["inc-1", ("sum", 0)],
        {"fid1": b"cloudpickled function"},
        ["inc-1"],
        more=True,
        stream=3,
        held=[("sum", 0)],
    ),
    "graph-annotations": m.GraphAnnotations(3, Serialized([b"pickled {name: {key: value}}"])),
    "release-keys": m.ReleaseKeys(["a", ("b", 0, 1)]),
    "cancel-keys": m.CancelKeys(["a"], False),
    "span-tasks": m.SpanTasks(["outer", "inner"], ["id-1", "id-2"], ["a", ("b", 0)]),
    "retry-keys": m.RetryKeys([("x", 3)]),
    "scatter": m.Scatter(7, [("x", SMALL, 10, "int")], ["w1"], True),
    "request": m.Request(3, "who_has", {"keys": ["a"], "nested": {"n": 1.5}}),
    "key-done": m.KeyDone(("x", 0), 100, "ndarray", TWO_FRAMES),
    "keys-done-as-columns": m.KeysDone(
        [("x", 0), "y"], [100, 8], ["ndarray", "int"], [TWO_FRAMES, None], [None, b"cls"]
    ),
    "key-erred": m.KeyErred("x", {"kind": "exception", "message": "boom", "exception": SMALL}),
    "key-cancelled": m.KeyCancelled("x", "cancelled by the client"),
    "cluster-restarted": m.ClusterRestarted("client.restart()"),
    "response": m.Response(3, True, {"a": ["w1", "w2"]}),
    "compute": m.Compute("t", SMALL, [("a", ["w1"], 8)], {"f": b"blob"}, (1, 2), False, "t", 7),
    "computes-as-columns": m.Computes(
        ["t", ("u", 1)], [SMALL, TWO_FRAMES], [[("a", ["w1"], 8)], []], {"f": b"blob"},
        [(1, 2), (0, 3)], [False, True], [7, 8], [("a",), ()],
    ),
    "free-keys": m.FreeKeys(["a", "b"]),
    "store": m.Store("x", TWO_FRAMES, 10),
    "drop-functions": m.DropFunctions(["abc123"]),
    "run": m.Run(9, SMALL, False),
    "plugin-setup": m.PluginSetup(4, "upload_file-mod.py", SMALL, "worker"),
    "plugin-teardown": m.PluginTeardown(5, "my-plugin"),
    "copy-keys": m.CopyKeys(6, [("x", ["tcp://1.2.3.4:5"]), (("y", 0), ["w1", "w2"])]),
    "close": m.Close("shutting down"),
    "restart-worker-process": m.RestartWorker("client.restart()"),
    "register-reply": m.RegisterReply(False, "a worker at tcp://1.2.3.4:5 is already connected"),
    "register": m.Register("tcp://1.2.3.4:5", "worker-0", 4, 2**33, 1234, "1.2.3.4"),
    "tasks-started": m.TasksStarted(["t", ("x", 1)], [7, 8]),
    "worker-goodbye": m.WorkerGoodbye("worker closing"),
    "worker-lifetime-over": m.RetireAsked("lifetime of 60 s over"),
    "task-done": m.TaskDone("t", 8, "int", 1.5, 2.5, 140000, None, 7),
    "tasks-done-as-columns": m.TasksDone(
        ["t", ("u", 1)], [8, 16], ["int", "ndarray"], [1.5, 2.0], [2.5, 3.0], [140000, 2],
        [None, SMALL], [7, 9], [(), ("a", ("b", 0))], [b"cls", None],
    ),
    "task-erred": m.TaskErred("t", {"kind": "exception", "message": "boom"}, 1.0, 2.0, 1, 7),
    "missing-data": m.MissingData("a", "tcp://w1", "t"),
    "scatter-stored": m.ScatterStored("x", None),
    "transfer": m.Transfer(["a", "b"], "tcp://w1", 16, 1.0, 2.0),
    "heartbeat": m.Heartbeat(10**9, 10**8, 55.5, 2, 3 * 10**8),
    "worker-memory-paused": m.MemoryPaused(True),
    "worker-memory-terminated": m.MemoryTerminated(600 * 2**20, 630 * 2**20, 0.95),
    "nanny-memory-terminated": m.NannyMemoryTerminated(1, "tcp://10.0.0.2:4000", 600 * 2**20,
                                                       630 * 2**20, 0.95),
    "nanny-worker-exited": m.NannyWorkerExited(2, "tcp://10.0.0.2:4000", 4242),
    "get-data": m.GetData(4, ["a", ("b", 1)]),
    "data": m.Data(4, {"a": SMALL, ("b", 1): TWO_FRAMES}, ["c"], {"d": {"message": "x"}}),
    "coord-semaphore-acquire": cm.CoordSemaphoreAcquire(1, "db", 1, "lease-1", 30.0, None),
    "coord-semaphore-release": cm.CoordSemaphoreRelease("db", "lease-1"),
    "coord-semaphore-refresh": cm.CoordSemaphoreRefresh("db", ["lease-1", "lease-2"]),
    "coord-semaphore-value": cm.CoordSemaphoreValue(2, "db"),
    "coord-semaphore-close": cm.CoordSemaphoreClose(3, "db"),
    "coord-multi-lock-acquire": cm.CoordMultiLockAcquire(4, ["a", "b"], "id-1", 2, 1.5),
    "coord-multi-lock-release": cm.CoordMultiLockRelease("id-1"),
    "coord-queue-create": cm.CoordQueueCreate(15, "jobs", 10),
    "coord-queue-put": cm.CoordQueuePut(5, "jobs", ("data", SMALL), None),
    "coord-queue-get": cm.CoordQueueGet(6, "jobs", -1, 0.5),
    "coord-queue-size": cm.CoordQueueSize(7, "jobs"),
    "coord-queue-release": cm.CoordQueueRelease("jobs"),
    "coord-variable-set": cm.CoordVariableSet(8, "stop", ("future", ("x", 1))),
    "coord-variable-get": cm.CoordVariableGet(9, "stop", None),
    "coord-variable-delete": cm.CoordVariableDelete("stop"),
    "coord-event-set": cm.CoordEventSet(10, "ready"),
    "coord-event-clear": cm.CoordEventClear(11, "ready"),
    "coord-event-wait": cm.CoordEventWait(12, "ready", 10),
    "coord-event-is-set": cm.CoordEventIsSet(13, "ready"),
    "coord-keys-received": cm.CoordKeysReceived(16),
    "coord-queue-return": cm.CoordQueueReturn("jobs", [("data", SMALL), ("future", ("x", 1))]),
    "coord-withdraw": cm.CoordWithdraw(17),
    "coord-reply": cm.CoordReply(14, False, ["TimeoutError", "queue 'jobs' stayed empty"]),
    "actor-call": m.ActorCall(11, "Counter-1a2b", "increment", TWO_FRAMES),
    "actor-result": m.ActorResult(11, False, {"kind": "exception", "message": "boom"}),
    "task-seceded": m.TaskSeceded(("fib", 3), 0.002, 7),
    "task-rescheduled-by-task": m.TaskRescheduled(("fib", 3), 7),
    "fire-and-forget": m.FireAndForget(["report", ("x", 0)]),
    "topic-log": m.TopicLog(["print", "jobs"], {"args": ("hi", "1"), "file": 1}),
    "topic-subscribe": m.TopicSubscribe("jobs", True),
    "topic-get": m.TopicGet(5, None),
    "topic-event": m.TopicEvent("jobs", 1.5, [1, "two"]),
    "dataset-publish": m.DatasetPublish(6, [("model", b"pickled", ["k1", ("k", 2)])], False),
    "dataset-unpublish": m.DatasetUnpublish(7, ["model", ("t", 1)]),
    "dataset-get": m.DatasetGet(8, ["model"]),
    "dataset-list": m.DatasetList(9),
    "profile-tree-ask": m.ProfileAsk(12, 1700000000.5, None, "inc", False),
}


def as_tuples(value: Any) -> Any:
    """Lists become tuples, recursively: msgpack decodes every array as a tuple (so that
    tuple keys stay hashable), and equality below is about content, not container type."""
    if isinstance(value, (list, tuple)):
        return tuple(as_tuples(v) for v in value)
    if isinstance(value, dict):
        return {as_tuples(k): as_tuples(v) for k, v in value.items()}
    return value


def wire_content(msg: m.Message) -> Any:
    return as_tuples(msg.to_wire())
