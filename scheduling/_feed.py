"""Feeding a :class:`FleetView` from the store: a snapshot, then the watch's deltas.

Allocations always come this way (``/astra/v1/alloc/``). Nodes can too
(``/astra/v1/nodes/``), for tests, simulations and benchmarks; the App service feeds
them from the Resource service's ``WatchCluster`` stream instead
(:meth:`FleetView.apply_nodes`) and passes ``nodes=False``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Self

from astra import keys
from astra.coordination import follow_prefix
from astra.records import NodeRecord
from astra.store import Event, EventType, RangeResult, Store
from scheduling._model import FleetView


class StoreFeed:
    """Keeps ``view`` in step with the store until closed.

    Use ``async with StoreFeed(store, view):`` or :meth:`start` and :meth:`close`. A
    watch that falls behind compaction re-reads its prefix and goes on.
    """

    def __init__(self, store: Store, view: FleetView, *, nodes: bool = True) -> None:
        self._store = store
        self._view = view
        self._nodes = nodes
        self._tasks: list[asyncio.Task[None]] = []
        self._revision = 0
        self._advanced = asyncio.Event()

    @property
    def revision(self) -> int:
        """The store revision the view's allocations are known to be current at."""
        return self._revision

    async def start(self) -> int:
        """Load a consistent snapshot, then follow the watches; returns the snapshot's revision."""
        if self._tasks:
            raise RuntimeError("the feed is started already")
        revision = 0
        if self._nodes:
            nodes = await self._store.range(keys.NODES)
            self._load_nodes(nodes)
            revision = nodes.revision
        allocs = await self._store.range(keys.ALLOC, revision=revision)
        self._load_allocs(allocs)
        revision = allocs.revision
        if self._nodes:
            self._tasks.append(
                asyncio.create_task(
                    follow_prefix(
                        self._store, keys.NODES, revision, self._on_nodes, self._load_nodes
                    ),
                    name="fleet-feed-nodes",
                )
            )
        self._tasks.append(
            asyncio.create_task(
                follow_prefix(
                    self._store, keys.ALLOC, revision, self._on_allocs, self._load_allocs
                ),
                name="fleet-feed-allocs",
            )
        )
        return revision

    async def close(self) -> None:
        """Stop following. Idempotent."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait_for(self, revision: int) -> None:
        """Wait until the view's allocations are current at ``revision`` or later."""
        while self._revision < revision:
            if any(task.done() for task in self._tasks):
                raise RuntimeError("the feed stopped")
            self._advanced.clear()
            await self._advanced.wait()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- snapshot and deltas ----------------------------------------------------------

    def _load_nodes(self, result: RangeResult) -> None:
        self._view.apply_nodes(
            (NodeRecord.from_bytes(kv.value) for kv in result.kvs), snapshot=True
        )

    def _load_allocs(self, result: RangeResult) -> None:
        """Apply a read of every allocation; the view is current at its revision."""
        view, present = self._view, set()
        for kv in result.kvs:
            node_id = keys.last_segment(kv.key)
            present.add(node_id)
            view.apply_alloc(node_id, kv, observed=result.revision)
        for node_id in [
            node_id
            for node_id, node in view.nodes.items()
            if node.alloc_revision and node_id not in present
        ]:
            view.apply_alloc(node_id, None, observed=result.revision)
        self._advance(result.revision)

    def _on_nodes(self, events: list[Event]) -> None:
        for event in events:
            if event.type is EventType.PUT:
                self._view.apply_node(NodeRecord.from_bytes(event.kv.value))
            else:
                self._view.remove_node(keys.last_segment(event.kv.key))

    def _on_allocs(self, events: list[Event]) -> None:
        for event in events:
            kv = event.kv
            self._view.apply_alloc(
                keys.last_segment(kv.key),
                kv if event.type is EventType.PUT else None,
                observed=kv.mod_revision,
            )
        self._advance(events[-1].kv.mod_revision)

    def _advance(self, revision: int) -> None:
        self._revision = max(self._revision, revision)
        self._view.feed_to(revision)
        self._advanced.set()


__all__ = ["StoreFeed"]
