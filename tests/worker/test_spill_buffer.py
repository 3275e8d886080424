"""The worker's data store under a memory limit: values spilled to files and read back."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from shoal.worker._memory import MemoryLimits, Pause, Resume
from shoal.worker._spill import (
    SpillBuffer,
    open_frames,
    read_frames,
    spill_compression,
    write_frames,
)

MB = 1_000_000


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


# --- compression (dask's distributed.worker.memory.spill-compression) --------------------------

# These need the lz4 package (in the dev extra).


def _spilled(tmp_path: Path, value: object, compression: str | None) -> tuple[object, int]:
    """``value`` spilled by a store with ``compression`` and read back; and its file's size."""
    b = SpillBuffer(str(tmp_path), MemoryLimits.from_fractions(10 * MB), compression)
    b["v"] = value
    for i in range(4):  # past the target (6 MB): the least recently used, "v", goes to disk
        b[i] = np.full(2 * MB // 8, i, dtype="f8")
    assert b.on_disk("v")
    (path,) = [p for k, p in b._files.items() if k == "v"]
    size = os.path.getsize(path)
    assert b.written >= size  # bytes as on disk
    back = b["v"]
    b.close()
    return back, size


def test_compressible_values_take_less_disk_and_read_back_writable(tmp_path: Path) -> None:
    value = np.zeros(MB // 8, dtype="f8")
    value[::7] = 3.0
    back, size = _spilled(tmp_path / "on", value, "lz4")
    assert isinstance(back, np.ndarray) and back.flags.writeable
    assert np.array_equal(back, value)
    back[0] = 1.0  # writable in place
    _, raw_size = _spilled(tmp_path / "off", value, None)
    assert size < raw_size // 4 and raw_size > value.nbytes


def test_incompressible_values_are_stored_raw_and_read_back(tmp_path: Path) -> None:
    value = np.random.default_rng(0).random(MB // 8)
    back, size = _spilled(tmp_path, value, "lz4")
    assert isinstance(back, np.ndarray) and back.flags.writeable
    assert np.array_equal(back, value)
    assert size > value.nbytes  # raw frame (plus the pickle header)


def test_compression_off_in_the_config_writes_raw_frames(tmp_path: Path) -> None:
    import dask

    from shoal.worker._server import Worker

    with dask.config.set({"distributed.worker.memory.spill-compression": False}):
        store = Worker("tcp://127.0.0.1:1", memory_limit=10 * MB)._data_store()
    assert isinstance(store, SpillBuffer) and store.compression is None
    with dask.config.set({"distributed.worker.memory.spill-compression": "auto"}):
        store = Worker("tcp://127.0.0.1:1", memory_limit=10 * MB)._data_store()
    assert isinstance(store, SpillBuffer) and store.compression == "lz4"
    path = str(tmp_path / "f")
    frames = [b"head", memoryview(np.zeros(MB // 8))]
    assert write_frames(path, frames, None) >= MB  # raw
    assert [bytes(f) for f in read_frames(path)] == [bytes(f) for f in frames]


def test_a_compressed_spilled_value_reaches_peers_as_plain_frames(tmp_path: Path) -> None:
    from shoal.protocol._framing import FileFrame

    path = str(tmp_path / "f")
    noise = np.random.default_rng(1).random(MB // 8)
    frames = [b"head" * 2000, memoryview(np.zeros(MB // 8)), memoryview(noise)]
    assert write_frames(path, frames, "lz4") < 2 * MB  # the zeros were compressed
    got, f = open_frames(path, 1024)
    try:
        plain = [os.pread(x.file.fileno(), x.nbytes, x.offset) if type(x) is FileFrame else x
                 for x in got]
        assert type(got[1]) is not FileFrame  # compressed: decompressed, never streamed
        assert type(got[2]) is FileFrame  # raw and big: streamed from the file
    finally:
        f.close()
    assert [bytes(x) for x in plain] == [bytes(x) for x in frames]


def test_explicit_lz4_without_the_package_says_how_to_install_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "lz4.frame", None)  # import lz4.frame raises
    with pytest.raises(ValueError, match="pip install lz4"):
        spill_compression("lz4")
    assert spill_compression("auto") is None  # auto: quietly off
    assert spill_compression(False) is None and spill_compression(None) is None
    with pytest.raises(ValueError, match="not supported"):
        spill_compression("zstd")


def test_a_value_over_64_mib_stays_raw_to_be_streamed_to_peers(tmp_path: Path) -> None:
    from shoal.protocol._framing import FileFrame

    path = str(tmp_path / "f")
    zeros = np.zeros(70 * 1024 * 1024 // 8)  # compressible, but too big to decompress whole
    assert write_frames(path, [b"head", memoryview(zeros)], "lz4") > zeros.nbytes
    got, f = open_frames(path, 1024)
    f.close()
    assert type(got[1]) is FileFrame


def test_a_compressed_frame_of_many_pieces_reads_back_exactly(tmp_path: Path) -> None:
    """Compressed frames are stored as lz4 blocks of 1 MiB; one of 3.5 MiB with different
    content per piece (and a short last piece) comes back byte for byte, writable."""
    path = str(tmp_path / "f")
    value = np.repeat(np.arange(7, dtype="u1"), 512 * 1024)  # 3.5 MiB, a run per half MiB
    assert write_frames(path, [b"head", memoryview(value)], "lz4") < value.nbytes // 10
    head, back = read_frames(path)
    assert bytes(head) == b"head"
    assert bytes(back) == value.tobytes()
    memoryview(back)[0] = 1  # writable in place
    got, f = open_frames(path, 1024)
    f.close()
    assert bytes(got[1]) == value.tobytes()


def test_a_corrupt_compressed_frame_is_reported_as_such(tmp_path: Path) -> None:
    path = str(tmp_path / "f")
    value = np.zeros(3 * MB // 8)
    write_frames(path, [b"head", memoryview(value)], "lz4")
    with open(path, "r+b") as f:
        f.seek(-8, os.SEEK_END)
        f.write(b"\xff" * 8)
    with pytest.raises(OSError, match="corrupt"):
        read_frames(path)


def test_past_max_spill_values_stay_in_memory(tmp_path: Path) -> None:
    limits = MemoryLimits.from_fractions(10 * MB, max_spill=5 * MB)  # target 6 MB
    buf = SpillBuffer(str(tmp_path), limits)
    try:
        for i in range(6):
            buf[i] = np.full(2 * MB // 8, i, dtype="f8")
        # Two 2 MB values fit in 5 MB of files; the rest stays in memory, still readable.
        assert [buf.on_disk(i) for i in range(6)] == [True, True] + [False] * 4
        assert buf.policy.disk_bytes == buf.written <= 5 * MB
        assert sum(os.path.getsize(p) for p in buf._files.values()) == buf.written
        assert buf.managed_in_memory == 8 * MB
        assert all(buf[i][0] == i for i in range(6))
        del buf[0]  # room on disk again: the next value past the target is spilled
        buf[6] = np.full(2 * MB // 8, 6, dtype="f8")
        assert buf.policy.disk_bytes <= 5 * MB and sum(map(buf.on_disk, buf)) == 2
        buf.policy.validate()
    finally:
        buf.close()


def test_a_worker_reads_max_spill_from_dasks_config() -> None:
    import dask

    from shoal.worker._server import Worker

    store = Worker("tcp://127.0.0.1:1", memory_limit=10 * MB)._data_store()
    assert isinstance(store, SpillBuffer) and store.policy.limits.max_spill is None  # False
    with dask.config.set({"distributed.worker.memory.max-spill": "3MB"}):
        store = Worker("tcp://127.0.0.1:1", memory_limit=10 * MB)._data_store()
    assert isinstance(store, SpillBuffer) and store.policy.limits.max_spill == 3 * MB
    w = Worker("tcp://127.0.0.1:1", memory_limit=10 * MB)
    w._max_spill_setting = "false"  # as its nanny passes it: wins over the config
    with dask.config.set({"distributed.worker.memory.max-spill": "3MB"}):
        store = w._data_store()
    assert isinstance(store, SpillBuffer) and store.policy.limits.max_spill is None


def test_spilled_bytes_on_disk_are_the_files_sizes_not_the_values(tmp_path: Path) -> None:
    # dask's metrics["spilled_bytes"]: "memory" is the values' size, "disk" their files'.
    b = SpillBuffer(str(tmp_path), MemoryLimits.from_fractions(10 * MB), "lz4")
    for i in range(4):  # compressible: far smaller on disk than in memory
        b[i] = np.zeros(2 * MB // 8, dtype="f8")
    on_disk = [k for k in range(4) if b.on_disk(k)]
    assert on_disk
    files = sum(os.path.getsize(p) for p in b._files.values())
    assert b.spilled_disk_bytes == files
    assert b.spilled_bytes == 2 * MB * len(on_disk) > 4 * files
    del b[on_disk[0]]
    assert b.spilled_disk_bytes == sum(os.path.getsize(p) for p in b._files.values())
    b.close()
