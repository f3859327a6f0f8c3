"""StoreFeed: a view kept current by a snapshot and the watch's deltas."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from astra import keys
from astra.records import AllocRecord, NodePhase
from astra.store import Event, Store, open_store
from scheduling import FleetView, StoreFeed
from tests.scheduling.fleets import JitterStore, eventually, node_record, write_nodes


def alloc_value(node_id: str, cpu: int) -> bytes:
    return AllocRecord(node_id, {"apps/a/replicas/c0-0": [cpu, 0, 0]}).to_bytes()


async def test_the_view_follows_nodes_and_allocations() -> None:
    async with await open_store("memory://") as store:
        await write_nodes(store, [node_record("n0"), node_record("n1")])
        await store.put(keys.alloc("n0"), alloc_value("n0", 1000))
        view = FleetView()
        async with StoreFeed(store, view) as feed:
            n0 = view.node("n0")
            assert n0 is not None and n0.free_cpu == 7000 and n0.alloc_revision == feed.revision
            revision = (await store.put(keys.alloc("n1"), alloc_value("n1", 3000))).revision
            await feed.wait_for(revision)
            assert view.nodes["n1"].free_cpu == 5000 and view.nodes["n1"].alloc_revision == revision
            await store.delete(keys.alloc("n0"))
            await write_nodes(
                store, [node_record("n2", zone="z9"), node_record("n1", phase=NodePhase.DEAD)]
            )
            await store.delete(keys.node("n0"))
            await eventually(
                lambda: "n0" not in view.nodes and view.is_lost("n1") and "n2" in view.nodes
            )
            assert view.zones("") == ["z9"]


async def test_nodes_can_come_from_another_stream() -> None:
    async with await open_store("memory://") as store:
        await write_nodes(store, [node_record("stored")])
        await store.put(keys.alloc("n0"), alloc_value("n0", 1000))
        view = FleetView()
        async with StoreFeed(store, view, nodes=False):
            assert view.is_lost("n0") and view.node("stored") is None
            view.apply_nodes([node_record("n0")], snapshot=True)  # e.g. from WatchCluster
            assert view.nodes["n0"].free_cpu == 7000


class GatedStore(JitterStore):
    """A store whose watches wait for a gate to open, to let them fall behind."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner, random.Random(0), max_yields=0)
        self.gate = asyncio.Event()

    async def _watch(self, prefix: str, start_revision: int) -> AsyncIterator[list[Event]]:
        await self.gate.wait()
        async for events in super()._watch(prefix, start_revision):
            yield events


async def test_a_feed_behind_compaction_reads_everything_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = GatedStore(await open_store("memory://"))
    async with store:
        await write_nodes(store, [node_record("n0")])
        view = FleetView()
        async with StoreFeed(store, view) as feed:
            await store.put(keys.alloc("n0"), alloc_value("n0", 2000))
            await write_nodes(store, [node_record("n1")])
            revision = (await store.put(keys.alloc("n1"), alloc_value("n1", 500))).revision
            await store.compact(revision)
            store.gate.set()
            await feed.wait_for(revision)
            await eventually(
                lambda: "n1" in view.nodes and view.nodes["n1"].phase == NodePhase.READY
            )
            assert view.nodes["n0"].free_cpu == 6000 and view.nodes["n1"].free_cpu == 7500
    assert "fell behind compaction" in caplog.text
