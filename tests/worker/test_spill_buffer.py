"""The worker's data store under a memory limit: values spilled to files and read back."""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from shoal.worker._memory import MemoryLimits, Pause, Resume
from shoal.worker._spill import SpillBuffer, read_frames, write_frames

MB = 1_000_000


@pytest.fixture
def buf(tmp_path: Path) -> Iterator[SpillBuffer]:
    b = SpillBuffer(str(tmp_path), MemoryLimits.from_fractions(10 * MB))  # target 6 MB
    yield b
    b.policy.validate()
    b.close()


def test_frames_round_trip_through_a_file(tmp_path: Path) -> None:
    path = str(tmp_path / "f")
    arr = np.arange(1000)
    frames = [b"head", memoryview(arr), b""]
    write_frames(path, frames)
    back = read_frames(path)
    assert [bytes(f) for f in back] == [bytes(f) for f in frames]


def test_past_the_target_old_values_go_to_disk(buf: SpillBuffer) -> None:
    for i in range(4):
        buf[i] = np.full(2 * MB // 8, i, dtype="f8")
    assert buf.on_disk(0) and not buf.on_disk(3)
    assert buf.spilled_bytes > 0
    assert buf.managed_in_memory <= 6 * MB
    assert sorted(buf) == [0, 1, 2, 3] and len(buf) == 4


def test_a_value_read_back_is_equal_and_writable(buf: SpillBuffer) -> None:
    for i in range(4):
        buf[i] = np.full(2 * MB // 8, i, dtype="f8")
    back = buf[0]
    assert isinstance(back, np.ndarray) and back.flags.writeable
    assert (back == 0).all()
    back[0] = 42.0  # writable in place
    assert buf.on_disk(0)  # memory is at the target: it stays on disk
    del buf[3]
    assert (buf[0] == 0).all() and not buf.on_disk(0)  # room now: back in memory


def test_a_value_too_big_to_fit_stays_on_disk_when_read(buf: SpillBuffer) -> None:
    buf["huge"] = np.ones(8 * MB // 8)
    assert buf.on_disk("huge") and buf.managed_in_memory == 0
    assert buf["huge"].sum() == MB
    assert buf.on_disk("huge")
    ser = buf.serialized("huge")
    assert ser is not None and pickle.loads(ser.frames[0], buffers=ser.frames[1:]).sum() == MB


def test_deleting_a_spilled_value_deletes_its_file(buf: SpillBuffer) -> None:
    buf["huge"] = np.ones(8 * MB // 8)
    files = os.listdir(buf._directory())
    assert len(files) == 1
    del buf["huge"]
    assert os.listdir(buf._directory()) == []
    assert "huge" not in buf
    with pytest.raises(KeyError):
        del buf["huge"]
    with pytest.raises(KeyError):
        buf["huge"]


def test_an_unpicklable_value_stays_in_memory(buf: SpillBuffer) -> None:
    import threading

    buf.put("lock", threading.Lock(), 5 * MB)
    buf["a"] = np.ones(2 * MB // 8)
    assert not buf.on_disk("lock")
    assert "lock" in buf.policy.unspillable
    assert buf["lock"] is not None and "a" in buf


def test_process_memory_past_pause_pauses_and_resumes(buf: SpillBuffer) -> None:
    assert buf.sample(9 * MB) == [Pause()]
    assert buf.sample(5 * MB) == [Resume()]


def test_close_deletes_the_spill_directory(buf: SpillBuffer) -> None:
    buf["huge"] = np.ones(8 * MB // 8)
    d = buf._directory()
    buf.close()
    assert not os.path.exists(d)


def test_deleting_a_spilled_value_does_not_read_it_back(buf: SpillBuffer) -> None:
    buf["huge"] = np.ones(8 * MB // 8)
    del buf["huge"]
    assert buf.read == 0 and "huge" not in buf


def test_a_value_being_spilled_is_always_found(buf: SpillBuffer) -> None:
    import threading

    seen_missing = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if 0 not in buf:
                seen_missing.append(True)

    t = threading.Thread(target=watch)
    buf[0] = np.ones(2 * MB // 8)
    t.start()
    try:
        for i in range(1, 8):
            buf[i] = np.ones(2 * MB // 8)  # 0 goes to disk along the way
    finally:
        stop.set()
        t.join()
    assert buf.on_disk(0) and not seen_missing


def test_a_closed_store_keeps_nothing(buf: SpillBuffer) -> None:
    buf.close()
    buf.put("late", 1, 28)  # a result of a thread of an ended session
    assert "late" not in buf


def test_a_spilled_value_is_handed_out_as_its_file_not_read(buf: SpillBuffer) -> None:
    from shoal.protocol._framing import FileFrame
    from shoal.protocol._serialize import Serialized, loads

    value = np.arange(8 * MB // 8, dtype="f8")
    buf["huge"] = value
    ser, files = buf.streamable("huge")
    assert buf.read < MB  # only the small pickle header came into memory
    big = [f for f in ser.frames if isinstance(f, FileFrame)]
    assert sum(f.nbytes for f in big) == value.nbytes
    del buf["huge"]  # freed while being sent: the open file still reads
    frames = [os.pread(f.file.fileno(), f.nbytes, f.offset) if isinstance(f, FileFrame) else f
              for f in ser.frames]
    for f in files:
        f.close()
    assert np.array_equal(loads(Serialized(frames)), value)
    assert buf.streamable("huge") is None and buf.streamable("unknown") is None
