"""WatchCluster: one snapshot, then coalesced deltas per tick, with pool summaries.

Subscribers never see raw heartbeats. Every ``tick`` the aggregator takes what changed in
the view (records written by any replica, allocations) and, for subscribers that want
usage, the nodes whose usage moved by a step (see the registry), and builds one delta
shared by every subscriber that is keeping up. A subscriber that is slow to read does not
queue deltas: its pending one absorbs the next (later versions of a node replace earlier
ones), so its memory is bounded by the fleet, and it simply gets bigger deltas.

Usage comes from heartbeats held in memory, so a subscriber sees the usage of the nodes
owned by the replica it is connected to (all of them when one replica runs).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

from astra import release_free_memory
from astra._gen.astra.v1 import node_pb2
from astra._gen.astra.v1 import resource_service_pb2 as rs
from services.resource._convert import fill_node
from services.resource._pools import PoolKey
from services.resource._registry import Registry
from services.resource._view import ClusterView

#: Nodes converted between two yields to the event loop while building a big message.
_CHUNK = 1000
#: A snapshot of this many nodes is big enough to hand its memory back once sent...
_RELEASE_AFTER = 5000
#: ...which it surely is after this many seconds.
_RELEASE_DELAY = 1.0


class _Delta:
    """Changes since a subscriber's previous message: nodes by name, removals, pools."""

    __slots__ = ("_message", "nodes", "pools", "removed", "revision")

    def __init__(
        self,
        revision: int,
        nodes: dict[str, node_pb2.Node],
        removed: set[str],
        pools: dict[PoolKey, node_pb2.PoolSummary],
    ) -> None:
        self.revision = revision
        self.nodes = nodes
        self.removed = removed
        self.pools = pools
        self._message: rs.WatchClusterResponse | None = None

    def then(self, later: _Delta) -> _Delta:
        """This delta followed by ``later``, as one (neither is changed)."""
        nodes = {name: node for name, node in self.nodes.items() if name not in later.removed}
        nodes.update(later.nodes)
        removed = (self.removed - later.nodes.keys()) | later.removed
        return _Delta(later.revision, nodes, removed, self.pools | later.pools)

    def message(self) -> rs.WatchClusterResponse:
        """The response for this delta (built once, shared by its subscribers)."""
        if self._message is None:
            self._message = rs.WatchClusterResponse(
                revision=self.revision,
                nodes=self.nodes.values(),
                removed_nodes=sorted(self.removed),
                pools=self.pools.values(),
            )
        return self._message


class _Subscriber:
    __slots__ = ("pending", "ready", "usage")

    def __init__(self, usage: bool) -> None:
        self.usage = usage
        self.pending: _Delta | None = None
        self.ready = asyncio.Event()

    def offer(self, delta: _Delta) -> None:
        self.pending = delta if self.pending is None else self.pending.then(delta)
        self.ready.set()


class Aggregator:
    """Builds deltas from the view every tick and hands them to subscribers.

    Args:
        view: the fleet from the store.
        registry: heartbeat usage of the nodes this replica owns.
        tick: seconds between deltas (a transition reaches subscribers at most one tick
            after the view sees it).
    """

    def __init__(self, view: ClusterView, registry: Registry, *, tick: float) -> None:
        self._view = view
        self._registry = registry
        self._tick = tick
        self._subscribers: set[_Subscriber] = set()
        self._publishing = asyncio.Lock()

    async def run(self) -> None:
        """Publish a delta every tick, forever."""
        while True:
            await asyncio.sleep(self._tick)
            async with self._publishing:
                await self._publish()

    async def _publish(self) -> None:
        """Hand what changed since the last call to every subscriber. O(changes); a big
        delta is built in chunks, yielding to the event loop. Callers hold the lock, so
        deltas reach each subscriber in order."""
        changed, removed = self._view.take_changes()
        pools = self._view.pools.take_dirty()
        usage_changed = self._registry.take_usage_changed()
        subscribers = list(self._subscribers)
        if not subscribers:
            return
        summaries = {pool: self._view.pools.summary(pool) for pool in pools}
        deltas: dict[bool, _Delta] = {}
        for usage in {subscriber.usage for subscriber in subscribers}:
            names = changed | usage_changed if usage else changed
            deltas[usage] = _Delta(
                self._view.revision, await self._nodes(names, usage), removed, summaries
            )
        for subscriber in subscribers:
            delta = deltas[subscriber.usage]
            if delta.nodes or delta.removed or delta.pools:
                subscriber.offer(delta)

    async def _nodes(self, names: Iterable[str], usage: bool) -> dict[str, node_pb2.Node]:
        nodes = {}
        for index, name in enumerate(names, 1):
            node = self._node(name, usage)
            if node is not None:
                nodes[name] = node
            if index % _CHUNK == 0:
                await asyncio.sleep(0)
        return nodes

    def _node(
        self, name: str, usage: bool, target: node_pb2.Node | None = None
    ) -> node_pb2.Node | None:
        entry = self._view.nodes.get(name)
        if entry is None:
            return None
        return fill_node(
            node_pb2.Node() if target is None else target,
            entry.stored(),
            allocated=self._view.allocated(name),
            usage=self._registry.usage(name) if usage else None,
        )

    async def watch(
        self, request: rs.WatchClusterRequest
    ) -> AsyncIterator[rs.WatchClusterResponse]:
        """The subscriber's stream: a snapshot and a progress message (no change, the
        snapshot's revision), or what it missed since its ``start_revision``; then a delta
        whenever something changed.

        Raises:
            CompactedError: ``start_revision`` is older than the removals this replica
                remembers: watch again from 0.
        """
        subscriber = _Subscriber(usage=not request.omit_usage)
        async with self._publishing:
            # Hand the changes not yet published to the other subscribers: the snapshot
            # (or catch-up) has them, so the first delta does not repeat them.
            await self._publish()
            self._subscribers.add(subscriber)
        try:
            if request.start_revision:
                yield await self._catch_up(request.start_revision, subscriber.usage)
            else:
                snapshot = await self._snapshot(subscriber.usage)
                size, revision = len(snapshot.nodes), snapshot.revision
                yield snapshot
                del snapshot
                # Progress: in sync at this revision. It also makes gRPC, which holds on to
                # the last message of a stream, let go of the snapshot.
                yield rs.WatchClusterResponse(revision=revision)
                if size >= _RELEASE_AFTER:  # give the snapshot's buffers back to the OS
                    asyncio.get_running_loop().call_later(_RELEASE_DELAY, release_free_memory)
            while True:
                await subscriber.ready.wait()
                subscriber.ready.clear()
                delta, subscriber.pending = subscriber.pending, None
                if delta is not None:
                    yield delta.message()
        finally:
            self._subscribers.discard(subscriber)

    async def _snapshot(self, usage: bool) -> rs.WatchClusterResponse:
        """Every node and pool. A big snapshot is built in chunks, yielding to the event
        loop; changes made meanwhile reach the subscriber (again) in its next delta, so
        the snapshot plus deltas is never behind."""
        message = rs.WatchClusterResponse(revision=self._view.revision, snapshot=True)
        await self._add_nodes(message, list(self._view.nodes), usage)
        message.pools.extend(self._view.pools.summary(pool) for pool in self._view.pools.all())
        return message

    async def _catch_up(self, start: int, usage: bool) -> rs.WatchClusterResponse:
        """What changed at or after revision ``start``: current versions of changed nodes,
        removals, and every pool."""
        changed, removed = self._view.changes_since(start)
        message = rs.WatchClusterResponse(
            revision=max(self._view.revision, start - 1), removed_nodes=removed
        )
        await self._add_nodes(message, changed, usage)
        message.pools.extend(self._view.pools.summary(pool) for pool in self._view.pools.all())
        return message

    async def _add_nodes(
        self, message: rs.WatchClusterResponse, names: list[str], usage: bool
    ) -> None:
        for index, name in enumerate(names, 1):
            if name in self._view.nodes:
                self._node(name, usage, message.nodes.add())
            if index % _CHUNK == 0:
                await asyncio.sleep(0)
