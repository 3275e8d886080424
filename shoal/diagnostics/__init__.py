"""User-facing diagnostics: ``progress`` bars, ``performance_report`` and ``futures_of``."""

from shoal.diagnostics._futures_of import futures_of
from shoal.diagnostics._progress import progress
from shoal.diagnostics._report import performance_report

__all__ = ["futures_of", "performance_report", "progress"]
