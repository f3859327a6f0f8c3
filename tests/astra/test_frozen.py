"""quick_init builds the same objects as the ``__init__`` that dataclasses writes."""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from astra import quick_init
from astra.store import DeleteResult, Event, EventType, KeyValue
from scheduling import Placement, Slot


def _declare() -> type:
    @dataclass(frozen=True, slots=True)
    class Sample:
        a: int
        b: str = "b"
        c: list[int] = field(default_factory=list)
        d: int = field(default=4, kw_only=True)

    return Sample


Plain, Quick = _declare(), quick_init(_declare())


@given(st.integers(), st.text(), st.lists(st.integers()), st.integers())
def test_objects_equal_those_of_the_generated_init(a: int, b: str, c: list[int], d: int) -> None:
    for args, kwargs in (((a,), {}), ((a, b), {}), ((a, b, c), {"d": d}), ((), {"a": a, "d": d})):
        assert dataclasses.astuple(Quick(*args, **kwargs)) == dataclasses.astuple(
            Plain(*args, **kwargs)
        )
    assert Quick(a).c is not Quick(a).c  # a fresh default per object
    assert Quick(a, b) == Quick(a, b) and Quick(a, b) != Quick(a, b + "x")


def test_the_signature_is_kept_and_the_class_stays_frozen() -> None:
    assert str(inspect.signature(Quick)) == str(inspect.signature(Plain))
    with pytest.raises(TypeError, match="missing"):
        Quick()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="positional"):
        Quick(1, "b", [], 4)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Quick(1).a = 2  # type: ignore[misc]


def test_post_init_still_runs() -> None:
    @quick_init
    @dataclass(frozen=True, slots=True)
    class Checked:
        value: int

        def __post_init__(self) -> None:
            if self.value < 0:
                raise ValueError("negative")

    assert Checked(1).value == 1
    with pytest.raises(ValueError, match="negative"):
        Checked(-1)


def test_only_frozen_slotted_dataclasses_are_accepted() -> None:
    with pytest.raises(TypeError, match="frozen dataclass with slots"):
        quick_init(dataclass(frozen=True)(type("NoSlots", (), {"__annotations__": {"a": "int"}})))
    with pytest.raises(TypeError, match="frozen dataclass with slots"):
        quick_init(dataclass(slots=True)(type("Mutable", (), {"__annotations__": {"a": "int"}})))
    with pytest.raises(TypeError, match="must take its fields, and only them"):

        @quick_init
        @dataclass(frozen=True, slots=True)
        class Hidden:
            a: int
            b: int = field(default=0, init=False)


def test_the_hot_types_use_it() -> None:
    for kind in (KeyValue, Event, DeleteResult, Placement, Slot):
        assert kind.__init__.__module__ == kind.__module__
        assert "_set_" in " ".join(kind.__init__.__code__.co_names), kind
    kv = KeyValue("k", b"v", 1, 2, 3)
    assert Event(EventType.PUT, kv).prev is None and kv.lease == 0
    assert hash(kv) == hash(KeyValue("k", b"v", 1, 2, 3, 0)) and kv in {
        KeyValue("k", b"v", 1, 2, 3)
    }
