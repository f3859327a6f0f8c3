"""The garbage collector kept off long-lived objects, and set for a serving process."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from astra._memory import YOUNG_THRESHOLD, LongLived, gc_for_serving


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Whatever a test freezes goes back to the collector after it."""
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_a_population_is_frozen_from_its_start_each_time_it_grows_by_a_quarter(
    unfrozen: None,
) -> None:
    long_lived = LongLived(start=100)
    long_lived.grew_to(99)
    assert long_lived.freezes == 0 and gc.get_freeze_count() == 0
    long_lived.grew_to(100)
    assert long_lived.freezes == 1 and gc.get_freeze_count() > 0
    long_lived.grew_to(124)
    assert long_lived.freezes == 1
    long_lived.grew_to(125)
    assert long_lived.freezes == 2


class _Cycle:
    """An object that refers to itself: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.itself = self


def test_while_serving_objects_alive_at_entry_are_left_out_of_collections(
    unfrozen: None,
) -> None:
    alive = _Cycle()
    frozen = weakref.ref(alive)
    with gc_for_serving():
        later = _Cycle()
        collected = weakref.ref(later)
        del alive, later
        gc.collect()
        assert frozen() is not None and collected() is None
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert frozen() is None


def test_while_serving_the_young_are_collected_in_larger_steps() -> None:
    before = gc.get_threshold()
    with gc_for_serving():
        assert gc.get_threshold() == (YOUNG_THRESHOLD, *before[1:])
    assert gc.get_threshold() == before
