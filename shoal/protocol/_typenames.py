"""A result's type on the wire: its name, as dask's ``typename`` spells it (``"int"``,
``"numpy.ndarray"``, ``"mypackage.Point"``), and that name back to the class for
``Future.type`` in the client.

The name travels instead of the pickled class (dask sends both): a string per task is what
the scheduler shows anyway, and the client imports the class only if someone asks. A class
nested in another one is found in its module by searching the classes there. One the
client cannot find by name (defined inside a function, or in a module the client's process
cannot import) gives None here: for those, the worker sends the class itself, pickled
(``pickled_class``), with a result that does not ride along inline, and ``Future.type``
loads it (``load_class``), as dask's worker sends every result's pickled type. A class that
cannot be pickled (``_thread.lock``) stays None, as dask's ``Future.type`` is then.
"""

from __future__ import annotations

import builtins
import functools
import importlib
import logging
import sys
import types
import weakref

import cloudpickle

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
    return _in_module(module, module_name, attr)


def _in_module(module: types.ModuleType, module_name: str, attr: str) -> type | None:
    cls = getattr(module, attr, None)
    if isinstance(cls, type) and cls.__module__ == module_name and cls.__name__ == attr:
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


_IMMUTABLE_TYPE = 1 << 8  # Py_TPFLAGS_IMMUTABLETYPE: built-in and extension types, not classes
_PICKLED: weakref.WeakKeyDictionary[type, bytes | None] = weakref.WeakKeyDictionary()


def pickled_class(cls: type) -> bytes | None:
    """``cls`` pickled for a client that cannot find it by its ``type_name`` (a class defined
    inside a function, or in the worker's ``__main__``); None if the name finds it here, or
    if it cannot be pickled. Once per class: a worker returns many results of one class."""
    try:
        return _PICKLED[cls]
    except KeyError:
        pass
    except TypeError:  # not weak-referenceable: not cached
        return _pickle_unless_named(cls)
    blob = _PICKLED[cls] = _pickle_unless_named(cls)
    return blob


def _pickle_unless_named(cls: type) -> bytes | None:
    module_name = cls.__module__
    if not module_name or module_name == "builtins":
        return None
    if cls.__flags__ & _IMMUTABLE_TYPE:
        # A type of C code (``_thread.lock``: not ``_thread``'s attribute) pickles only as
        # an empty look-alike that does not load (dask's Future.type is None for it)
        return None
    module = sys.modules.get(module_name)  # (not imported: a class shipped by value)
    if module is not None and _in_module(module, module_name, cls.__name__) is cls:
        return None
    try:
        return cloudpickle.dumps(cls)
    except Exception as exc:  # no class for the client, as dask's when it cannot pickle it
        logger.debug("result type %r is not sent: it does not pickle: %r", cls, exc)
        return None


def load_class(blob: bytes) -> type | None:
    """The class ``pickled_class`` sent, or None if it does not load here."""
    try:
        cls = cloudpickle.loads(blob)
    except Exception as exc:  # a module the client lacks: no class, as dask's
        logger.debug("result type does not load here: %r", exc)
        return None
    return cls if isinstance(cls, type) else None
