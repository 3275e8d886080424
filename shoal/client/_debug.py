"""Understanding failures: replay the failing task here, and tell its story.

Owns: ``Client.recreate_error_locally`` (find the task that failed first, fetch its inputs
from the cluster, run it in this process so a debugger lands in the user's code) and
``Client.explain`` (a readable account of a failure).
"""

from __future__ import annotations

import asyncio
import datetime
import html
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shoal._task_refs import task_refs
from shoal.protocol._errors import describe_value
from shoal.protocol._serialize import FunctionTable, loads

if TYPE_CHECKING:
    from shoal.client._core import ClientCore as Client  # the protocol: never the facade


# While a future is pending, how often to check that its task has not got stuck (no
# worker may run it): a stuck task would otherwise be waited for forever.
_STUCK_CHECK_EVERY = 2.0


async def _target_key(client: Client, obj: Any, timeout: float | None = None) -> Any:
    from shoal.client._future import Future, settled
    from shoal.client._structure import futures_of

    futures = [obj] if isinstance(obj, Future) else futures_of(obj)
    if not futures:
        raise TypeError(
            f"expected a Future or a persisted collection, got {type(obj).__name__}; pass the "
            "future returned by client.compute/submit or the result of client.persist"
        )
    # The wait ends when the futures settle (a lost scheduler connection settles them too),
    # when a pending task is found stuck in no-worker, or after ``timeout``.
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    waiting = asyncio.ensure_future(settled(f._state for f in futures))
    try:
        while True:
            pending = next((f for f in futures if f._state.status == "pending"), None)
            if pending is None:
                break
            await _raise_if_stuck(client, pending.key)
            step = _STUCK_CHECK_EVERY
            if deadline is not None:
                left = deadline - loop.time()
                if left <= 0:
                    raise TimeoutError(
                        f"{pending.key!r} was still pending after {timeout} s: there is no "
                        "failure to look at yet; wait for the future (future.result() or "
                        "client.wait) or pass a longer timeout="
                    )
                step = min(step, left)
            await asyncio.wait([waiting], timeout=step)
    finally:
        waiting.cancel()
    if isinstance(obj, Future):
        return obj.key
    for f in futures:
        if f._state.status == "error":
            return f.key
    raise ValueError("none of these futures failed; there is no error to recreate")


async def _raise_if_stuck(client: Client, key: Any) -> None:
    """A pending ``key`` that no worker can run would be waited for forever: say why."""
    info = await client._request_within("failure", client._timeout, key=key)
    if info is not None and "no_worker" in info:
        raise ValueError(f"{key!r} has not failed: {info['no_worker']}")


def _checked_timeout(timeout: Any) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
        raise ValueError(f"timeout must be a number of seconds >= 0 or None, got {timeout!r}")
    return float(timeout)


async def _failure(client: Client, obj: Any, timeout: float | None = None) -> dict[str, Any]:
    key = await _target_key(client, obj, _checked_timeout(timeout))
    info = await client._request_within("failure", client._timeout, key=key)
    if info is None:
        raise ValueError(
            f"{key!r} has not failed (or the cluster no longer holds its failure); "
            "nothing to recreate or explain"
        )
    info_dict: dict[str, Any] = dict(info)
    if "no_worker" in info_dict:
        raise ValueError(f"{key!r} has not failed: {info_dict['no_worker']}")
    return info_dict


def recreate_error_locally(self: Client, future: Any, *, timeout: float | None = None) -> None:
    """Run the task that failed first behind ``future`` in this process, with its real
    inputs fetched from the cluster, so that its exception is raised here and
    ``pdb.post_mortem()`` / ``%debug`` land in your function.

    A pending ``future`` is waited for until it settles (as in dask), at most ``timeout``
    seconds if given (a shoal extension); a task that no worker can run fails at once.

    Raises:
        The task's own exception (that is the point).
        ValueError: the future did not fail, or its task waits for a worker that can run it.
        TimeoutError: ``future`` was still pending after ``timeout`` seconds.
    """
    # Blocking whatever the client's mode (as in dask): the task runs in the caller's frame.
    info = self.sync(_failure, self, future, timeout, asynchronous=False)
    if info["error"].get("kind") != "exception":
        from shoal.protocol._errors import error_to_exception

        raise error_to_exception(info["error"])
    table = FunctionTable()
    table.add_blobs(dict(info["functions"]))
    task = task_refs(loads, info["payload"], table)
    keys = [row[0] for row in info["dependencies"]]
    values = self._fetch(keys) if keys else {}
    task(values)
    raise RuntimeError(
        f"task {info['key']!r} did not fail when run locally; the failure may depend on the "
        "worker's environment (memory, files, installed packages)"
    )


@dataclass
class FailureStory:
    """What went wrong, told once: ``print(client.explain(future))`` or display it in Jupyter."""

    key: Any
    exception_type: str
    message: str
    worker: str
    when: float
    traceback: str
    inputs: list[str] = field(default_factory=list)
    dependents_erred: int = 0
    kind: str = "exception"
    workers_died: list[str] = field(default_factory=list)
    story: list[Any] = field(default_factory=list)

    @property
    def replay(self) -> str:
        return "client.recreate_error_locally(future)"

    def _when(self) -> str:
        if not self.when:
            return "unknown time"
        return datetime.datetime.fromtimestamp(self.when).strftime("%Y-%m-%d %H:%M:%S")

    def _tb_tail(self, lines: int = 12) -> str:
        tail = self.traceback.strip().splitlines()[-lines:]
        return "\n".join(tail)

    def __str__(self) -> str:
        out = [f"Task {self.key!r} failed first"]
        if self.kind == "killed":
            out.append(f"  cause:   its worker died {len(self.workers_died)} time(s) while running it")
            out.append(f"  workers: {', '.join(self.workers_died)}")
        else:
            out.append(f"  on:      {self.worker or 'unknown worker'} at {self._when()}")
        out.append(f"  error:   {self.exception_type}: {self.message}")
        if self.inputs:
            out.append("  inputs:")
            out.extend(f"    {line}" for line in self.inputs)
        out.append(f"  took down {self.dependents_erred} dependent task(s)")
        if self.traceback:
            out.append("  traceback (most recent call last, tail):")
            out.extend(f"    {line}" for line in self._tb_tail().splitlines())
        if self.kind == "exception":
            out.append(f"  replay it here: {self.replay}")
        return "\n".join(out)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        e = html.escape
        rows = [("task", str(self.key)), ("error", f"{self.exception_type}: {self.message}")]
        if self.kind == "killed":
            rows.append(("workers that died", ", ".join(self.workers_died)))
        else:
            rows.append(("worker", f"{self.worker} at {self._when()}"))
        rows.append(("dependents erred", str(self.dependents_erred)))
        if self.inputs:
            rows.append(("inputs", "<br>".join(e(i) for i in self.inputs)))
        if self.kind == "exception":
            rows.append(("replay", self.replay))
        body = "".join(
            f"<tr><th style='text-align:left'>{e(k)}</th><td>{v if k == 'inputs' else e(v)}</td></tr>"
            for k, v in rows
        )
        return (
            "<div class='shoal-failure'><h4>shoal: task failed</h4>"
            f"<table>{body}</table><pre>{e(self._tb_tail())}</pre></div>"
        )


async def explain(self: Client, future: Any, *, timeout: float | None = None) -> FailureStory:
    """The story of the failure behind ``future`` (or a persisted collection): which task
    failed first, where, when, why, with what inputs, what it took down, how to replay it.

    A pending ``future`` is waited for until it settles, at most ``timeout`` seconds if given.

    Raises:
        ValueError: nothing failed (or it waits in no-worker: the message says what it needs).
        TimeoutError: ``future`` was still pending after ``timeout`` seconds.
    """
    info = await _failure(self, future, timeout)
    err = info["error"]
    inputs = list(err.get("inputs") or [])
    if not inputs:
        inputs = [f"{row[0]!r}: {row[3] or 'unknown'} ({row[4]} bytes)" for row in info["dependencies"]]
        if not inputs and info.get("payload") is not None:
            inputs = _argument_summary(info)
    return FailureStory(
        key=info["key"],
        exception_type=str(err.get("type", "Exception")).replace("builtins.", ""),
        message=str(err.get("message", "")),
        worker=str(err.get("worker", "")),
        when=float(err.get("time") or 0.0),
        traceback=str(err.get("tb_text", "")),
        inputs=inputs,
        dependents_erred=int(info["dependents_erred"]),
        kind=str(err.get("kind", "exception")),
        workers_died=list(err.get("workers", [])),
        story=list(info.get("story", [])),
    )


def _argument_summary(info: dict[str, Any]) -> list[str]:
    try:
        table = FunctionTable()
        table.add_blobs(dict(info["functions"]))
        task = task_refs(loads, info["payload"], table)
    except Exception as exc:  # the story is told without the arguments, and says why
        return [f"<the task's arguments could not be loaded here: {type(exc).__name__}: {exc}>"]
    args = getattr(task, "args", ())
    kwargs = getattr(task, "kwargs", {})
    out = [f"arg {i}: {describe_value(a)}" for i, a in enumerate(args[:8])]
    out.extend(f"{k}=: {describe_value(v)}" for k, v in list(kwargs.items())[:8])
    return out
