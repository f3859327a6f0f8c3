"""Compares and ops behave as frozen values: equal, hashed and shown by their fields."""

from __future__ import annotations

import copy
import pickle
from dataclasses import FrozenInstanceError

import pytest

from astra.store import Compare, CompareOp, CompareTarget, Delete, Get, KeyValue, Put

VALUES = [
    Put("k", b"v"),
    Put("k", b"v", 7),
    Delete("k"),
    Delete("k", True),
    Get("k"),
    Get("k", True, 3),
    Compare.mod_revision("k") == 5,
    Compare.value("k") != b"x",
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_a_value_equals_its_rebuild_from_keywords_copies_and_pickles(value: object) -> None:
    fields = type(value)._fields  # type: ignore[attr-defined]
    rebuilt = type(value)(**{name: getattr(value, name) for name in fields})
    for same in (rebuilt, copy.copy(value), pickle.loads(pickle.dumps(value))):
        assert same == value and hash(same) == hash(value) and same is not value
    assert value != tuple(getattr(value, name) for name in fields)
    assert len({*VALUES}) == len(VALUES)  # distinct fields or kinds: distinct values


def test_repr_defaults_and_positional_match_like_a_dataclass() -> None:
    assert repr(Put("k", b"v")) == "Put(key='k', value=b'v', lease=0)"
    assert repr(Get("k", limit=2)) == "Get(key='k', prefix=False, limit=2)"
    assert repr(Delete(key="k")) == "Delete(key='k', prefix=False)"
    assert Compare("k", CompareTarget.VERSION) == Compare.version("k") == 0
    match Put("k", b"v", 3):
        case Put(key, value, lease):
            assert (key, value, lease) == ("k", b"v", 3)
    with pytest.raises(TypeError, match="value"):
        Put("k")  # type: ignore[call-arg]
    assert Put("k", b"v") != Get("k") and Delete("k") != Get("k")


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_fields_cannot_be_assigned_deleted_or_added(value: object) -> None:
    with pytest.raises(FrozenInstanceError):
        value.key = "other"  # type: ignore[attr-defined]
    with pytest.raises(FrozenInstanceError):
        del value.key  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        value.extra = 1  # type: ignore[attr-defined]
    assert value.key == "k"  # type: ignore[attr-defined]


def test_compare_constructors_and_operators() -> None:
    kv = KeyValue("k", b"x", create_revision=2, mod_revision=4, version=3)
    for builder, actual in (
        (Compare.mod_revision, 4),
        (Compare.create_revision, 2),
        (Compare.version, 3),
        (Compare.value, b"x"),
    ):
        assert (builder("k") == actual).holds_for(kv)
        assert not (builder("k") != actual).holds_for(kv)
        assert (builder("k") < b"y" if actual == b"x" else builder("k") < 5).holds_for(kv)
        greater = builder("k") > actual
        assert greater.op is CompareOp.GREATER and greater.operand == actual
        assert not greater.holds_for(kv)
    assert (Compare.mod_revision("k") == 0).holds_for(None)
    assert not (Compare.value("k") == b"").holds_for(None)
