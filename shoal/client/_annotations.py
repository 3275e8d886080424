"""The ``dask.annotate`` names shoal does not act on, sent along with a graph so that
scheduler plugins' ``update_graph`` sees every annotation, as dask's does.

Owns: resolving those annotations per key, in dask's order of precedence (a collection's
own per-key annotation over the ``dask.annotate`` block active at submission, whose value
may be a callable of the key), and pickling them for ``GraphAnnotations`` (sent right
before the graph's last ``UpdateGraph``). The names the rows carry already (``ACTED_ON``)
are left out: the scheduler reads those from the rows. Nothing is made when no other name
is used, the common case.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from shoal.protocol._serialize import Serialized, dumps

# Annotations shoal acts on (carried in the task rows and restrictions, or the span's own
# message): never sent again here.
ACTED_ON = frozenset({"retries", "priority", "workers", "resources", "allow_other_workers",
                      "span"})


def other_annotations(keys: Iterable[Any], active: Mapping[str, Any] | None = None,
                      annotated: Mapping[str, Any] | None = None) -> Serialized | None:
    """``{name: {key: value}}`` of the annotations of ``keys`` other than ``ACTED_ON``,
    pickled; None when there are none.

    Args:
        keys: the keys of the tasks sent.
        active: the ``dask.annotate`` block active at submission (``dask.get_annotations()``):
            a value per name, or a callable of the key.
        annotated: a collection's own annotations, ``{name: {key: value}}`` (or a value
            for every key); they take precedence.

    Raises:
        TypeError: an annotation's value cannot be pickled (the message names it).
    """
    names = [n for n in (active or ()) if n not in ACTED_ON]
    own = [n for n in (annotated or ()) if n not in ACTED_ON]
    if not names and not own:
        return None
    keys = list(keys)
    out: dict[str, dict[Any, Any]] = {}
    for name in names:
        value = active[name]  # type: ignore[index]
        out[name] = ({k: value(k) for k in keys} if callable(value)
                     else dict.fromkeys(keys, value))
    for name in own:
        per_key = annotated[name]  # type: ignore[index]
        mine = out.setdefault(name, {})
        if isinstance(per_key, Mapping):
            for k in keys:
                value = per_key.get(k)
                if value is not None:
                    mine[k] = value
        elif callable(per_key):
            mine.update((k, per_key(k)) for k in keys)
        else:
            mine.update(dict.fromkeys(keys, per_key))
    out = {name: per_key for name, per_key in out.items() if per_key}
    if not out:
        return None
    try:
        return dumps(out)
    except TypeError as exc:
        raise TypeError(f"the annotations {sorted(out)} of this computation must be "
                        f"picklable to reach the scheduler (dask's rule): {exc}") from exc
