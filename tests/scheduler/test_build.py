"""The scheduler's state machine as either build runs it: pure Python (the default) or
compiled with mypyc (``SHOAL_MYPYC=1 pip install .``; make test runs this directory against
that build too). These tests hold in both."""

from __future__ import annotations

import inspect

from _compiled import expected, listed_modules

import shoal.scheduler
from shoal.scheduler._state import SchedulerState
from shoal.scheduler._state_base import StateBase


def test_the_scheduler_reports_which_build_runs() -> None:
    assert shoal.scheduler.compiled() is expected()
    assert shoal.scheduler.build() == ("compiled (mypyc)" if expected() else "pure Python")


def test_every_module_the_state_machine_is_built_from_is_in_the_compiled_list() -> None:
    # A mixin added to SchedulerState and not to pyproject's list would stay interpreted
    # (and a compiled class cannot derive from an interpreted one: the build would fail).
    parts = {cls.__module__ for cls in SchedulerState.__mro__ if cls is not object}
    assert parts <= set(listed_modules()), parts - set(listed_modules())


def test_every_method_the_state_base_declares_is_defined_by_one_of_the_parts() -> None:
    # StateBase's declarations have empty bodies (they are there for mypy and mypyc):
    # one left undefined would return None in pure Python instead of failing.
    declared = [name for name, value in vars(StateBase).items()
                if not name.startswith("__") and (inspect.isroutine(value)
                                                  or isinstance(value, staticmethod))]
    assert "_go" in declared and "story" in declared
    for name in declared:
        owner = next(cls for cls in SchedulerState.__mro__ if name in vars(cls))
        assert owner is not StateBase, f"{name} is declared on StateBase but defined nowhere"
