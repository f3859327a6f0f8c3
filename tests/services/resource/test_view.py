"""The Resource service's cluster view on a real (in-memory) store: a watch that falls
behind a compaction reads the fleet again and reports exactly what changed."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from astra import keys
from astra.records import AllocRecord, NodePhase, NodeRecord, Quantity
from astra.store import open_store
from services.resource._view import ClusterView, ViewNode

GIB = 1 << 30


def _record(node_id: str, zone: str = "z0") -> bytes:
    return NodeRecord(
        node_id=node_id,
        uid=f"uid-{node_id}",
        capacity=Quantity(8000, 16 * GIB, 0),
        zone=zone,
        phase=NodePhase.READY.value,
    ).to_bytes()


async def test_a_view_behind_compaction_reads_nodes_and_allocations_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with await open_store("memory://") as store:
        for node_id in ("a", "b", "c"):
            await store.put(keys.node(node_id), _record(node_id))
        view = ClusterView(store)
        await view.load()
        changes: list[tuple[str, bool]] = []

        def listener(name: str, old: ViewNode | None, new: ViewNode | None) -> None:
            changes.append((name, new is not None))

        view.listeners.append(listener)
        view.take_changes()

        # While nobody follows: a node moves zone, one leaves, one joins, one allocation.
        await store.put(keys.node("b"), _record("b", zone="z1"))
        await store.delete(keys.node("c"))
        await store.put(keys.node("d"), _record("d"))
        alloc = AllocRecord("a", {"app/r0": [2000, GIB, 0]})
        last = await store.put(keys.alloc("a"), alloc.to_bytes())
        await store.compact(last.revision)

        tasks = [
            asyncio.create_task(view.follow_nodes()),
            asyncio.create_task(view.follow_allocs()),
        ]
        try:
            assert await view.wait_revision(last.revision - 1, timeout=5)
            async with asyncio.timeout(5):
                while view.allocated("nodes/a") is None:
                    await asyncio.sleep(0.01)
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        assert sorted(view.nodes) == ["nodes/a", "nodes/b", "nodes/d"]
        assert sorted(changes) == [("nodes/b", True), ("nodes/c", False), ("nodes/d", True)]
        changed, removed = view.take_changes()
        assert changed == {"nodes/a", "nodes/b", "nodes/d"} and removed == {"nodes/c"}
        assert view.allocated("nodes/a") == Quantity(2000, GIB, 0)
    assert "fell behind compaction" in caplog.text
