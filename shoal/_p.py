"""Short names for what every task payload refers to: pickles name a function by its
module and name, once per payload, so these two references cost about 15 bytes instead of
about 60 — per task, on the wire and in the scheduler's copy of every held task.

Nothing else belongs here; both are thin forwarders (``C`` builds a ``Call``, ``F`` looks
up a function sent through the function table).
"""

from __future__ import annotations

from typing import Any

from shoal.protocol._call import Call


def C(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
    return Call(func, args, kwargs)


# shoal.protocol._serialize._function, bound on the first call (that module imports this
# one): an import statement per task cost a worker more than the lookup itself.
_lookup: Any = None


def F(fid: str) -> Any:
    lookup = _lookup
    if lookup is None:
        lookup = _bind()
    return lookup(fid)


def _bind() -> Any:
    global _lookup
    from shoal.protocol._serialize import _function

    _lookup = _function
    return _function
