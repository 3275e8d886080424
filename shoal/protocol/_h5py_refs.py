"""Send read-only h5py objects by reference: (file name, object name), reopened on load.

h5py objects wrap open HDF5 handles and refuse to pickle, yet `da.from_array(dset)` puts the
dataset itself into every task of the graph. A dataset read by many tasks is the same file on
every worker of a local cluster (or a shared filesystem), so we pickle the path and the object's
name and reopen the file, read-only, in the process that unpickles it. Each process keeps one
open handle per file and reuses it for every chunk.

A file open for writing is refused at pickle time: a reader that reopens it elsewhere would see
a half-written file, and HDF5 does not support concurrent writers. This module knows nothing
about workers or the wire format; it only teaches `pickle` (and therefore cloudpickle, which
consults the same `copyreg` table) how to reduce these three types.
"""

from __future__ import annotations

import copyreg
import os
import threading
from typing import Any

_open_files: dict[str, Any] = {}
_open_files_pid = os.getpid()
_lock = threading.Lock()


class WritableH5pyError(TypeError):
    """An h5py object from a file open for writing was about to be sent to another process."""


def install() -> None:
    """Register pickle reducers for `h5py.File`, `h5py.Group` and `h5py.Dataset`.

    Read-mode objects are pickled as (absolute file name, object name) and reopened read-only
    when unpickled, with one cached handle per file per process. Pickling an object from a file
    opened for writing raises `TypeError`. Safe to call more than once; does nothing when h5py
    is not installed.
    """
    try:
        import h5py
    except ImportError:
        return
    copyreg.pickle(h5py.File, _reduce_file)
    copyreg.pickle(h5py.Group, _reduce_object)
    copyreg.pickle(h5py.Dataset, _reduce_object)


def open_file(filename: str) -> Any:
    """Return this process's read-only handle on `filename`, opening it if needed.

    A handle closed by user code, or inherited from a parent process through `fork`, is
    replaced by a fresh one.
    """
    import h5py

    global _open_files_pid
    with _lock:
        if _open_files_pid != os.getpid():
            # HDF5 handles do not survive fork; forget (but do not close) the parent's.
            _open_files.clear()
            _open_files_pid = os.getpid()
        handle = _open_files.get(filename)
        if handle is None or not handle.id.valid:
            handle = h5py.File(filename, mode="r")
            _open_files[filename] = handle
        return handle


def _load_file(filename: str) -> Any:
    return open_file(filename)


def _load_object(filename: str, name: str) -> Any:
    return open_file(filename)[name]


def _reduce_file(handle: Any) -> tuple[Any, tuple[str]]:
    return _load_file, (_readable_path(handle, "file"),)


def _reduce_object(obj: Any) -> tuple[Any, tuple[str, str]]:
    kind = type(obj).__name__.lower()
    path = _readable_path(obj, kind)
    if obj.name is None:
        raise TypeError(
            f"cannot send an anonymous h5py {kind} from {path!r} by reference: it has no name "
            "in the file. Link it into the file (group['name'] = obj) before sending it."
        )
    return _load_object, (path, obj.name)


def _readable_path(obj: Any, kind: str) -> str:
    """The absolute path of the file holding `obj`, or a TypeError saying why it can't be sent."""
    if not obj.id.valid:
        raise TypeError(
            f"cannot send a closed h5py {kind}: its file was closed before pickling. "
            "Keep the file open (h5py.File(path, mode='r')) until the computation is submitted."
        )
    handle = obj.file
    path = os.path.abspath(handle.filename)
    if handle.mode != "r":
        raise WritableH5pyError(
            f"cannot send h5py {kind} {obj.name!r} of {path!r} to other processes: the file is "
            f"open for writing (mode {handle.mode!r}), and another process reading it while "
            "you write would see a half-written file. To read it on the cluster, open it "
            f"with h5py.File({path!r}, mode='r'). To write results into it, write from this "
            "process: da.store(x, dset, lock=True, scheduler='threads')."
        )
    if not os.path.isfile(path):
        raise TypeError(
            f"cannot send h5py {kind} {obj.name!r} by reference: {path!r} is not a file on disk "
            f"(driver {handle.driver!r}). Other processes can only reopen files on disk; load "
            "the data with dset[...] and send the numpy array instead."
        )
    return path
