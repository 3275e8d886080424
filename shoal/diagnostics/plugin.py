"""dask's ``distributed.diagnostics.plugin`` import path: the plugin base classes and the
built-in plugins (``from shoal.diagnostics.plugin import WorkerPlugin``)."""

from shoal._plugin import (
    CondaInstall,
    Environ,
    InstallPlugin,
    NannyPlugin,
    PipInstall,
    SchedulerPlugin,
    UploadDirectory,
    UploadFile,
    WorkerPlugin,
)

__all__ = ["CondaInstall", "Environ", "InstallPlugin", "NannyPlugin", "PipInstall",
           "SchedulerPlugin", "UploadDirectory", "UploadFile", "WorkerPlugin"]
