"""The picker's contract, on both implementations: identical picks, the smoothness
bound (lag in (-1, 1), so any run of picks within 2 of its weighted share), and what
updates do."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.gateway.conftest import native_core, python_core

MAX_WEIGHT = 1 << 16
#: An endpoint gains less than 2^-26 of a pick per pick of it (request lengths are
#: rounded down); tolerances allow exactly that.
DRIFT = 2.0**-26

weights = st.one_of(st.integers(1, 4), st.integers(1, MAX_WEIGHT), st.just(MAX_WEIGHT))
slots = st.integers(0, 63)
updates = st.lists(
    st.tuples(slots, st.one_of(st.just(0), weights)), max_size=6, unique_by=lambda c: c[0]
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("pick"), st.integers(1, 120)), st.tuples(st.just("update"), updates)
    ),
    max_size=25,
)
first = st.lists(st.tuples(slots, weights), min_size=1, max_size=24, unique_by=lambda c: c[0])
core_settings = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@core_settings
@given(initial=first, ops=operations)
def test_both_implementations_pick_the_same(initial: list[tuple[int, int]], ops: list[Any]) -> None:
    native, python = native_core().Picker(), python_core().Picker()
    native.update(initial)
    python.update(initial)
    for kind, arg in ops:
        if kind == "update":
            native.update(arg)
            python.update(arg)
            assert native.weights() == python.weights()
            continue
        for _ in range(arg):
            assert native.pick() == python.pick()
        assert native.virtual_time == python.virtual_time
        for slot, _ in native.weights():
            assert native.lag(slot) == python.lag(slot)


@core_settings
@given(endpoints=first, count=st.integers(1, 3000))
def test_a_fresh_picker_keeps_every_prefix_within_one_pick_of_its_share(
    core: Any, endpoints: list[tuple[int, int]], count: int
) -> None:
    picker = core.Picker()
    picker.update(endpoints)
    weight = dict(endpoints)
    total = sum(weight.values())
    got = dict.fromkeys(weight, 0)
    # error[slot] = picks got - weighted share, over every prefix: its spread bounds runs.
    low = dict.fromkeys(weight, 0.0)
    high = dict.fromkeys(weight, 0.0)
    tolerance = count * DRIFT + 1e-9
    for picks in range(1, count + 1):
        got[picker.pick()] += 1
        for slot, w in weight.items():
            error = got[slot] - picks * w / total
            assert -1 - tolerance < error < 1 + tolerance, (slot, picks, error)
            low[slot], high[slot] = min(low[slot], error), max(high[slot], error)
    for slot in weight:  # any run of picks: within 2 of m * w / W
        assert high[slot] - low[slot] < 2 + 2 * tolerance


@core_settings
@given(initial=first, ops=operations)
def test_lag_stays_within_one_pick_through_any_updates(
    core: Any, initial: list[tuple[int, int]], ops: list[Any]
) -> None:
    picker = core.Picker()
    picker.update(initial)
    since_update = 0
    for kind, arg in ops:
        if kind == "update":
            picker.update(arg)
            since_update = 0
            for slot, _ in picker.weights():
                assert picker.lag(slot) <= 1e-12, "an update leaves no claim"
            continue
        # A run with no update: each endpoint's picks stay within 2 of its share of the
        # virtual time elapsed.
        start = picker.virtual_time
        got: dict[int, int] = {}
        for _ in range(arg):
            slot = picker.pick()
            got[slot] = got.get(slot, 0) + 1
            since_update += 1
            tolerance = since_update * DRIFT + 1e-9
            for other, _ in picker.weights():
                assert -1 - tolerance < picker.lag(other) < 1 + tolerance, (
                    other,
                    picker.lag(other),
                )
        elapsed = picker.virtual_time - start
        for slot, weight in picker.weights():
            assert abs(got.get(slot, 0) - weight * elapsed) < 2 + 2 * since_update * DRIFT + 1e-6


def test_an_update_clears_claims_and_keeps_advances(core: Any) -> None:
    picker = core.Picker()
    picker.update([(1, 10), (2, 10)])
    assert picker.pick() == 1
    assert picker.lag(1) == pytest.approx(-0.5) and picker.lag(2) == pytest.approx(0.5)
    picker.update([(2, 20)])  # 2 is owed half a pick: cleared; 1 is ahead: kept
    assert picker.lag(2) == 0 and picker.lag(1) == pytest.approx(-0.5)
    picker.update([(1, 40)])  # ahead by as many picks at its new weight
    assert picker.lag(1) == pytest.approx(-0.5)


def test_low_traffic_alternates_even_with_an_update_before_every_pick(core: Any) -> None:
    picker = core.Picker()
    picker.update([(1, 7), (2, 7), (3, 7)])
    seen = []
    for _ in range(9):
        picker.update([])
        seen.append(picker.pick())
    assert seen == [1, 2, 3] * 3


def test_a_new_endpoint_starts_level_and_gets_its_share_at_once(core: Any) -> None:
    picker = core.Picker()
    picker.update([(1, 100), (2, 100)])
    picker.skip(1001)
    picker.update([(3, 200)])
    assert picker.lag(3) == 0
    got = [picker.pick() for _ in range(400)]
    assert abs(got.count(3) - 200) < 2 and abs(got.count(1) - 100) < 2


def test_removed_endpoints_are_never_picked(core: Any) -> None:
    picker = core.Picker()
    picker.update([(1, 5), (2, 5), (3, 5)])
    picker.update([(2, 0), (9, 0)])  # removing an absent slot is a no-op
    assert picker.weights() == [(1, 5), (3, 5)] and 2 not in picker and len(picker) == 2
    assert {picker.pick() for _ in range(50)} == {1, 3}
    picker.update([(1, 0), (3, 0)])
    assert picker.pick() == -1 and len(picker) == 0


def test_an_empty_picker_picks_nothing(core: Any) -> None:
    assert core.Picker().pick() == -1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ([(1, -1)], "not in"),
        ([(1, MAX_WEIGHT + 1)], "not in"),
        ([(1, 2), (1, 3)], "given twice"),
    ],
)
def test_bad_updates_are_refused_and_change_nothing(
    core: Any, changes: list[tuple[int, int]], message: str
) -> None:
    picker = core.Picker()
    picker.update([(5, 1)])
    with pytest.raises(ValueError, match=message):
        picker.update(changes)
    assert picker.weights() == [(5, 1)]


def test_lag_of_an_unknown_slot_is_a_key_error(core: Any) -> None:
    with pytest.raises(KeyError):
        core.Picker().lag(3)


def test_skip_makes_the_same_picks(core: Any) -> None:
    one, other = core.Picker(), core.Picker()
    for picker in (one, other):
        picker.update([(1, 3), (2, 5), (3, 7)])
    one.skip(777)
    for _ in range(777):
        other.pick()
    assert [one.pick() for _ in range(30)] == [other.pick() for _ in range(30)]


def test_the_clock_shift_is_invisible(core: Any) -> None:
    # Weight 1 alone: each pick is a whole request, so the clock reaches its shift
    # point every pick; the virtual time and the bound must not notice.
    picker = core.Picker()
    picker.update([(1, 1)])
    for picks in range(1, 2001):
        assert picker.pick() == 1
        assert picker.virtual_time == picks
    picker.update([(2, 3)])
    got = [picker.pick() for _ in range(4000)]
    assert got.count(2) == 3000
