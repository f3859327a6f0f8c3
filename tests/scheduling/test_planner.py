"""The planner: the commit protocol, fine-grained retries and the other conflict modes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from astra import keys
from astra.records import AllocRecord, NodePhase, Quantity, ReplicaPhase, ReplicaRecord, ReplicaRole
from astra.store import Store, open_store
from scheduling import (
    ConflictMode,
    FleetView,
    Placement,
    Plan,
    Planner,
    Rejection,
    Removal,
    StoreFeed,
)
from tests.scheduling.fleets import (
    GIB,
    assert_consistent,
    holdings,
    node_record,
    write_nodes,
)

MODEL = {
    "name": "resnet",
    "version": "1",
    "uri": "/models/resnet.onnx",
    "sha256": "ab" * 32,
    "format": "ONNX",
}


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    async with await open_store("memory://") as opened:
        await write_nodes(
            opened,
            [
                node_record("n0", cpu=2000),
                node_record("n1", cpu=2000),
                node_record("n2", cpu=2000),
                node_record("drained", phase=NodePhase.DRAINING),
                *(node_record(f"m{i:03d}", cpu=64000, memory=512 * GIB) for i in range(200)),
            ],
        )
        yield opened


async def snapshot(store: Store) -> FleetView:
    """A view loaded once and never updated again: it goes stale as others commit."""
    view = FleetView()
    feed = StoreFeed(store, view)
    await feed.start()
    await feed.close()
    return view


def placement(replica_id: str, node_id: str, *, cpu: int = 1000, app_id: str = "a") -> Placement:
    return Placement(
        app_id, replica_id, node_id, "c0", ReplicaRole.WORKER, Quantity(cpu, GIB, 0), 3, (MODEL,)
    )


def plan_of(*items: Placement | Removal) -> Plan:
    plan = Plan()
    for item in items:
        if isinstance(item, Placement):
            plan.place(item)
        else:
            plan.remove(item)
    return plan


async def test_a_placement_writes_the_allocation_and_the_record_in_one_transaction(
    store: Store,
) -> None:
    view = await snapshot(store)
    planner = Planner(store, view, clock=lambda: 1234.5)
    outcome = await planner.commit(
        plan_of(placement("c0-0", "n0"), placement("c0-1", "n0"), placement("c0-2", "n1"))
    )
    assert len(outcome.placed) == 3 and outcome.txns == 1 and not outcome.rejected
    held = await holdings(store)
    assert_consistent(held)
    assert sorted(held.allocs["n0"].replicas) == ["apps/a/replicas/c0-0", "apps/a/replicas/c0-1"]
    record = held.replicas["apps/a/replicas/c0-2"]
    assert (record.node_id, record.ray_cluster, record.role, record.app_generation) == (
        "n1",
        "c0",
        "WORKER",
        3,
    )
    assert (record.phase, record.models, record.create_time) == (
        ReplicaPhase.PENDING,
        [MODEL],
        1234.5,
    )
    kv = await store.get(keys.alloc("n0"))
    node = view.node("n0")
    assert kv is not None and node is not None and node.alloc_revision == kv.mod_revision
    assert node.free_cpu == 0


async def test_a_lost_race_retries_what_still_fits_in_the_same_plan(store: Store) -> None:
    stale = await snapshot(store)
    await Planner(store, await snapshot(store)).commit(
        plan_of(placement("x", "n0", app_id="other"))
    )
    planner = Planner(store, stale)
    outcome = await planner.commit(plan_of(placement("c0-0", "n0"), placement("c0-1", "n1")))
    assert len(outcome.placed) == 2 and not outcome.rejected
    assert (outcome.txns, outcome.conflicts) == (1, 1)
    assert (planner.stats.refits, planner.stats.misfits) == (2, 0)
    held = await holdings(store)
    assert_consistent(held)
    assert len(held.allocs["n0"].replicas) == 2


async def test_a_placement_that_no_longer_fits_is_handed_back_alone(store: Store) -> None:
    stale = await snapshot(store)
    await Planner(store, await snapshot(store)).commit(
        plan_of(placement("x", "n0", cpu=1500, app_id="other"))
    )
    planner = Planner(store, stale)
    outcome = await planner.commit(plan_of(placement("c0-0", "n0"), placement("c0-1", "n1")))
    assert [p.replica_id for p in outcome.placed] == ["c0-1"]
    assert [(p.replica_id, why) for p, why in outcome.rejected] == [
        ("c0-0", Rejection.NO_LONGER_FITS)
    ]
    assert planner.stats.misfits == 1
    assert_consistent(await holdings(store))


@pytest.mark.parametrize("mode", [ConflictMode.ALL_OR_NOTHING, ConflictMode.COARSE])
async def test_other_modes_hand_back_the_whole_transaction(
    store: Store, mode: ConflictMode
) -> None:
    stale = await snapshot(store)
    # COARSE loses even to a commit on a node the plan does not touch.
    touched = "n0" if mode is ConflictMode.ALL_OR_NOTHING else "n2"
    await Planner(store, await snapshot(store), mode=mode).commit(
        plan_of(placement("x", touched, app_id="other"))
    )
    planner = Planner(store, stale, mode=mode)
    outcome = await planner.commit(plan_of(placement("c0-0", "n0"), placement("c0-1", "n1")))
    assert not outcome.placed and outcome.conflicts == 1
    assert sorted((p.replica_id, why) for p, why in outcome.rejected) == [
        ("c0-0", Rejection.CONFLICT),
        ("c0-1", Rejection.CONFLICT),
    ]
    assert planner.stats.handed_back == 2
    assert not (await holdings(store)).of_app("a")
    retried = await planner.commit(plan_of(placement("c0-0", "n0"), placement("c0-1", "n1")))
    assert len(retried.placed) == 2  # the lost race refreshed what it needed


async def test_a_replica_is_never_placed_twice(store: Store) -> None:
    stale = await snapshot(store)
    await Planner(store, await snapshot(store)).commit(plan_of(placement("c0-0", "n0")))
    outcome = await Planner(store, stale).commit(
        plan_of(placement("c0-0", "n1"), placement("c0-1", "n1"))
    )
    assert [p.replica_id for p in outcome.placed] == ["c0-1"]
    assert [(p.replica_id, why) for p, why in outcome.rejected] == [
        ("c0-0", Rejection.ALREADY_PLACED)
    ]
    held = await holdings(store)
    assert_consistent(held)
    assert held.replicas["apps/a/replicas/c0-0"].node_id == "n0"


async def test_nodes_that_are_not_ready_get_no_placement(store: Store) -> None:
    planner = Planner(store, await snapshot(store))
    outcome = await planner.commit(
        plan_of(placement("c0-0", "drained"), placement("c0-1", "ghost"))
    )
    assert sorted((p.replica_id, why) for p, why in outcome.rejected) == [
        ("c0-0", Rejection.NODE_NOT_READY),
        ("c0-1", Rejection.NODE_NOT_READY),
    ]
    assert outcome.txns == 0 and not (await holdings(store)).replicas


async def test_big_plans_are_split_to_the_transaction_limits(store: Store) -> None:
    planner = Planner(store, await snapshot(store))
    spread = [placement(f"s-{i}", f"m{i % 200:03d}", cpu=10) for i in range(300)]
    outcome = await planner.commit(plan_of(*spread))
    assert len(outcome.placed) == 300 and outcome.txns >= 4  # 2 ops per new node and replica
    one_node = [placement(f"p-{i}", "m000", cpu=10, app_id="b") for i in range(300)]
    outcome = await planner.commit(plan_of(*one_node))
    assert len(outcome.placed) == 300 and outcome.txns == 3
    held = await holdings(store)
    assert_consistent(held)
    assert len(held.allocs["m000"].replicas) == 302


async def test_removals_free_the_allocation_even_after_a_lost_race(store: Store) -> None:
    view = await snapshot(store)
    planner = Planner(store, view)
    await planner.commit(
        plan_of(
            placement("c0-0", "n0", cpu=500),
            placement("c0-1", "n0", cpu=500),
            placement("c0-2", "n1"),
        )
    )
    await Planner(store, await snapshot(store)).commit(
        plan_of(placement("x", "n0", app_id="other"))
    )
    outcome = await planner.commit(plan_of(Removal("a", "c0-0", "n0"), Removal("a", "c0-2", "n1")))
    assert sorted(r.replica_id for r in outcome.removed) == ["c0-0", "c0-2"]
    assert outcome.conflicts == 1
    held = await holdings(store)
    assert_consistent(held)
    assert sorted(held.allocs["n0"].replicas) == ["apps/a/replicas/c0-1", "apps/other/replicas/x"]
    assert held.allocs["n1"] == AllocRecord("n1")


async def test_a_plan_naming_a_replica_twice_is_refused(store: Store) -> None:
    planner = Planner(store, await snapshot(store))
    with pytest.raises(ValueError, match="twice"):
        await planner.commit(plan_of(placement("c0-0", "n0"), Removal("a", "c0-0", "n1")))


async def test_records_read_back_as_the_apps_replicas(store: Store) -> None:
    planner = Planner(store, await snapshot(store))
    await planner.commit(plan_of(placement("c0-0", "n0"), placement("c0-0", "n1", app_id="b")))
    records = await planner.read_replicas("a")
    assert [(r.app_id, r.replica_id, r.node_id) for r in records] == [("a", "c0-0", "n0")]
    assert isinstance(records[0], ReplicaRecord)


async def test_records_follow_a_changed_spec(store: Store) -> None:
    planner = Planner(store, await snapshot(store), clock=lambda: 7.0)
    await planner.commit(plan_of(placement("c0-0", "n0", cpu=500)))
    bigger = Placement("a", "c0-1", "n1", "c0", ReplicaRole.HEAD, Quantity(900, GIB, 0), 4, ())
    await planner.commit(plan_of(bigger))
    held = await holdings(store)
    first, second = held.replicas["apps/a/replicas/c0-0"], held.replicas["apps/a/replicas/c0-1"]
    assert (first.resources.cpu_millis, first.app_generation, first.models) == (500, 3, [MODEL])
    assert (second.resources.cpu_millis, second.app_generation, second.models) == (900, 4, [])
    assert (second.role, second.node_id) == ("HEAD", "n1")
    kv = await store.get(keys.replica("a", "c0-1"))
    assert kv is not None and kv.value == second.to_bytes()
