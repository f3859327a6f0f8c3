"""Members are kept out of the garbage collector's scans as the fleet grows."""

from __future__ import annotations

import gc
import math
from collections.abc import Iterator

import pytest

from services.resource._detector import Clock, DeadlineWheel
from services.resource._registry import Registry


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Give this test's frozen objects back to the collector afterwards."""
    yield
    gc.unfreeze()


def test_a_growing_fleet_is_frozen_a_logarithmic_number_of_times(unfrozen: None) -> None:
    clock = Clock(tolerance=1.0)
    registry = Registry(dead_after=3.0, wheel=DeadlineWheel(0.05, start=clock.now()), clock=clock)
    for index in range(9_999):
        registry.track(f"nodes/n{index}", f"uid{index}", "READY", registry.deadline(3.0))
    assert registry.long_lived.freezes == 0  # a small fleet is left to the collector

    for index in range(9_999, 60_000):
        registry.track(f"nodes/n{index}", f"uid{index}", "READY", registry.deadline(3.0))
        if index == 9_999:
            assert registry.long_lived.freezes == 1
            assert gc.get_freeze_count() >= len(registry.members)
    # 10k growing by a quarter each time up to 60k: 10k, 12.5k, ..., ~59.6k.
    assert registry.long_lived.freezes == 1 + math.floor(math.log(60_000 / 10_000, 1.25))
    member = registry.members["nodes/n5"]
    assert gc.is_tracked(member)
    assert all(obj is not member for obj in gc.get_objects())  # frozen: no collection walks it
    registry.track("nodes/n5", "uid5", "READY", registry.deadline(3.0))  # an update: no freeze
    assert registry.long_lived.freezes == 1 + math.floor(math.log(60_000 / 10_000, 1.25))
