"""Cheaper construction of frozen dataclasses, for the types built on hot paths.

The ``__init__`` that :mod:`dataclasses` writes for a frozen class sets each field
with ``object.__setattr__(self, name, value)``, to get past the class's own
``__setattr__``, which raises: a call through ``object.__setattr__`` per field, which
makes a frozen class several times dearer to build than the same class unfrozen; the
store builds one :class:`~astra.store.KeyValue` per key it returns, and the scheduler
a few records per replica it places. (The compares and ops that a
transaction's caller builds per key are cheaper still: see ``astra.store._types``.)

:func:`quick_init` gives a frozen, slotted dataclass an ``__init__`` that sets the
slots through their descriptors instead (``member_descriptor.__set__``, which the
frozen ``__setattr__`` does not intercept), a fraction of that cost: the same
signature, defaults, ``__post_init__`` call and resulting object. The class stays
frozen for everything else.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
from typing import Any, TypeVar

T = TypeVar("T", bound=type)


class _Factory:
    """The default of a parameter whose field has a ``default_factory``."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()


def quick_init(cls: T) -> T:
    """Class decorator, applied above ``@dataclass(frozen=True, slots=True)``.

    Raises:
        TypeError: ``cls`` is not a frozen dataclass with slots, or its ``__init__``
            takes something else than its fields (``InitVar``, ``init=False``).
    """
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} is not a frozen dataclass with slots")
    fields = dataclasses.fields(cls)
    if list(inspect.signature(cls).parameters) != [field.name for field in fields]:
        raise TypeError(f"{cls.__name__}: __init__ must take its fields, and only them")
    namespace: dict[str, Any] = {"_FACTORY": _FACTORY}
    positional: list[str] = []
    keyword: list[str] = []
    body: list[str] = []
    for field in fields:
        name = field.name
        descriptor = cls.__dict__.get(name)
        if not isinstance(descriptor, types.MemberDescriptorType):
            raise TypeError(f"{cls.__name__}.{name} is not a slot")
        namespace[f"_set_{name}"] = descriptor.__set__
        value = name
        if field.default is not dataclasses.MISSING:
            namespace[f"_default_{name}"] = field.default
            parameter = f"{name}=_default_{name}"
        elif field.default_factory is not dataclasses.MISSING:
            namespace[f"_factory_{name}"] = field.default_factory
            parameter = f"{name}=_FACTORY"
            value = f"_factory_{name}() if {name} is _FACTORY else {name}"
        else:
            parameter = name
        (keyword if field.kw_only else positional).append(parameter)
        body.append(f"    _set_{name}(self, {value})")
    if hasattr(cls, "__post_init__"):
        body.append("    self.__post_init__()")
    signature = ", ".join(["self", *positional, *(["*", *keyword] if keyword else [])])
    exec(f"def __init__({signature}):\n" + "\n".join(body or ["    pass"]), namespace)
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__annotations__ = {
        **{field.name: field.type for field in fields},
        "return": None,
    }
    cls.__init__ = init  # type: ignore[misc]  # an __init__ written at run time
    return cls


__all__ = ["quick_init"]
