"""Coordination primitives on the scheduler: a pure machine (``_state``) and the shell that
wires it to the client connections (``_shell``). See docs/architecture.md."""

from shoal.scheduler.coordination._state import CoordinationState

__all__ = ["CoordinationState"]
