"""What the scheduler's reports of finished keys say of the client's futures: ``KeyDone``
and the rows of ``KeysDone`` recorded on their ``FutureState`` (size, type name, a value
sent inline), then the waiters settled. Read on the client's loop (``Client._on_message``).
"""

from __future__ import annotations

import sys
from typing import Any

from shoal.client._future import FutureState, SentTypeName
from shoal.protocol._serialize import Serialized


def finished(st: FutureState, nbytes: int, typename: str, inline: Serialized | None,
             pickled_type: bytes | None = None) -> None:
    """The scheduler says ``st``'s key is in memory (``KeyDone``, or a row of ``KeysDone``)."""
    record_result(st, nbytes, typename, inline, pickled_type)
    st.settle("finished")


def record_result(st: FutureState, nbytes: int, typename: str, inline: Serialized | None,
                  pickled_type: bytes | None = None) -> None:
    """What ``KeyDone`` says of ``st``'s key, but its settling."""
    # Sent again without the value (the key wanted again, its placement changed): the
    # value already delivered inline stays.
    if inline is not None:
        st.keep_inline(inline)
    elif st.status != "finished":
        st.inline = None
    st.nbytes = nbytes
    if pickled_type is not None:
        st.typename = SentTypeName(typename, pickled_type)
    elif type(st.typename) is not SentTypeName or st.typename != typename:
        st.typename = sys.intern(typename)  # one copy per type


def finished_many(states: dict[Any, FutureState], msg: Any) -> None:
    """The rows of a ``KeysDone``, each as its own ``KeyDone`` (settled together)."""
    done = []
    for key, nbytes, typename, inline, pickled_type in zip(
        msg.keys, msg.nbytes, msg.typenames, msg.inlines, msg.pickled_types, strict=True,
    ):
        st = states.get(key)
        if st is not None:
            record_result(st, nbytes, typename, inline, pickled_type)
            done.append(st)
    FutureState.settle_all(done, "finished")
