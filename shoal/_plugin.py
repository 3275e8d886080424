"""Plugins: user code the cluster runs at points of its life (dask's
``distributed.diagnostics.plugin``), and the built-in ones.

Owns: the three base classes (``WorkerPlugin``, ``SchedulerPlugin``, ``NannyPlugin``) with
dask's hook names and signatures, telling which kind a plugin object is (dask's own
plugin classes are recognised by name, so plugins written against dask work unchanged),
and the built-ins ``UploadFile``, ``UploadDirectory``, ``Environ``, ``InstallPlugin``,
``PipInstall`` and ``CondaInstall``.
Must not know about connections: the servers call the hooks.

Where shoal differs: a nanny plugin's ``setup(nanny)`` runs in the worker process on the
nanny's behalf, with a stand-in ``nanny`` whose ``env`` (and ``name``, ``worker_address``,
``local_directory``) it may change; the nanny keeps ``env`` (and what ``setup`` set in
``os.environ``) for every worker process it starts later, and ``restart = True`` restarts
the worker process after ``setup``. Its ``teardown(nanny)`` runs there too (unregistered, or
the nanny closing); when the nanny closes with its worker process gone, the nanny runs it
itself, on the plugin as ``setup`` left it (pickled by the worker process after ``setup``).
``UploadDirectory`` and the installers
(``InstallPlugin``, ``PipInstall``, ``CondaInstall``) are worker plugins.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ClassVar

__all__ = [
    "CondaInstall",
    "Environ",
    "InstallPlugin",
    "NannyPlugin",
    "PipInstall",
    "SchedulerPlugin",
    "UploadDirectory",
    "UploadFile",
    "WorkerPlugin",
    "plugin_kind",
    "plugin_name",
]

UPLOAD_SUFFIXES = (".py", ".zip", ".egg", ".pyz")


class WorkerPlugin:
    """Code run in every worker process: ``setup`` when registered (and on every worker
    that joins or restarts later), ``teardown`` when unregistered or the worker closes,
    ``transition`` when a task on the worker changes state.

    ``setup`` and ``teardown`` may be coroutine functions (awaited on the worker's loop).
    A plugin with ``idempotent = True`` is not registered again under a name already taken.
    """

    idempotent: ClassVar[bool] = False

    def setup(self, worker: Any) -> Awaitable[None] | None:
        """Run when the plugin is added to ``worker``."""

    def teardown(self, worker: Any) -> Awaitable[None] | None:
        """Run when the plugin is removed or the worker closes."""

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        """Task ``key`` went from state ``start`` to ``finish`` on this worker
        (``released`` -> ``waiting`` -> ``executing`` -> ``memory``/``error`` ->
        ``released``)."""


class SchedulerPlugin:
    """Code run in the scheduler process, called on the scheduler's events.

    Hooks shoal calls: ``start(scheduler)`` (when registered, may be async),
    ``before_close()`` (the scheduler closing, may be async), ``close()`` (the scheduler
    closing or the plugin unregistered, may be async), ``update_graph`` (once per graph
    submitted, its tasks in ``scheduler.tasks``), ``restart``, ``transition(key, start,
    finish, *, stimulus_id, **kwargs)``, ``add_worker``, ``remove_worker``, ``add_client``,
    ``remove_client``, ``valid_workers_downscaling`` and ``log_event``, with dask's
    arguments.
    """

    idempotent: ClassVar[bool] = False

    def start(self, scheduler: Any) -> Awaitable[None] | None:
        """Run when the plugin is added to the scheduler."""

    def before_close(self) -> None:
        """Run before the scheduler closes."""

    def close(self) -> Awaitable[None] | None:
        """Run when the scheduler closes or the plugin is removed."""

    def update_graph(self, scheduler: Any, *, client: str, keys: set[Any], tasks: list[Any],
                     annotations: dict[str, Any], priority: dict[Any, Any], stimulus_id: str,
                     **kwargs: Any) -> None:
        """A client submitted ``tasks``, of which it wants ``keys``."""

    def restart(self, scheduler: Any) -> None:
        """The cluster was restarted."""

    def transition(self, key: Any, start: str, finish: str, *args: Any, stimulus_id: str,
                   **kwargs: Any) -> None:
        """Task ``key`` went from ``start`` to ``finish`` on the scheduler."""

    def add_worker(self, scheduler: Any, worker: str) -> Awaitable[None] | None:
        """A worker joined."""

    def remove_worker(self, scheduler: Any, worker: str, *, stimulus_id: str,
                      **kwargs: Any) -> Awaitable[None] | None:
        """A worker left."""

    def add_client(self, scheduler: Any, client: str) -> None:
        """A client connected."""

    def remove_client(self, scheduler: Any, client: str) -> None:
        """A client disconnected."""

    def valid_workers_downscaling(self, scheduler: Any, workers: list[Any]) -> list[Any]:
        """Which of ``workers`` (``WorkerState`` records) may be closed when the cluster
        scales down (``Adaptive.workers_to_close``, ``retire_workers(n=...)``): all of
        them unless overridden."""
        return workers

    def log_event(self, topic: str, msg: Any) -> None:
        """An event was logged under ``topic``."""


class NannyPlugin:
    """Code for the process that starts workers (see the module docstring for how shoal
    runs it): ``setup(nanny)`` may change ``nanny.env``, kept for every worker process
    started later; ``restart = True`` restarts the worker process after ``setup``."""

    idempotent: ClassVar[bool] = False
    restart: ClassVar[bool] = False

    def setup(self, nanny: Any) -> Awaitable[None] | None:
        """Run when the plugin is added."""

    def teardown(self, nanny: Any) -> Awaitable[None] | None:
        """Run when the plugin is removed, or when the nanny closes (in its worker process,
        as ``setup``; in the nanny's, on the plugin as ``setup`` left it, when that
        process is gone)."""


_KINDS = (("WorkerPlugin", "worker"), ("SchedulerPlugin", "scheduler"), ("NannyPlugin", "nanny"))


def plugin_kind(plugin: Any) -> str:
    """``"worker"``, ``"scheduler"`` or ``"nanny"``: which base class ``plugin`` derives
    from (shoal's, or dask's of the same name).

    Raises:
        TypeError: a class instead of an instance, or not derived from a plugin base class.
    """
    if isinstance(plugin, type):
        raise TypeError(f"register_plugin takes a plugin instance, not the class "
                        f"{plugin.__name__}; call it: {plugin.__name__}(...)")
    _refuse_dask_builtin(plugin)
    names = {cls.__name__ for cls in type(plugin).__mro__}
    if "InstallPlugin" in names and getattr(plugin, "restart_workers", False):
        return "nanny"  # as dask's: installed for the nanny, then its worker restarts
    for base, kind in _KINDS:
        if base in names:
            return kind
    raise TypeError(
        f"{type(plugin).__name__} is not a plugin: derive it from shoal's WorkerPlugin, "
        "SchedulerPlugin or NannyPlugin (dask's classes of those names work too)"
    )


_DASK_PLUGINS = "distributed.diagnostics.plugin"

# dask's built-in plugins that call methods of dask's own Scheduler, Worker or Nanny (which
# shoal's servers do not have), and what to use instead. dask's Environ, ForwardOutput and
# ForwardLoggingPlugin use only the public plugin interface and run unchanged.
_DASK_BUILTIN_FIX = {
    "UploadFile": "use shoal.UploadFile (the same arguments) or client.upload_file(path)",
    "UploadDirectory": "use shoal.UploadDirectory (the same arguments)",
    "PipInstall": "use shoal.PipInstall (the same arguments)",
    "CondaInstall": "use shoal.CondaInstall (the same arguments)",
    "InstallPlugin": "use shoal.InstallPlugin (the same arguments)",
    "SchedulerUploadFile": ("shoal has no scheduler upload: a LocalCluster's scheduler imports "
                            "from your process; for a remote scheduler use client.run_on_scheduler "
                            "or `shoal scheduler --preload`"),
}


def _refuse_dask_builtin(plugin: Any) -> None:
    """Raise before anything runs if ``plugin`` is (or derives from) one of dask's built-in
    plugins that drive dask's own servers: on shoal it would fail on the workers, part way."""
    for cls in type(plugin).__mro__:
        fix = _DASK_BUILTIN_FIX.get(cls.__name__)
        if fix is not None and cls.__module__ == _DASK_PLUGINS:
            raise TypeError(
                f"{type(plugin).__name__} is dask's built-in plugin {_DASK_PLUGINS}."
                f"{cls.__name__}, which calls dask's own scheduler and worker internals and "
                f"cannot run on shoal: {fix}"
            )


def plugin_name(plugin: Any, name: str | None) -> str:
    """The name a plugin is registered under: ``name``, else its ``name`` attribute, else
    its class name with a unique suffix (dask's rule)."""
    if name is not None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"a plugin name must be a non-empty string, got {name!r}")
        return name
    own = getattr(plugin, "name", None)
    if isinstance(own, str) and own:
        return own
    return f"{type(plugin).__name__}-{uuid.uuid4()}"


# --- built-ins -----------------------------------------------------------------------------


def read_upload(filepath: str) -> tuple[str, bytes]:
    """The base name and bytes of a ``.py``/``.zip``/``.egg`` file to upload, checked here
    (in the client) so that no worker is ever sent something it cannot load.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a .py, .zip, .egg or .pyz file; or a zip that is not one.
        SyntaxError: a ``.py`` file that does not compile (its message names file and line).
    """
    path = os.fspath(filepath)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"upload_file: no file {path!r} (relative paths start at "
                                f"{os.getcwd()!r})")
    filename = os.path.basename(path)
    if not filename.endswith(UPLOAD_SUFFIXES):
        raise ValueError(f"upload_file takes a .py, .zip, .egg or .pyz file, got {filename!r}")
    with open(path, "rb") as f:
        data = f.read()
    if filename.endswith(".py"):
        compile(data, path, "exec", dont_inherit=True)  # raises SyntaxError naming the line
    elif not zipfile.is_zipfile(io.BytesIO(data)):
        raise ValueError(f"upload_file: {filename!r} is not a zip archive")
    return filename, data


class UploadFile(WorkerPlugin):
    """Send a ``.py``, ``.zip`` or ``.egg`` file to every worker (now and later), into the
    worker's local directory, which is on ``sys.path``; with ``load`` it is imported
    (re-imported when it changed).

    Raises:
        FileNotFoundError, ValueError, SyntaxError: see ``read_upload``.
    """

    name = "upload_file"

    def __init__(self, filepath: str, load: bool = True) -> None:
        self.filename, self.data = read_upload(filepath)
        self.load = load

    def setup(self, worker: Any) -> None:
        worker.upload_file(self.filename, self.data, load=self.load)


_DEFAULT_SKIP_WORDS = (".git", ".github", ".pytest_cache", "tests", "docs")


class UploadDirectory(WorkerPlugin):
    """Send a directory to every worker, unpacked under the worker's local directory (as
    ``<local_directory>/<directory name>``); with ``update_path`` that directory is put on
    ``sys.path``. Files whose path contains one of ``skip_words``, or for which one of the
    ``skip`` predicates is true, are left out. shoal runs it as a worker plugin:
    ``restart_workers`` and ``mode`` are accepted for dask compatibility and ignored.

    Raises:
        FileNotFoundError: ``path`` is not a directory.
    """

    def __init__(self, path: str, restart_workers: bool = False, update_path: bool = False,
                 skip_words: Iterable[str] = _DEFAULT_SKIP_WORDS,
                 skip: Iterable[Callable[[str], bool]] = (lambda fn: fn.endswith(".pyc"),),
                 mode: str = "workers") -> None:
        path = os.path.expanduser(os.fspath(path))
        if not os.path.isdir(path):
            raise FileNotFoundError(f"UploadDirectory: {path!r} is not a directory")
        self.path = path
        self.update_path = update_path
        self.restart_workers = restart_workers
        self.mode = mode
        self.dirname = os.path.basename(os.path.normpath(path))
        self.name = "upload-directory-" + self.dirname
        skip_words = tuple(skip_words)
        skips = tuple(skip)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for root, _dirs, files in os.walk(path):
                for fn in files:
                    full = os.path.join(root, fn)
                    rel = os.path.relpath(full, os.path.dirname(os.path.normpath(path)))
                    if any(w in rel.split(os.sep) for w in skip_words) or any(s(full) for s in skips):
                        continue
                    z.write(full, rel)
        self.data = buf.getvalue()

    def setup(self, worker: Any) -> None:
        import importlib

        base = worker.local_directory
        with zipfile.ZipFile(io.BytesIO(self.data)) as z:
            z.extractall(base)
        target = os.path.join(base, self.dirname)
        if self.update_path and target not in sys.path:
            sys.path.insert(0, target)
        importlib.invalidate_caches()


class Environ(NannyPlugin):
    """Set environment variables in the worker processes, before they start (the worker
    processes are restarted to apply them)."""

    restart = True

    def __init__(self, environ: dict[str, Any] | None = None) -> None:
        self.environ = {str(k): str(v) for k, v in (environ or {}).items()}

    def setup(self, nanny: Any) -> None:
        nanny.env.update(self.environ)


class InstallPlugin(WorkerPlugin):
    """Run ``install_fn()`` in every worker's environment, now and on every worker that
    joins or restarts later (dask's base class of ``PipInstall`` and ``CondaInstall``).
    Workers of one machine take turns (a file lock), so one environment is not changed
    by two installers at once. ``install_fn`` travels to the workers pickled (by value
    when defined in ``__main__``). With ``restart_workers`` it runs as dask's does, once
    per nanny (a nanny plugin, run in the worker process on the nanny's behalf), and the
    worker process is then restarted, so that what was installed is imported afresh; a
    process the nanny starts later does not run it again. Without a nanny
    (``processes=False``) nothing restarts. shoal's runs on the workers only (dask's on the
    scheduler too).

    Raises (in the worker, reported to the caller): what ``install_fn`` raised.
    """

    idempotent = True

    def __init__(self, install_fn: Callable[[], None], restart_workers: bool) -> None:
        if not callable(install_fn):
            raise TypeError(f"InstallPlugin takes a function to run, got {install_fn!r}")
        self.name = f"{type(self).__name__}-{uuid.uuid4()}"  # each instance its own (dask's)
        self.install_fn = install_fn
        self.restart_workers = restart_workers
        self.restart = bool(restart_workers)  # read as a nanny plugin's (see plugin_kind)

    def setup(self, worker: Any = None, nanny: Any = None) -> None:
        """Install: as a worker plugin (``setup(worker=...)``) or, with
        ``restart_workers``, as a nanny plugin (``setup(nanny=...)``)."""
        import fcntl
        import importlib
        import tempfile

        lock_path = os.path.join(tempfile.gettempdir(), "shoal-pip-install.lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            self.install_fn()
        importlib.invalidate_caches()


def _run_installer(what: str, cmd: list[str]) -> None:
    """Run an installer command (10 minutes at most); RuntimeError with its output if it
    fails."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")


class _PipInstaller:
    def __init__(self, packages: list[str], pip_options: list[str]) -> None:
        self.packages, self.pip_options = packages, pip_options

    def __call__(self) -> None:
        _run_installer(f"pip install {' '.join(self.packages)}",
                       [sys.executable, "-m", "pip", "install", "--disable-pip-version-check",
                        *self.pip_options, *self.packages])


class _CondaInstaller:
    def __init__(self, packages: list[str], conda_options: list[str]) -> None:
        self.packages, self.conda_options = packages, conda_options

    def __call__(self) -> None:
        import shutil

        conda = shutil.which("conda") or os.environ.get("CONDA_EXE")
        if not conda:
            raise RuntimeError(
                "CondaInstall found no conda on this worker (neither `conda` on PATH nor "
                "$CONDA_EXE): start the workers in a conda environment, or use PipInstall")
        _run_installer(f"conda install {' '.join(self.packages)}",
                       [conda, "install", "--yes", *self.conda_options, *self.packages])


def _package_list(kind: str, packages: Any) -> list[str]:
    if isinstance(packages, str) or not all(isinstance(p, str) for p in packages):
        raise TypeError(f"{kind} takes a list of package names, got {packages!r}")
    return list(packages)


class PipInstall(InstallPlugin):
    """Install packages with pip in every worker's environment (once per machine at a
    time: workers of one machine take turns). Options in ``pip_options`` (for example
    ``["--no-index", "--find-links", "/wheels"]``) are passed to ``pip install``.
    ``restart_workers`` as in :class:`InstallPlugin`.

    Raises (in the worker, reported to the caller): RuntimeError with pip's output when
    pip fails.
    """

    def __init__(self, packages: list[str], pip_options: list[str] | None = None,
                 restart_workers: bool = False) -> None:
        self.packages = _package_list("PipInstall", packages)
        self.pip_options = list(pip_options or [])
        super().__init__(_PipInstaller(self.packages, self.pip_options), restart_workers)


class CondaInstall(InstallPlugin):
    """Install packages with conda in every worker's environment (``conda install --yes
    [conda_options] packages``, with the ``conda`` on the worker's PATH, else
    ``$CONDA_EXE``; once per machine at a time). ``restart_workers`` as in
    :class:`InstallPlugin`.

    Raises (in the worker, reported to the caller): RuntimeError with conda's output when
    conda fails, or when the worker has no conda.
    """

    def __init__(self, packages: list[str], conda_options: list[str] | None = None,
                 restart_workers: bool = False) -> None:
        self.packages = _package_list("CondaInstall", packages)
        self.conda_options = list(conda_options or [])
        super().__init__(_CondaInstaller(self.packages, self.conda_options), restart_workers)
