"""AppScheduler: the stages composed, level-triggered, on a watch-fed view."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from astra.records import NodePhase, ReplicaRole
from astra.store import Store, open_store
from scheduling import AppScheduler, AppSpec, FleetView, Planner, Reason, StoreFeed
from tests.scheduling.fleets import (
    assert_consistent,
    eventually,
    holdings,
    node_record,
    spec,
    write_nodes,
)


@dataclass
class Harness:
    store: Store
    view: FleetView
    feed: StoreFeed
    planner: Planner

    def scheduler(self, app: AppSpec) -> AppScheduler:
        return AppScheduler(app, self.view, self.planner, rng=random.Random(1))

    async def set_node(self, **options: object) -> None:
        """Write a node record and wait until the view has it."""
        record = node_record(**options)  # type: ignore[arg-type]
        await write_nodes(self.store, [record])
        await eventually(
            lambda: (
                (node := self.view.node(record.node_id)) is not None and node.phase == record.phase
            )
        )


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    async with await open_store("memory://") as store:
        await write_nodes(store, [node_record(f"n{i}", zone=f"z{i % 3}") for i in range(6)])
        view = FleetView()
        async with StoreFeed(store, view) as feed:
            yield Harness(store, view, feed, Planner(store, view))


async def test_reconcile_places_everything_then_has_nothing_to_do(harness: Harness) -> None:
    scheduler = harness.scheduler(spec("a", 7, ray_clusters=2, generation=4))
    first = await scheduler.reconcile()
    assert first.converged and len(first.placed) == 7 and first.running == 7
    again = await scheduler.reconcile()
    assert again.converged and not again.placed and not again.removed and again.txns == 0
    held = await holdings(harness.store)
    assert_consistent(held)
    clusters = Counter((r.ray_cluster, r.role) for r in held.of_app("a"))
    assert clusters == {
        ("c0", "HEAD"): 1,
        ("c0", "WORKER"): 3,
        ("c1", "HEAD"): 1,
        ("c1", "WORKER"): 2,
    }
    assert {r.app_generation for r in held.of_app("a")} == {4}


async def test_updates_scale_up_and_down(harness: Harness) -> None:
    scheduler = harness.scheduler(spec("a", 3))
    await scheduler.reconcile()
    scheduler.update(dataclasses.replace(scheduler.spec, replicas=6))
    assert len((await scheduler.reconcile()).placed) == 3
    scheduler.update(dataclasses.replace(scheduler.spec, replicas=2))
    down = await scheduler.reconcile()
    assert down.converged and len(down.removed) == 4
    held = await holdings(harness.store)
    assert_consistent(held)
    assert sorted(r.replica_id for r in held.of_app("a")) == ["c0-0", "c0-1"]
    with pytest.raises(ValueError):
        scheduler.update(spec("b", 1))


async def test_deleting_an_app_frees_all_it_held(harness: Harness) -> None:
    scheduler = harness.scheduler(spec("a", 12, ray_clusters=3))
    await scheduler.reconcile()
    result = await scheduler.delete()
    assert result.converged and len(result.removed) == 12 and result.desired == 0
    held = await holdings(harness.store)
    assert not held.replicas and all(not alloc.replicas for alloc in held.allocs.values())
    assert all(node.free_cpu == node.cpu for node in harness.view.nodes.values())


async def test_replicas_on_a_dead_node_are_replaced(harness: Harness) -> None:
    scheduler = harness.scheduler(spec("a", 6, ray_clusters=2, max_per_node=1))
    await scheduler.reconcile()
    held = await holdings(harness.store)
    head = next(r for r in held.of_app("a") if r.ray_cluster == "c0" and r.role == ReplicaRole.HEAD)
    worker = next(
        r for r in held.of_app("a") if r.ray_cluster == "c1" and r.role == ReplicaRole.WORKER
    )
    await harness.set_node(node_id=head.node_id, phase=NodePhase.DEAD)
    await harness.set_node(node_id=worker.node_id, phase=NodePhase.DEAD)
    await harness.set_node(node_id="spare0")
    await harness.set_node(node_id="spare1")
    result = await scheduler.reconcile()
    assert result.converged and result.lost == 2
    held = await holdings(harness.store)
    assert_consistent(held)
    clusters = Counter(r.ray_cluster for r in held.of_app("a"))
    assert clusters == {"c1": 3, "c2": 3}  # c0 lost its head: replaced whole
    assert all(r.node_id not in (head.node_id, worker.node_id) for r in held.of_app("a"))


async def test_draining_nodes_get_no_placement(harness: Harness) -> None:
    for index in range(5):
        await harness.set_node(node_id=f"n{index}", phase=NodePhase.DRAINING)
    result = await harness.scheduler(spec("a", 4)).reconcile()
    assert result.converged
    assert {p.node_id for p in result.placed} == {"n5"}


async def test_workers_of_a_cluster_whose_head_cannot_be_placed_are_unplaceable(
    harness: Harness,
) -> None:
    result = await harness.scheduler(spec("a", 6, gpus=1, ray_clusters=2)).reconcile()
    assert not result.converged and not result.placed
    reasons = Counter(why.reason for why in result.unplaceable.values())
    assert reasons == {Reason.ACCELERATOR_UNAVAILABLE: 2, Reason.RAY_HEAD_UNPLACEABLE: 4}
    assert result.unplaceable["c0-0"].reason is Reason.ACCELERATOR_UNAVAILABLE


async def test_spread_zones_balances_the_apps_replicas(harness: Harness) -> None:
    scheduler = harness.scheduler(spec("a", 3, spread_zones=True))
    await scheduler.reconcile()
    scheduler.update(dataclasses.replace(scheduler.spec, replicas=9))
    await scheduler.reconcile()
    held = await holdings(harness.store)
    zones = Counter(harness.view.nodes[r.node_id].zone for r in held.of_app("a"))
    assert zones == {"z0": 3, "z1": 3, "z2": 3}


async def test_a_scheduler_needs_the_planner_of_its_view(harness: Harness) -> None:
    with pytest.raises(ValueError):
        AppScheduler(spec("a", 1), FleetView(), harness.planner)
