"""A faster ``__init__`` for the frozen, slotted dataclasses built on every request.

A frozen dataclass sets each field with ``object.__setattr__(self, "name", value)``,
which costs about half a microsecond a field on a slow machine: ``Result``,
``Attempt``, ``LedgerRow`` and ``ProviderRequest`` alone made up a third of the
router's in-process overhead. ``fast_init`` replaces the generated ``__init__`` with
one of the same signature that stores through the slot descriptors directly (about
3x faster); instances stay frozen (assignment still raises ``FrozenInstanceError``).
Where CPython allows it (the usual case), the new instance is briefly switched to a
non-frozen twin class with the same slots, so its fields are plain attribute stores:
a 15-field ``Result`` builds about 2x faster again. Only from 7 fields up (below, the
two checked ``__class__`` switches cost more); a subclass's instances use the descriptors.

Classes it cannot reproduce exactly (``__post_init__``, ``init=False`` or keyword-only
fields, ``InitVar``) are returned unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_FACTORY = object()  # default of a field built by its default_factory
_TWIN_MIN_FIELDS = 7


def _fields(cls: type) -> tuple[dataclasses.Field[Any], ...] | None:
    """The fields of a frozen, slotted dataclass whose ``__init__`` can be reproduced exactly;
    ``None`` for anything else (``__post_init__``, ``InitVar``/``ClassVar`` pseudo-fields,
    ``init=False`` or keyword-only fields)."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or cls.__dict__.get("__slots__") is None or hasattr(cls, "__post_init__"):
        return None
    fields = dataclasses.fields(cls)
    if len(fields) != len(cls.__dataclass_fields__) or any(not f.init or f.kw_only for f in fields):  # type: ignore[attr-defined]
        return None
    return fields


def _parameters(fields: tuple[dataclasses.Field[Any], ...], ns: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The parameter list of ``__init__`` (same defaults) and the lines that build the fields with a
    ``default_factory``; their defaults go into ``ns``."""
    args: list[str] = []
    prelude: list[str] = []
    for f in fields:
        name = f.name
        if f.default is not dataclasses.MISSING:
            ns[f"_dflt_{name}"] = f.default
            args.append(f"{name}=_dflt_{name}")
        elif f.default_factory is not dataclasses.MISSING:
            ns[f"_fact_{name}"] = f.default_factory
            args.append(f"{name}=_FACTORY")
            prelude.append(f"    if {name} is _FACTORY:\n        {name} = _fact_{name}()")
        else:
            args.append(name)
    return args, prelude


def fast_init(cls: type[T]) -> type[T]:
    """Give the frozen, slotted dataclass ``cls`` an equivalent, faster ``__init__``."""
    fields = _fields(cls)
    if fields is None:
        return cls  # keep the original
    # switching classes costs two checked ``__class__`` assignments: worth it from 7 fields up
    twin = _twin(cls) if len(fields) >= _TWIN_MIN_FIELDS else None
    ns: dict[str, Any] = {"_FACTORY": _FACTORY, "_cls": cls, "_twin": twin, "_setattr": object.__setattr__}
    args, prelude = _parameters(fields, ns)
    direct: list[str] = []
    via_twin: list[str] = []
    for f in fields:
        ns[f"_set_{f.name}"] = cls.__dict__[f.name].__set__
        direct.append(f"        _set_{f.name}(self, {f.name})")
        via_twin.append(f"        self.{f.name} = {f.name}")
    if twin is not None and fields:
        # the instance is a `twin` (same slots, not frozen) while its fields are stored:
        # plain attribute stores, then it becomes a `cls` again. A subclass takes the slow way.
        body = [
            *prelude,
            "    if self.__class__ is _cls:",
            "        _setattr(self, '__class__', _twin)",
            *via_twin,
            "        self.__class__ = _cls",
            "    else:",
            *direct,
        ]
    else:
        body = [*prelude, "    if True:", *(direct or ["        pass"])]
    source = f"def __init__(self, {', '.join(args)}):\n" + "\n".join(body) + "\n"
    exec(source, ns)  # the same technique dataclasses itself uses to build __init__
    init = ns["__init__"]
    original = cls.__dict__["__init__"]
    init.__qualname__ = original.__qualname__
    init.__module__ = original.__module__
    init.__annotations__ = dict(original.__annotations__)
    init.__doc__ = original.__doc__
    type.__setattr__(cls, "__init__", init)
    return cls


def maker(cls: type[T]) -> Callable[..., T]:
    """A factory taking the fields of the frozen, slotted dataclass ``cls`` positionally, in
    field order (with the same defaults), for the few objects built on every request.

    It builds the instance as its non-frozen twin and switches it to ``cls`` once, where
    ``fast_init``'s ``__init__`` (called on an instance ``type.__call__`` already made a
    ``cls``) switches twice: about 0.5 µs less per object on a slow machine. The result
    is an ordinary ``cls`` instance (frozen, equal, picklable). A class that cannot have a
    twin, or that ``fast_init`` leaves alone, gets ``cls`` itself. One factory (and one twin
    class) per class, however many modules ask."""
    made = _makers.get(cls)
    if made is None:
        made = _makers[cls] = _make(cls)
    return made


_makers: dict[type, Callable[..., Any]] = {}


def _make(cls: type[T]) -> Callable[..., T]:
    fields = _fields(cls)
    twin = _twin(cls) if fields else None
    if not fields or twin is None:
        return cls
    ns: dict[str, Any] = {"_new": object.__new__, "_twin": twin, "_cls": cls, "_FACTORY": _FACTORY}
    args, prelude = _parameters(fields, ns)  # defaults as in __init__: a field added at the end keeps callers working
    body = [*prelude, "    o = _new(_twin)", *(f"    o.{f.name} = {f.name}" for f in fields)]
    source = f"def make({', '.join(args)}):\n" + "\n".join(body) + "\n    o.__class__ = _cls\n    return o\n"
    exec(source, ns)  # as fast_init (and dataclasses) build __init__
    make: Callable[..., T] = ns["make"]
    make.__qualname__ = make.__name__ = f"make_{cls.__name__}"
    return make


def _twin(cls: type) -> type | None:
    """A non-frozen class with ``cls``'s bases and slots, whose instances may switch
    ``__class__`` with ``cls``'s (CPython checks the layouts match); ``None`` if they may not."""
    try:
        twin = type(f"_{cls.__name__}Init", cls.__bases__, {"__slots__": cls.__dict__["__slots__"]})
        probe: Any = object.__new__(cls)
        object.__setattr__(probe, "__class__", twin)
        probe.__class__ = cls
    except TypeError:
        return None
    return twin
