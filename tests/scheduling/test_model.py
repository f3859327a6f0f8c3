"""FleetView: indexes, allocations with their revisions, holds of in-flight plans."""

from __future__ import annotations

import asyncio
import gc
import random
import time

from hypothesis import given
from hypothesis import strategies as st

from astra.records import AllocRecord, NodePhase, Quantity
from astra.store import KeyValue
from scheduling import Bag, FleetView
from tests.scheduling.fleets import GIB, node_record


def alloc_kv(node_id: str, revision: int, **replicas: list[int]) -> KeyValue:
    value = AllocRecord(
        node_id, {f"apps/{name}/replicas/r0": amounts for name, amounts in replicas.items()}
    ).to_bytes()
    return KeyValue(f"/astra/v1/alloc/{node_id}", value, 1, revision, 1)


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 20)), max_size=200), st.randoms())
def test_bag_behaves_as_a_set_with_random_picks(
    ops: list[tuple[bool, int]], rng: random.Random
) -> None:
    bag: Bag[int] = Bag()
    model: set[int] = set()
    for add, item in ops:
        if add:
            bag.add(item)
            model.add(item)
        else:
            bag.discard(item)
            model.discard(item)
        assert len(bag) == len(model)
        assert set(bag) == model
        assert all(item in bag for item in model)
        if model:
            assert bag.pick(rng) in model


def test_ready_nodes_are_indexed_by_accelerator_zone_and_label() -> None:
    view = FleetView()
    view.apply_node(node_record("cpu", zone="z1", labels={"pool": "a"}))
    view.apply_node(node_record("gpu", gpus=2, accelerator="h100", zone="z2"))
    view.apply_node(node_record("down", phase=NodePhase.DRAINING, labels={"pool": "a"}))
    assert [node.node_id for node in view.by_accelerator("") or []] == ["cpu"]
    assert [node.node_id for node in view.by_zone("h100", "z2") or []] == ["gpu"]
    assert [node.node_id for node in view.by_label("pool", "a") or []] == ["cpu"]
    assert view.gpu_accelerators() == ["h100"]
    assert view.zones("") == ["z1"]

    view.apply_node(node_record("cpu", zone="z1", labels={"pool": "b"}, phase=NodePhase.DRAINING))
    assert not view.by_accelerator("") and not view.by_label("pool", "a")
    view.apply_node(node_record("down"))
    assert [node.node_id for node in view.by_accelerator("") or []] == ["down"]


def test_free_capacity_is_what_the_allocation_and_holds_leave() -> None:
    view = FleetView()
    view.apply_node(node_record("n", cpu=4000, memory=8 * GIB, gpus=2, accelerator="a10g"))
    node = view.node("n")
    assert node is not None
    assert view.apply_alloc("n", alloc_kv("n", 10, a=[1000, GIB, 1]), observed=10)
    assert (node.free_cpu, node.free_memory, node.free_gpus) == (3000, 7 * GIB, 1)
    assert node.alloc_revision == 10 and node.count("a") == 1

    view.hold(node, "b", Quantity(500, GIB, 1))
    assert (node.free_cpu, node.free_gpus) == (2500, 0)
    assert node.count("b") == 1
    assert node.utilization() == 1.0  # both GPUs taken

    view.release("n", "b", Quantity(500, GIB, 1))
    assert (node.free_cpu, node.free_gpus, node.count("b"), node.held_apps) == (3000, 1, 0, None)

    for _ in range(3):
        view.hold(node, "c", Quantity(100, 0, 0))
    view.release("n", "c", Quantity(100, 0, 0), 2)  # two of the three at once
    assert (node.free_cpu, node.count("c")) == (2900, 1)
    view.release("n", "c", Quantity(100, 0, 0))
    assert (node.free_cpu, node.count("c"), node.held_apps) == (3000, 0, None)

    # A bigger node record keeps what is allocated.
    view.apply_node(node_record("n", cpu=8000, memory=8 * GIB, gpus=2, accelerator="a10g"))
    assert node.free_cpu == 7000


def test_nodes_are_indexed_by_the_apps_they_hold() -> None:
    view = FleetView()
    view.apply_node(node_record("n0"))
    view.apply_node(node_record("n1"))
    view.apply_alloc("n0", alloc_kv("n0", 5, a=[1, 0, 0], b=[1, 0, 0]), observed=5)
    view.apply_alloc("n1", alloc_kv("n1", 6, a=[1, 0, 0]), observed=6)
    assert sorted(node.node_id for node in view.by_app("a") or []) == ["n0", "n1"]
    view.apply_alloc("n0", alloc_kv("n0", 7, b=[1, 0, 0]), observed=7)
    assert [node.node_id for node in view.by_app("a") or []] == ["n1"]
    view.apply_alloc("n0", None, observed=8)
    assert view.by_app("b") is None


def test_older_observations_of_an_allocation_are_ignored() -> None:
    view = FleetView()
    view.apply_node(node_record("n"))
    assert view.apply_alloc("n", alloc_kv("n", 20, a=[1000, 0, 0]), observed=25)
    assert not view.apply_alloc("n", alloc_kv("n", 15, a=[3000, 0, 0]), observed=15)
    node = view.node("n")
    assert node is not None and node.alloc_revision == 20 and node.free_cpu == 7000

    emptied = AllocRecord("n")
    view.commit_alloc(emptied, emptied.to_bytes(), revision=30)  # a commit of this process
    assert node.alloc_revision == 30 and node.free_cpu == 8000 and not node.apps
    assert view.apply_alloc("n", None, observed=40)  # deleted
    assert node.alloc_revision == 0 and node.alloc_bytes == 0 and not node.replicas


def test_an_allocation_seen_before_its_node_counts_once_the_node_arrives() -> None:
    view = FleetView()
    assert not view.apply_alloc("ghost", None, observed=3)
    assert view.node("ghost") is None
    view.apply_alloc("n", alloc_kv("n", 5, a=[1000, GIB, 0]), observed=5)
    assert view.is_lost("n")
    view.apply_node(node_record("n", cpu=4000))
    node = view.node("n")
    assert node is not None and node.free_cpu == 3000 and not view.is_lost("n")


def test_removed_nodes_keep_their_allocation_and_count_as_lost() -> None:
    view = FleetView()
    view.apply_node(node_record("busy"))
    view.apply_node(node_record("idle"))
    view.apply_node(node_record("dead", phase=NodePhase.DEAD))
    view.apply_alloc("busy", alloc_kv("busy", 5, a=[1000, GIB, 0]), observed=5)
    view.apply_nodes([node_record("dead", phase=NodePhase.DEAD)], snapshot=True)
    assert view.node("idle") is None
    busy = view.node("busy")
    assert busy is not None and busy.alloc_revision == 5 and not busy.ready
    assert view.is_lost("busy") and view.is_lost("dead") and view.is_lost("idle")
    assert not view.by_accelerator("")


async def test_catching_up_waits_for_the_feed_to_pass_what_this_process_saw() -> None:
    view = FleetView()
    view.apply_node(node_record("n"))
    view.apply_alloc("n", alloc_kv("n", 50, a=[1, 0, 0]), observed=50)  # a lost race
    assert view.lag == 0  # nothing feeds it: never waits
    view.feed_to(10)
    assert view.lag == 40
    view.commit_alloc(AllocRecord("n"), b"", revision=51)
    assert view.lag == 40  # its own commits are no news
    waiter = asyncio.create_task(view.catch_up(8, timeout=5))
    await asyncio.sleep(0)
    view.feed_to(30)
    await asyncio.sleep(0)
    assert not waiter.done()
    view.feed_to(45)
    await asyncio.wait_for(waiter, 5)
    assert view.lag == 5
    view.apply_alloc("n", alloc_kv("n", 100, a=[2, 0, 0]), observed=100)
    started = time.monotonic()
    await view.catch_up(8, timeout=0.05)  # the feed is stuck: give up after the timeout
    assert time.monotonic() - started >= 0.05 and view.lag == 54


amounts = st.tuples(st.integers(0, 500), st.integers(0, GIB), st.integers(0, 2))
allocations = st.dictionaries(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 30)), amounts, max_size=12
)


def _summary(view: FleetView) -> tuple[object, ...]:
    node = view.node("n")
    assert node is not None
    return (
        node.apps,
        (node.free_cpu, node.free_memory, node.free_gpus),
        {app: [other.node_id for other in view.by_app(app) or []] for app in "abc"},
    )


@given(allocations, allocations, st.booleans())
def test_a_commit_given_its_changes_summarises_the_node_as_a_full_count_does(
    before: dict[tuple[str, int], tuple[int, int, int]],
    after: dict[tuple[str, int], tuple[int, int, int]],
    stale: bool,
) -> None:
    def replicas(entries: dict[tuple[str, int], tuple[int, int, int]]) -> dict[str, list[int]]:
        return {f"apps/{app}/replicas/r{n}": list(value) for (app, n), value in entries.items()}

    views = [FleetView(), FleetView()]
    for view in views:
        view.apply_node(node_record("n", cpu=100_000, memory=100 * GIB, gpus=64))
        view.hold(view.nodes["n"], "a", Quantity(100, GIB, 1))  # a plan in flight
        base = AllocRecord("n", replicas(before))
        view.apply_alloc("n", KeyValue("/astra/v1/alloc/n", base.to_bytes(), 1, 5, 1), observed=5)
    added = [(app, value) for (app, n), value in after.items() if (app, n) not in before]
    removed = [(app, value) for (app, n), value in before.items() if (app, n) not in after]
    # What stays keeps its amounts: a commit adds and removes replicas, never resizes one.
    record = AllocRecord(
        "n", replicas({key: before.get(key, value) for key, value in after.items()})
    )
    views[0].commit_alloc(
        record,
        record.to_bytes(),
        revision=7,
        base=4 if stale else 5,  # a stale base falls back on counting everything
        added=added,
        removed=removed,
    )
    views[1].commit_alloc(record, record.to_bytes(), revision=7)
    assert _summary(views[0]) == _summary(views[1])


def test_a_view_of_many_nodes_keeps_them_out_of_the_collectors_scans() -> None:
    gc.unfreeze()
    try:
        view = FleetView()
        for index in range(10_000):
            view.apply_node(node_record(f"n{index}"))
        assert gc.get_freeze_count() > 0, "10,000 nodes are frozen"
    finally:
        gc.unfreeze()
