"""A worker's memory policy as a pure state machine: ``handle(*events) -> commands``.

Owns: dask's worker memory model (``distributed.worker.memory.*``): which values sit in
memory and which on disk, least recently used first out; when to spill (managed memory
past *target*, or process memory past *spill*); when to pause (process memory past
*pause*) and resume (back below it). Must not know: the values, files, threads, clocks or
config (the data store shell, ``shoal.worker._spill``, carries the commands out and feeds
the figures in; the thresholds arrive as :class:`MemoryLimits`).

Keys known here are either *fast* (in memory, in least-recently-used order) or *slow* (on
disk). A value bigger than the target on its own never fits: it goes to disk as it is
stored and stays there; reads of it are served from the file without bringing it back.
Likewise any value read back while memory is at the target (unlike dask's LRU, which
would push another value out for it).

dask's *max-spill* (:attr:`MemoryLimits.max_spill`) caps the bytes on disk: the shell
asks :meth:`MemoryPolicy.admit_spill` with a value's size as it would be written; once one
does not fit, it stays in memory and no spill is ordered until a value leaves the disk
(the worker then pauses, or its nanny kills it, at the usual thresholds).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from shoal._machine import Command, Event

Key = Any


@dataclass(frozen=True, slots=True)
class MemoryLimits:
    """Thresholds in bytes (None: that rule is off), from a limit and dask's fractions;
    ``max_spill``: the most bytes the spill files may take (dask's max-spill; None: no
    cap)."""

    limit: int
    target: int | None
    spill: int | None
    pause: int | None
    max_spill: int | None = None

    @classmethod
    def from_fractions(cls, limit: int, target: Any = 0.6, spill: Any = 0.7,
                       pause: Any = 0.8, max_spill: int | None = None) -> MemoryLimits:
        """dask's config values: a fraction of ``limit``, or False/None to disable;
        ``max_spill`` in bytes (see :func:`max_spill_bytes`)."""

        def part(frac: Any) -> int | None:
            if not limit or frac is None or frac is False:
                return None
            return int(float(frac) * limit)

        return cls(limit, part(target), part(spill), part(pause), max_spill)


def max_spill_bytes(setting: Any) -> int | None:
    """dask's ``distributed.worker.memory.max-spill`` in bytes, None for no cap (False, the
    default, or None); accepts a number of bytes or a size such as "10 GB". Raises
    ValueError for anything else."""
    if setting is None or setting is False or setting in ("false", "False"):
        return None
    if isinstance(setting, bool):
        raise ValueError("distributed.worker.memory.max-spill must be False (no cap) or a "
                         "size such as '10 GB', not True")
    if isinstance(setting, str) and setting.isdigit():  # as the nanny passes it
        return int(setting)
    from dask.utils import parse_bytes

    try:
        value = parse_bytes(setting) if isinstance(setting, str) else int(setting)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"distributed.worker.memory.max-spill={setting!r} is not a size: "
                         "use a number of bytes, a size such as '10 GB', or False (no "
                         "cap)") from exc
    if value < 0:
        raise ValueError(f"distributed.worker.memory.max-spill={setting!r} is negative: use "
                         "a size such as '10 GB', or False (no cap)")
    return int(value)


# --- events (facts the shell reports) -----------------------------------------------------
# Stored, used and removed come once or more per task: plain slotted classes, not frozen
# ones (a frozen dataclass's __init__ costs several times more); nobody mutates them.


@dataclass(slots=True)
class ValueStored(Event):
    """A value of ``nbytes`` was stored under ``key`` (replacing any earlier one)."""

    key: Key
    nbytes: int


@dataclass(slots=True)
class ValueUsed(Event):
    """A value in memory was read (it becomes the most recently used)."""

    key: Key


@dataclass(frozen=True, slots=True)
class ValueLoaded(Event):
    """A value on disk was read back into memory."""

    key: Key


@dataclass(slots=True)
class ValueRemoved(Event):
    key: Key


@dataclass(frozen=True, slots=True)
class SpillFailed(Event):
    """The value could not be written to disk (it cannot be pickled): it stays in memory
    and is never tried again."""

    key: Key


@dataclass(frozen=True, slots=True)
class MemorySampled(Event):
    """The process's memory (RSS) was measured."""

    process: int


# --- commands (orders for the shell) --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Spill(Command):
    """Write these in-memory values to disk and drop them from memory."""

    keys: list[Key]


@dataclass(frozen=True, slots=True)
class Unspill(Command):
    """Keep the value just read back in memory and delete its file."""

    key: Key


@dataclass(frozen=True, slots=True)
class Pause(Command):
    """Start no new tasks nor fetches, and tell the scheduler."""


@dataclass(frozen=True, slots=True)
class Resume(Command):
    """Start tasks and fetches again, and tell the scheduler."""


_NOTHING: list[Command] = []  # returned when there is nothing to do; never appended to


class MemoryPolicy:
    """The spill/pause decisions of one worker, from the sizes of its values and samples of
    its process memory."""

    def __init__(self, limits: MemoryLimits) -> None:
        self.limits = limits
        self.fast: OrderedDict[Key, int] = OrderedDict()  # in memory, least recently used first
        self.slow: dict[Key, int] = {}  # on disk
        self.fast_bytes = 0
        self.slow_bytes = 0
        self.unspillable: set[Key] = set()
        # Bytes on disk of the spilled values the shell has written (admit_spill), and
        # whether a value did not fit under max_spill: no spill is ordered until a value
        # leaves the disk.
        self.disk: dict[Key, int] = {}
        self.disk_bytes = 0
        self.disk_full = False
        self.paused = False
        self.process = 0  # the last sample
        # Process memory not owed to values in memory, at the last sample: between samples
        # process memory is estimated as this plus the values in memory.
        self.unmanaged = 0
        self._out: list[Command] = []

    def handle(self, *events: Event) -> list[Command]:
        for ev in events:
            kind = type(ev)
            if kind is ValueUsed:
                if ev.key in self.fast:  # type: ignore[attr-defined]
                    self.fast.move_to_end(ev.key)  # type: ignore[attr-defined]
            elif kind is ValueStored:
                self._on_stored(ev.key, ev.nbytes)  # type: ignore[attr-defined]
            elif kind is ValueRemoved:
                self.removed(ev.key)  # type: ignore[attr-defined]
            elif kind is ValueLoaded:
                self._on_loaded(ev.key)  # type: ignore[attr-defined]
            elif kind is SpillFailed:
                self._on_spill_failed(ev.key)  # type: ignore[attr-defined]
            elif kind is MemorySampled:
                self._on_sampled(ev.process)  # type: ignore[attr-defined]
            else:
                raise TypeError(f"memory policy got an unknown event {ev!r}")
        if not self._out:
            return _NOTHING
        out, self._out = self._out, []
        return out

    def used(self, key: Key) -> None:
        """The same as ``handle(ValueUsed(key))``, for the store's read path (every task
        input): only bookkeeping, never a command, so no event object nor list per read."""
        if key in self.fast:
            self.fast.move_to_end(key)

    def stored(self, key: Key, nbytes: int) -> list[Command]:
        """The same as ``handle(ValueStored(key, nbytes))``, for the store's write path
        (every task result): no event object per result."""
        self._on_stored(key, nbytes)
        if not self._out:
            return _NOTHING
        out, self._out = self._out, []
        return out

    def removed(self, key: Key) -> None:
        """The same as ``handle(ValueRemoved(key))``, for the store's delete path (every
        freed value): only bookkeeping, never a command."""
        self._forget(key)
        if self.unspillable:
            self.unspillable.discard(key)

    @property
    def managed(self) -> int:
        """Bytes of the values held in memory (dask's managed memory, in memory part)."""
        return self.fast_bytes

    # --- events ------------------------------------------------------------------------------

    def _forget(self, key: Key) -> None:
        nbytes = self.fast.pop(key, None)
        if nbytes is not None:
            self.fast_bytes -= nbytes
        nbytes = self.slow.pop(key, None)
        if nbytes is not None:
            self.slow_bytes -= nbytes
            self._off_disk(key)

    def _off_disk(self, key: Key) -> None:
        written = self.disk.pop(key, None)
        if written is not None:
            self.disk_bytes -= written
            self.disk_full = False

    def admit_spill(self, key: Key, written: int) -> bool:
        """Whether the shell may write ``key`` (ordered spilled), ``written`` bytes on
        disk, under max-spill. If not, the value stays in memory (the least recently used
        still) and no spill is ordered until a value leaves the disk. Pure, as ``handle``:
        a query the shell makes between pickling a value and writing it."""
        nbytes = self.slow.get(key)
        if nbytes is None:
            return False
        cap = self.limits.max_spill
        if self.disk_full or (cap is not None and self.disk_bytes + written > cap):
            self.spill_refused(key)
            return False
        self.disk[key] = written
        self.disk_bytes += written
        return True

    def spill_refused(self, key: Key) -> None:
        """A value ordered spilled stays in memory: it would take the spill files past
        max-spill (or an earlier one of its batch did)."""
        nbytes = self.slow.pop(key, None)
        if nbytes is None:
            return
        self.slow_bytes -= nbytes
        self.fast[key] = nbytes
        self.fast.move_to_end(key, last=False)  # still the least recently used
        self.fast_bytes += nbytes
        self.disk_full = True

    def _on_stored(self, key: Key, nbytes: int) -> None:
        if key in self.fast or key in self.slow:
            self._forget(key)
        if self.unspillable:
            self.unspillable.discard(key)
        target = self.limits.target
        if target is not None and nbytes > target and not self.disk_full:
            # Never fits: straight to disk (it would only push everything else out first).
            self.fast[key] = nbytes
            self.fast_bytes += nbytes
            self._spill([key])
            return
        self.fast[key] = nbytes
        self.fast_bytes += nbytes
        if target is not None and self.fast_bytes > target:
            self._spill_bytes(self.fast_bytes - target, keep=key)
        spill = self.limits.spill
        if spill is not None and self.unmanaged + self.fast_bytes > spill:
            # The process would be past *spill* (the last sample's unmanaged memory plus
            # the values held): act now rather than at the next sample, values arrive
            # faster than samples do.
            floor = target if target is not None else spill
            self._spill_bytes(self.unmanaged + self.fast_bytes - floor, keep=key)

    def _on_loaded(self, key: Key) -> None:
        """A value read back returns to memory only if it fits under the target as things
        are: making room would write another value out, which a scan over spilled data
        (a sum of every chunk) would read back in turn; served from its file, it costs one
        read and the values in memory stay for their own readers."""
        nbytes = self.slow.get(key)
        if nbytes is None:
            return
        target = self.limits.target
        if target is not None and self.fast_bytes + nbytes > target:
            return  # no room: served from disk, kept there
        del self.slow[key]
        self.slow_bytes -= nbytes
        self._off_disk(key)
        self.fast[key] = nbytes
        self.fast_bytes += nbytes
        self._out.append(Unspill(key))

    def _on_spill_failed(self, key: Key) -> None:
        nbytes = self.slow.pop(key, None)
        if nbytes is None:
            return
        self.slow_bytes -= nbytes
        self._off_disk(key)
        self.fast[key] = nbytes
        self.fast_bytes += nbytes
        self.unspillable.add(key)

    def _on_sampled(self, process: int) -> None:
        self.process = process
        self.unmanaged = max(0, process - self.fast_bytes)
        lim = self.limits
        if lim.spill is not None and process > lim.spill and self.fast:
            # Spill until process memory would be back at the target (dask's rule); what
            # process memory does not owe to values (unmanaged) cannot be spilled.
            floor = lim.target if lim.target is not None else lim.spill
            self._spill_bytes(process - floor)
        if lim.pause is not None:
            if process > lim.pause and not self.paused:
                self.paused = True
                self._out.append(Pause())
            elif process <= lim.pause and self.paused:
                self.paused = False
                self._out.append(Resume())

    def _spill_bytes(self, need: int, keep: Key = None) -> None:
        """Spill least recently used values totalling at least ``need`` bytes, sparing
        ``keep`` (the value just stored: its task's dependents are about to read it);
        none once the spill files are full (max-spill)."""
        if self.disk_full:
            return
        keys = []
        freed = 0
        for key, nbytes in self.fast.items():
            if freed >= need:
                break
            if key == keep or key in self.unspillable:
                continue
            keys.append(key)
            freed += nbytes
        if keys:
            self._spill(keys)

    def _spill(self, keys: list[Key]) -> None:
        for key in keys:
            nbytes = self.fast.pop(key)
            self.fast_bytes -= nbytes
            self.slow[key] = nbytes
            self.slow_bytes += nbytes
        self._out.append(Spill(keys))

    def validate(self) -> None:
        assert self.fast_bytes == sum(self.fast.values()), (self.fast_bytes, self.fast)
        assert self.slow_bytes == sum(self.slow.values()), (self.slow_bytes, self.slow)
        assert not (self.fast.keys() & self.slow.keys())
        assert self.unspillable <= self.fast.keys()
        assert self.disk.keys() <= self.slow.keys(), (self.disk, self.slow)
        assert self.disk_bytes == sum(self.disk.values()), (self.disk_bytes, self.disk)
