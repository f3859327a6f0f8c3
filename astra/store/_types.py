"""Values exchanged with a store: keys, compares, operations and results.

Keys are non-empty ``str`` (UTF-8 on the wire), values are ``bytes``. Revisions are
the store-wide, strictly increasing counter of etcd: every write transaction that
changes something creates exactly one new revision.

These are built for every key a transaction touches: the compares and ops a caller
builds are plain slotted classes (:class:`_Value`), the results :func:`quick_init`
dataclasses.
"""

from __future__ import annotations

import enum
import inspect
import operator
import types
from collections.abc import Callable
from dataclasses import FrozenInstanceError, dataclass, field
from typing import Any, ClassVar

from astra._frozen import quick_init

#: etcd's default ``--max-txn-ops``: operations per transaction branch.
MAX_TXN_OPS = 128
#: etcd's default ``--max-request-bytes`` (1.5 MiB): the size of one request.
MAX_REQUEST_BYTES = 1572864


@quick_init
@dataclass(frozen=True, slots=True)
class KeyValue:
    """One key at one revision, as etcd reports it."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0


class CompareTarget(enum.Enum):
    """What a :class:`Compare` looks at."""

    MOD = "mod_revision"
    CREATE = "create_revision"
    VERSION = "version"
    VALUE = "value"


class CompareOp(enum.Enum):
    """How a :class:`Compare` compares."""

    EQUAL = "=="
    NOT_EQUAL = "!="
    LESS = "<"
    GREATER = ">"


# Enum members are properties of their class in Python 3.11 (over 100 ns a read): the
# constructors of compares, built for every key of a transaction, read them from here.
_MOD, _CREATE, _VERSION, _VALUE = CompareTarget
_EQUAL, _NOT_EQUAL, _LESS, _GREATER = CompareOp


class _Value:
    """Base of the values built for every key of a transaction (compares and ops): frozen,
    compared, hashed and shown by value like a frozen dataclass.

    A frozen dataclass's ``__init__`` cannot assign its slots directly (its ``__setattr__``
    raises), and setting them around it costs a descriptor call a field. A subclass
    instead keeps its fields in private slots (``_key`` for ``key``), which its plain
    ``__init__`` assigns directly, and shows each as a read-only property. Code of this
    package on a per-key path reads the private slots, which skips the property call.
    """

    __slots__ = ()
    #: The public field names, in order: the class's annotations (each has a slot ``_name``).
    _fields: ClassVar[tuple[str, ...]] = ()
    #: The values of the fields, as a tuple (an attrgetter is no method: it is not bound).
    _values: ClassVar[operator.attrgetter[tuple[Any, ...]]]
    __match_args__: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        cls._fields = tuple(inspect.get_annotations(cls))
        slots = [f"_{name}" for name in cls._fields]
        cls._values = operator.attrgetter(*slots)
        cls.__match_args__ = cls._fields  # type: ignore[misc]  # mypy: only in a class body
        for name, slot in zip(cls._fields, slots, strict=True):
            setattr(cls, name, _field(name, slot))

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values(self) == self._values(other)

    def __hash__(self) -> int:
        return hash(self._values(self))

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={value!r}"
            for name, value in zip(self._fields, self._values(self), strict=True)
        )
        return f"{self.__class__.__qualname__}({shown})"


def _field(name: str, slot: str) -> property:
    """A read-only view of ``slot``; assigning or deleting it raises FrozenInstanceError."""

    def refuse(self: object, value: object = None) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    return property(operator.attrgetter(slot), refuse, refuse)


class Compare(_Value):
    """A guard of a transaction. An absent key has revisions and version 0 and no value.

    Use the constructors: ``Compare.mod_revision(key) == 7``, ``Compare.version(key) == 0``
    (the key is absent), ``Compare.value(key) != b"x"``.
    """

    __slots__ = ("_key", "_op", "_operand", "_target")
    key: str
    target: CompareTarget
    op: CompareOp
    operand: int | bytes

    def __init__(
        self,
        key: str,
        target: CompareTarget,
        op: CompareOp = CompareOp.EQUAL,
        operand: int | bytes = 0,
    ) -> None:
        self._key = key
        self._target = target
        self._op = op
        self._operand = operand

    @staticmethod
    def mod_revision(key: str) -> _CompareBuilder:
        return _CompareBuilder(key, _MOD)

    @staticmethod
    def create_revision(key: str) -> _CompareBuilder:
        return _CompareBuilder(key, _CREATE)

    @staticmethod
    def version(key: str) -> _CompareBuilder:
        return _CompareBuilder(key, _VERSION)

    @staticmethod
    def value(key: str) -> _CompareBuilder:
        return _CompareBuilder(key, _VALUE)

    def holds_for(self, kv: KeyValue | None) -> bool:
        """Whether this compare is true for ``kv`` (``None`` means the key is absent)."""
        if self._target is _VALUE:
            if kv is None:
                return False  # etcd: a value compare on an absent key fails
            actual: int | bytes = kv.value
        elif kv is None:
            actual = 0
        elif self._target is _MOD:
            actual = kv.mod_revision
        elif self._target is _CREATE:
            actual = kv.create_revision
        else:
            actual = kv.version
        operand, op = self._operand, self._op
        if op is _EQUAL:
            return actual == operand
        if op is _NOT_EQUAL:
            return actual != operand
        # the operand has the target's type (bytes for VALUE, else an int), as ``actual`` has
        if op is _LESS:
            return actual < operand  # type: ignore[operator]  # int < int or bytes < bytes
        return actual > operand  # type: ignore[operator]  # int > int or bytes > bytes


_new = object.__new__


class _CompareBuilder:
    """``Compare.mod_revision(key)`` and its kin: a comparison operator makes the Compare.

    Built once per compare of every transaction and dropped at once: a plain slotted
    class (made by static methods of Compare, a call cheaper than a class method's),
    whose operators fill a new Compare's slots directly.
    """

    __slots__ = ("key", "target")

    def __init__(self, key: str, target: CompareTarget) -> None:
        self.key = key
        self.target = target

    def _make(self, op: CompareOp, operand: int | bytes) -> Compare:
        compare = _new(Compare)
        compare._key = self.key
        compare._target = self.target
        compare._op = op
        compare._operand = operand
        return compare

    def __eq__(self, operand: int | bytes) -> Compare:  # type: ignore[override]  # builds a Compare
        # _make inlined: every optimistic commit builds one of these per key
        compare = _new(Compare)
        compare._key = self.key
        compare._target = self.target
        compare._op = _EQUAL
        compare._operand = operand
        return compare

    def __ne__(self, operand: int | bytes) -> Compare:  # type: ignore[override]  # builds a Compare
        return self._make(_NOT_EQUAL, operand)

    def __lt__(self, operand: int | bytes) -> Compare:
        return self._make(_LESS, operand)

    def __gt__(self, operand: int | bytes) -> Compare:
        return self._make(_GREATER, operand)

    __hash__ = None  # type: ignore[assignment]  # unhashable: == builds a Compare


class Put(_Value):
    """Write ``value`` at ``key``, attached to ``lease`` when non-zero."""

    __slots__ = ("_key", "_lease", "_value")
    key: str
    value: bytes
    lease: int

    def __init__(self, key: str, value: bytes, lease: int = 0) -> None:
        self._key = key
        self._value = value
        self._lease = lease


class Delete(_Value):
    """Delete ``key``, or every key starting with it when ``prefix``."""

    __slots__ = ("_key", "_prefix")
    key: str
    prefix: bool

    def __init__(self, key: str, prefix: bool = False) -> None:
        self._key = key
        self._prefix = prefix


class Get(_Value):
    """Read ``key``, or up to ``limit`` keys starting with it when ``prefix`` (0: no limit)."""

    __slots__ = ("_key", "_limit", "_prefix")
    key: str
    prefix: bool
    limit: int

    def __init__(self, key: str, prefix: bool = False, limit: int = 0) -> None:
        self._key = key
        self._prefix = prefix
        self._limit = limit


Op = Put | Delete | Get


@quick_init
@dataclass(frozen=True, slots=True)
class RangeResult:
    """Keys in key order, the revision they were read at, and whether more remain."""

    kvs: list[KeyValue]
    revision: int
    more: bool = False


@quick_init
@dataclass(frozen=True, slots=True)
class PutResult:
    revision: int
    prev: KeyValue | None = None


@quick_init
@dataclass(frozen=True, slots=True)
class DeleteResult:
    revision: int
    deleted: int
    prev: list[KeyValue] = field(default_factory=list)


OpResult = PutResult | DeleteResult | RangeResult


class TxnResult:
    """Whether the compares held, the store revision after the txn, one result per op run.

    Immutable, compared by value. A backend may hand over its results unbuilt
    (:meth:`deferred`): most callers of a large transaction look only at ``succeeded``
    and ``revision``, and the embedded store then builds no result object per key.
    """

    __slots__ = ("_build", "_results", "revision", "succeeded")
    succeeded: bool
    revision: int
    _results: list[OpResult]
    _build: Callable[[], list[OpResult]] | None

    def __init__(self, succeeded: bool, revision: int, results: list[OpResult]) -> None:
        _set_succeeded(self, succeeded)
        _set_revision(self, revision)
        _set_results(self, results)
        _set_build(self, None)

    @classmethod
    def deferred(
        cls, succeeded: bool, revision: int, build: Callable[[], list[OpResult]]
    ) -> TxnResult:
        """A result whose ``results`` come from ``build()``, called once on first access."""
        result = cls.__new__(cls)
        _set_succeeded(result, succeeded)
        _set_revision(result, revision)
        _set_build(result, build)
        return result

    @property
    def results(self) -> list[OpResult]:
        build = self._build
        if build is not None:
            _set_results(self, build())
            _set_build(self, None)
        return self._results

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, TxnResult)
        return (self.succeeded, self.revision, self.results) == (
            other.succeeded,
            other.revision,
            other.results,
        )

    __hash__ = None  # type: ignore[assignment]  # its results are a list

    def __repr__(self) -> str:
        return (
            f"TxnResult(succeeded={self.succeeded!r}, revision={self.revision!r}, "
            f"results={self.results!r})"
        )

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")


def _setter(name: str) -> Callable[[TxnResult, object], None]:
    """The ``__set__`` of TxnResult's slot ``name``: it gets past the frozen ``__setattr__``."""
    slot: types.MemberDescriptorType = TxnResult.__dict__[name]
    return slot.__set__


_set_succeeded = _setter("succeeded")
_set_revision = _setter("revision")
_set_results = _setter("_results")
_set_build = _setter("_build")


class EventType(enum.Enum):
    PUT = "put"
    DELETE = "delete"


@quick_init
@dataclass(frozen=True, slots=True)
class Event:
    """A change seen by a watch. For DELETE, ``kv`` has the key, an empty value and
    the ``mod_revision`` of the deletion; ``prev`` is the value before, when known."""

    type: EventType
    kv: KeyValue
    prev: KeyValue | None = None


@quick_init
@dataclass(frozen=True, slots=True)
class Lease:
    id: int
    ttl: int
