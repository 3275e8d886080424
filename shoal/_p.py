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


def F(fid: str) -> Any:
    from shoal.protocol._serialize import _function

    return _function(fid)
