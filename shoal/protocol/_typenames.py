"""A result's type on the wire: its name, as dask's ``typename`` spells it (``"int"``,
``"numpy.ndarray"``, ``"mypackage.Point"``), and that name back to the class for
``Future.type`` in the client.

The name travels instead of the pickled class (dask sends both): a string per task is what
the scheduler shows anyway, and the client imports the class only if someone asks. A class
nested in another one is found in its module by searching the classes there. One the
client cannot find by name (defined inside a function, or in a module the client's process
cannot import) gives None here (``Future.type`` then looks at an inline result), as
dask's ``Future.type`` is None when it cannot load the class.
"""

from __future__ import annotations

import builtins
import functools
import importlib
import logging
import sys
import types

logger = logging.getLogger("shoal.protocol")


def type_name(cls: type) -> str:
    """dask's ``typename(cls)``: ``"<module>.<name>"``, or just the name for builtins."""
    module = cls.__module__
    if not module or module == "builtins":
        return cls.__name__
    return f"{module}.{cls.__name__}"


def resolve(name: str) -> type | None:
    """The class ``type_name`` named, or None if there is none by that name here."""
    if not name:
        return None
    module_name, _, attr = name.rpartition(".")
    if not module_name:  # a builtin: int, or NoneType (in ``types``, not ``builtins``)
        return _builtin_types().get(name)
    module = sys.modules.get(module_name)
    if module is None:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # the worker's module is not importable here: no class
            logger.debug("no class for result type %r: importing %r failed: %r", name,
                         module_name, exc)
            return None
    cls = getattr(module, attr, None)
    if isinstance(cls, type) and type_name(cls) == name:
        return cls
    return _nested(module, module_name, attr)


def _nested(module: types.ModuleType, module_name: str, attr: str) -> type | None:
    """A class named ``attr`` nested in a class of ``module`` (``Outer.Inner``: dask's
    typename says ``module.Inner``), searched two levels deep; None if none or several."""
    found: list[type] = []
    outer = [c for c in vars(module).values()
             if isinstance(c, type) and c.__module__ == module_name]
    for level in range(2):  # Outer.Inner, Outer.Middle.Inner
        inner = []
        for c in outer:
            for value in vars(c).values():
                if isinstance(value, type) and value.__module__ == module_name:
                    if value.__name__ == attr and value not in found:
                        found.append(value)
                    inner.append(value)
        outer = inner
        if found or level == 1:
            break
    return found[0] if len(found) == 1 else None


@functools.cache
def _builtin_types() -> dict[str, type]:
    found = (*vars(builtins).values(), *vars(types).values())
    return {t.__name__: t for t in found if isinstance(t, type) and t.__module__ == "builtins"}
