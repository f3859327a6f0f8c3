"""Feasibility and scoring: sampled candidates, strategies, scarce nodes, reasons."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from astra.records import AllocRecord, NodeRecord
from astra.store import KeyValue
from scheduling import (
    AppSpec,
    Chooser,
    FleetView,
    Reason,
    Sampling,
    Strategy,
    Unplaceable,
    _feasibility,
)
from tests.scheduling.fleets import GIB, node_record, spec


def fleet(*records: NodeRecord) -> FleetView:
    view = FleetView()
    for record in records:
        view.apply_node(record)
    return view


def place(
    view: FleetView, app: AppSpec, count: int, *, sampling: Sampling | None = None
) -> list[str | Unplaceable]:
    """Choose ``count`` times, holding each choice as a scheduler does."""
    chooser = Chooser(view, app, sampling=sampling or Sampling(), rng=random.Random(7))
    zones: Counter[str] | None = Counter() if app.spread_zones else None
    chosen: list[str | Unplaceable] = []
    for _ in range(count):
        choice = chooser.choose(zones)
        if isinstance(choice, Unplaceable):
            chosen.append(choice)
            continue
        view.hold(choice, app.app_id, app.resources)
        if zones is not None:
            zones[choice.zone] += 1
        chosen.append(choice.node_id)
    return chosen


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How many nodes the checkers looked at (the resource check runs for every node)."""
    seen: Counter[str] = Counter()
    real = _feasibility.fits_resources

    def counting(node: object, request: _feasibility.Request) -> Reason | None:
        seen["nodes"] += 1
        return real(node, request)  # type: ignore[arg-type]

    monkeypatch.setattr(_feasibility, "fits_resources", counting)
    return seen


def test_choosing_costs_a_few_candidates_per_replica_not_the_fleet(checks: Counter[str]) -> None:
    view = fleet(*(node_record(f"n{i}", cpu=64000, memory=256 * GIB) for i in range(20000)))
    chosen = place(
        view, spec("a", 1, strategy=Strategy.SPREAD), 1000, sampling=Sampling(candidates=8)
    )
    assert all(isinstance(node, str) for node in chosen)
    assert checks["nodes"] <= 1000 * 9  # k candidates plus the last choice


def test_a_few_feasible_nodes_among_many_are_found_with_one_scan(checks: Counter[str]) -> None:
    records = [node_record(f"full{i}", cpu=100) for i in range(20000)]
    records += [node_record(f"roomy{i}", cpu=4000) for i in range(3)]
    view = fleet(*records)
    chosen = place(view, spec("a", 1, cpu=1000), 13)
    assert Counter(node for node in chosen if isinstance(node, str)) == {
        "roomy0": 4,
        "roomy1": 4,
        "roomy2": 4,
    }
    last = chosen[-1]
    assert isinstance(last, Unplaceable) and last.reason is Reason.INSUFFICIENT_CPU
    assert "20003 candidates" in last.message
    assert checks["nodes"] < 20003 + 256 + 13 * 9  # one scan, then the kept few


def test_scarce_accelerators_and_rare_labels_are_found_through_their_indexes(
    checks: Counter[str],
) -> None:
    records = [node_record(f"cpu{i}", labels={"rack": str(i % 100)}) for i in range(20000)]
    records += [node_record(f"h100-{i}", gpus=8, accelerator="h100") for i in range(2)]
    records.append(node_record("special", labels={"rack": "none", "disk": "nvme"}))
    view = fleet(*records)
    gpu = place(view, spec("gpu", 1, gpus=4, accelerators=("h100",)), 5)
    assert sorted(gpu[:4]) == ["h100-0", "h100-0", "h100-1", "h100-1"]  # type: ignore[type-var]
    assert isinstance(gpu[4], Unplaceable) and gpu[4].reason is Reason.INSUFFICIENT_GPU
    assert place(view, spec("disk", 2, node_selector={"disk": "nvme"}), 2) == ["special", "special"]
    assert checks["nodes"] < 100


def test_replicas_without_gpus_keep_off_gpu_nodes_until_cpu_nodes_are_full() -> None:
    view = fleet(
        node_record("cpu0", cpu=2000),
        node_record("cpu1", cpu=2000),
        node_record("gpu0", cpu=2000, gpus=1, accelerator="a10g"),
    )
    chosen = place(view, spec("a", 1, cpu=1000), 6)
    assert sorted(chosen[:4]) == ["cpu0", "cpu0", "cpu1", "cpu1"]  # type: ignore[type-var]
    assert chosen[4:] == ["gpu0", "gpu0"]


def test_accelerators_are_tried_in_order_of_preference() -> None:
    view = fleet(
        node_record("a10g", gpus=1, accelerator="a10g"),
        node_record("h100", gpus=4, accelerator="h100"),
    )
    chosen = place(view, spec("a", 1, gpus=1, accelerators=("a10g", "h100")), 6)
    assert chosen[:5] == ["a10g", "h100", "h100", "h100", "h100"]
    assert isinstance(chosen[5], Unplaceable) and chosen[5].reason is Reason.INSUFFICIENT_GPU


@pytest.mark.parametrize(
    ("strategy", "replicas", "expected"),
    [
        (Strategy.PACK, 8, [4, 4]),
        (Strategy.SPREAD, 8, [1] * 8),
        (Strategy.WATERMARK, 12, [2] * 6),  # fill to the 0.5 watermark, then the next node
        (Strategy.WATERMARK, 24, [3] * 8),  # all nodes over it: spread
    ],
)
def test_strategies_shape_how_full_nodes_get(
    strategy: Strategy, replicas: int, expected: list[int]
) -> None:
    view = fleet(*(node_record(f"n{i}", cpu=4000) for i in range(8)))
    app = spec("a", 1, cpu=1000, strategy=strategy, watermark=0.5)
    chosen = place(view, app, replicas, sampling=Sampling(candidates=8))
    assert sorted(Counter(chosen).values(), reverse=True) == expected


def test_spread_zones_balances_replicas_across_zones() -> None:
    view = fleet(
        *(node_record(f"n{zone}{i}", zone=zone) for zone in ("z0", "z1", "z2") for i in range(4))
    )
    chosen = place(view, spec("a", 1, spread_zones=True, strategy=Strategy.PACK), 9)
    assert Counter(str(node)[1:3] for node in chosen) == {"z0": 3, "z1": 3, "z2": 3}


def test_max_per_node_and_anti_affinity_exclude_nodes() -> None:
    view = fleet(node_record("n0"), node_record("n1"), node_record("n2"))
    value = AllocRecord("n2", {"apps/other/replicas/c0-0": [100, 0, 0]}).to_bytes()
    view.apply_alloc("n2", KeyValue("/astra/v1/alloc/n2", value, 1, 5, 1), observed=5)
    chosen = place(view, spec("a", 1, max_per_node=1, anti_affinity=frozenset({"other"})), 3)
    assert sorted(chosen[:2]) == ["n0", "n1"]  # type: ignore[type-var]
    assert isinstance(chosen[2], Unplaceable)
    assert chosen[2].reason in (Reason.MAX_PER_NODE, Reason.ANTI_AFFINITY)
    assert "1 AntiAffinity" in chosen[2].message and "2 MaxPerNode" in chosen[2].message


def test_affinity_prefers_nodes_of_the_named_apps_however_few() -> None:
    view = fleet(*(node_record(f"n{i}") for i in range(5000)))
    value = AllocRecord("n4", {"apps/db/replicas/c0-0": [100, 0, 0]}).to_bytes()
    view.apply_alloc("n4", KeyValue("/astra/v1/alloc/n4", value, 1, 5, 1), observed=5)
    app = spec("a", 1, memory=4 * GIB, affinity=frozenset({"db"}), strategy=Strategy.SPREAD)
    chosen = place(view, app, 4)
    assert chosen == ["n4", "n4", "n4", "n4"]
    assert place(view, app, 1) != ["n4"]  # full: elsewhere


@pytest.mark.parametrize(
    ("app", "reason"),
    [
        (spec("a", 1, gpus=1, accelerators=("tpu",)), Reason.ACCELERATOR_UNAVAILABLE),
        (spec("a", 1, gpus=1), Reason.ACCELERATOR_UNAVAILABLE),
        (spec("a", 1, node_selector={"pool": "nope"}), Reason.NODE_SELECTOR_MISMATCH),
        (spec("a", 1, memory=64 * GIB), Reason.INSUFFICIENT_MEMORY),
    ],
)
def test_unplaceable_replicas_say_why(app: AppSpec, reason: Reason) -> None:
    view = fleet(node_record("n0", labels={"pool": "a"}))
    (choice,) = place(view, app, 1)
    assert isinstance(choice, Unplaceable) and choice.reason is reason and choice.message
