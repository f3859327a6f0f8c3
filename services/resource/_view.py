"""The fleet as the store holds it: every node's record and allocation, fed by watches.

Every replica keeps the whole view, so it can serve reads, aggregate pools and compute
owners for any node. Heartbeats never touch it: it changes only when a record changes
in the store, whoever wrote it. Memory per node: the packed record (about 200 bytes), a
five-slot entry and the name; nodes with an allocation hold a small extra entry.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import heapq
import itertools
from collections.abc import Callable, Iterable

from astra import keys
from astra.coordination import follow_prefix
from astra.records import AllocRecord, NodeRecord, Quantity
from astra.store import CompactedError, Event, EventType, Get, KeyValue, RangeResult, Store
from services.resource._convert import PHASES, Stored, node_name
from services.resource._pools import PoolKey, Pools

#: Removals remembered for subscribers that resume: beyond these, they get a snapshot.
MAX_TOMBSTONES = 65536


class ViewNode:
    """One node's record (packed, see :class:`Stored`), its phase and pool (both interned:
    shared objects), and its name (the very object the view is keyed by, for others to share)."""

    __slots__ = ("data", "mod_revision", "name", "phase", "pool")

    def __init__(
        self, name: str, data: bytes, mod_revision: int, phase: str, pool: PoolKey
    ) -> None:
        self.name = name
        self.data = data
        self.mod_revision = mod_revision
        self.phase = phase
        self.pool = pool

    def stored(self) -> Stored:
        return Stored(self.data, self.mod_revision)


class Alloc:
    """What is placed on one node, as the schedulers last committed it."""

    __slots__ = ("mod_revision", "replicas", "used")

    def __init__(self, used: Quantity, replicas: int, mod_revision: int) -> None:
        self.used = used
        self.replicas = replicas
        self.mod_revision = mod_revision


#: Called with a node's name and its entries before and after a change.
Listener = Callable[[str, ViewNode | None, ViewNode | None], None]


class ClusterView:
    """Nodes and allocations from the store, kept current by two watches.

    Lookups are O(1); :meth:`sorted_names` sorts once per membership change. Changes
    are collected for the aggregator (:meth:`take_changes`) and passed to listeners.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self.nodes: dict[str, ViewNode] = {}
        self.allocs: dict[str, Alloc] = {}
        self.pools = Pools()
        #: The revision of the newest node event applied (the subscribers' revision).
        self.revision = 0
        #: The same for allocations.
        self.alloc_revision = 0
        self.listeners: list[Listener] = []
        self._changed: set[str] = set()
        self._removed: set[str] = set()
        #: Removals (revision, name) in order, and the revision after which all are known.
        self._tombstones: collections.deque[tuple[int, str]] = collections.deque()
        self._horizon = 0
        self._pool_keys: dict[PoolKey, PoolKey] = {}
        self._sorted: list[str] | None = None
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    # -- reads -----------------------------------------------------------------------

    def stored(self, name: str) -> Stored | None:
        entry = self.nodes.get(name)
        return None if entry is None else entry.stored()

    def canonical(self, name: str) -> str:
        """The view's own object for ``name`` (so that the fleet's names exist once)."""
        entry = self.nodes.get(name)
        return name if entry is None else entry.name

    def allocated(self, name: str) -> Quantity | None:
        alloc = self.allocs.get(name)
        return None if alloc is None else alloc.used

    def sorted_names(self) -> list[str]:
        """Every node name in order; O(n log n) after nodes joined or left, else O(1)."""
        if self._sorted is None:
            self._sorted = sorted(self.nodes)
        return self._sorted

    def names_from(self, after: str) -> list[str]:
        """Node names greater than ``after``, in order (a view of the cached list's tail)."""
        names = self.sorted_names()
        return names[bisect.bisect_right(names, after) :]

    async def wait_revision(self, revision: int, timeout: float) -> bool:
        """Wait until node events up to ``revision`` are applied; ``False`` on timeout."""
        if self.revision >= revision:
            return True
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (revision, next(self._order), future))
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return False
        return True

    def changes_since(self, start: int) -> tuple[list[str], list[str]]:
        """Names of nodes changed, and of nodes removed, at or after revision ``start``,
        for a subscriber that resumes. O(nodes + remembered removals).

        Raises:
            CompactedError: removals that old are no longer remembered (or predate this
                view): the subscriber needs a snapshot.
        """
        if start <= self._horizon:
            raise CompactedError(start, self._horizon + 1)
        changed = [name for name, entry in self.nodes.items() if entry.mod_revision >= start]
        removed = [
            name
            for revision, name in self._tombstones
            if revision >= start and name not in self.nodes
        ]
        return changed, list(dict.fromkeys(removed))

    def take_changes(self) -> tuple[set[str], set[str]]:
        """Names of nodes changed and removed since the last call."""
        changed, removed = self._changed, self._removed
        self._changed, self._removed = set(), set()
        return changed, removed

    # -- loading and following ---------------------------------------------------------

    async def load(self) -> None:
        """Read every node and allocation at one revision."""
        result = await self._store.txn(
            (), (Get(keys.NODES, prefix=True), Get(keys.ALLOC, prefix=True))
        )
        nodes, allocs = result.results
        assert isinstance(nodes, RangeResult) and isinstance(allocs, RangeResult)
        self._reload_allocs(allocs.kvs)
        self._reload_nodes(nodes.kvs, result.revision)
        self.revision = self.alloc_revision = self._horizon = result.revision
        self._wake(result.revision)

    async def follow_nodes(self) -> None:
        """Apply node events forever."""
        await follow_prefix(
            self._store, keys.NODES, self.revision, self._node_events, self._reread_nodes
        )

    async def follow_allocs(self) -> None:
        """Apply allocation events forever."""
        await follow_prefix(
            self._store, keys.ALLOC, self.alloc_revision, self._alloc_events, self._reread_allocs
        )

    def _node_events(self, events: list[Event]) -> None:
        for event in events:
            name = node_name(event.kv.key[len(keys.NODES) :])
            self._set_node(
                name, None if event.type is EventType.DELETE else event.kv, event.kv.mod_revision
            )
        self.revision = events[-1].kv.mod_revision
        self._wake(self.revision)

    def _reread_nodes(self, result: RangeResult) -> None:
        self._reload_nodes(result.kvs, result.revision)
        self.revision = result.revision
        self._wake(result.revision)

    def _alloc_events(self, events: list[Event]) -> None:
        for event in events:
            name = node_name(event.kv.key[len(keys.ALLOC) :])
            self._set_alloc(name, None if event.type is EventType.DELETE else event.kv)
        self.alloc_revision = events[-1].kv.mod_revision

    def _reread_allocs(self, result: RangeResult) -> None:
        self._reload_allocs(result.kvs)
        self.alloc_revision = result.revision

    def _wake(self, revision: int) -> None:
        while self._waiters and self._waiters[0][0] <= revision:
            future = heapq.heappop(self._waiters)[2]
            if not future.done():
                future.set_result(None)

    # -- applying changes --------------------------------------------------------------

    def _reload_nodes(self, kvs: Iterable[KeyValue], revision: int) -> None:
        fresh = {node_name(kv.key[len(keys.NODES) :]): kv for kv in kvs}
        for name in [name for name in self.nodes if name not in fresh]:
            self._set_node(name, None, revision)
        for name, kv in fresh.items():
            entry = self.nodes.get(name)
            if entry is None or entry.mod_revision != kv.mod_revision:
                self._set_node(name, kv, revision)

    def _set_node(self, name: str, kv: KeyValue | None, revision: int) -> None:
        old = self.nodes.get(name)
        if old is not None:
            self._account(name, old, -1)
        if kv is None:
            if old is None:
                return
            del self.nodes[name]
            self._sorted = None
            self._changed.discard(name)
            self._removed.add(name)
            self._tombstones.append((revision, name))
            if len(self._tombstones) > MAX_TOMBSTONES:
                self._horizon = self._tombstones.popleft()[0]
            new = None
        else:
            record = NodeRecord.from_bytes(kv.value)
            pool = (record.accelerator, record.zone)
            pool = self._pool_keys.setdefault(pool, pool)
            name = old.name if old is not None else name
            data = Stored.of(record, kv.mod_revision).data
            new = ViewNode(
                name, data, kv.mod_revision, PHASES.get(record.phase, record.phase), pool
            )
            self.nodes[name] = new
            if old is None:
                self._sorted = None
                self._removed.discard(name)
            self._changed.add(name)
            self.pools.account(pool, new.phase, record.capacity, self.allocated(name), 1)
        for listener in self.listeners:
            listener(name, old, new)

    def _account(self, name: str, entry: ViewNode, sign: int) -> None:
        capacity = entry.stored().record().capacity
        self.pools.account(entry.pool, entry.phase, capacity, self.allocated(name), sign)

    def _reload_allocs(self, kvs: Iterable[KeyValue]) -> None:
        fresh = {node_name(kv.key[len(keys.ALLOC) :]): kv for kv in kvs}
        for name in [name for name in self.allocs if name not in fresh]:
            self._set_alloc(name, None)
        for name, kv in fresh.items():
            self._set_alloc(name, kv)

    def _set_alloc(self, name: str, kv: KeyValue | None) -> None:
        entry = self.nodes.get(name)
        if entry is not None:
            self._account(name, entry, -1)
        if kv is None:
            self.allocs.pop(name, None)
        else:
            record = AllocRecord.from_bytes(kv.value)
            self.allocs[name] = Alloc(record.used(), len(record.replicas), kv.mod_revision)
        if entry is not None:
            self._account(name, entry, 1)
            self._changed.add(name)
