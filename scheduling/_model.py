"""The scheduler's picture of the fleet: nodes, what is allocated on them, and indexes.

A :class:`FleetView` is fed, never polled: node records come from the Resource
service's ``WatchCluster`` stream (or a store watch of ``/astra/v1/nodes/``) through
:meth:`FleetView.apply_node` and :meth:`FleetView.remove_node`; allocations come from a
store watch of ``/astra/v1/alloc/`` and from the planner's own transactions through
:meth:`FleetView.apply_alloc`. Every allocation carries the ``mod_revision`` a commit
compares against.

Free capacity is what the last known allocation leaves, minus what in-flight plans of
this process *hold* (:meth:`FleetView.hold`), so that schedulers sharing a view do not
plan the same capacity twice; the store remains the only arbiter.

READY nodes are indexed by accelerator (``""`` for CPU-only), by (accelerator, zone)
and by label, in :class:`Bag` objects that answer a uniform random pick in O(1): the
samplers draw candidates from the smallest index that contains every feasible node.
Nodes are also indexed by the apps their allocation holds (affinity candidates).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Generic, TypeVar

from astra import LongLived
from astra.records import AllocRecord, NodePhase, NodeRecord, Quantity
from astra.store import KeyValue
from scheduling._codec import Amounts, unpack_replicas

T = TypeVar("T")


class Bag(Generic[T]):
    """A set with O(1) add, discard and uniform random pick (a list plus positions)."""

    __slots__ = ("_at", "items")

    def __init__(self) -> None:
        self.items: list[T] = []
        self._at: dict[T, int] = {}

    def add(self, item: T) -> None:
        if item not in self._at:
            self._at[item] = len(self.items)
            self.items.append(item)

    def discard(self, item: T) -> None:
        index = self._at.pop(item, None)
        if index is None:
            return
        last = self.items.pop()
        if index < len(self.items):
            self.items[index] = last
            self._at[last] = index

    def pick(self, rng: random.Random) -> T:
        """A uniformly random member; the bag must not be empty."""
        items = self.items
        return items[int(rng.random() * len(items))]

    def __contains__(self, item: object) -> bool:
        return item in self._at

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)


def replica_app(name: str) -> str:
    """The app id of a replica name ``apps/{app_id}/replicas/{replica_id}``."""
    return name.split("/", 2)[1]


class NodeState:
    """One node as the scheduler sees it: its record's essentials, its allocation and
    what in-flight plans hold on it. Mutated only by :class:`FleetView`."""

    __slots__ = (
        "accelerator",
        "alloc_bytes",
        "alloc_revision",
        "apps",
        "cpu",
        "free_cpu",
        "free_gpus",
        "free_memory",
        "gpus",
        "held_apps",
        "held_cpu",
        "held_gpus",
        "held_memory",
        "labels",
        "memory",
        "node_id",
        "phase",
        "ready",
        "replicas",
        "seen_revision",
        "zone",
    )

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.phase = (
            ""  # the record's phase; "" until a record is applied (an allocation may come first)
        )
        self.ready = False
        self.zone = ""
        self.accelerator = ""
        self.labels: dict[str, str] = {}
        self.cpu = self.memory = self.gpus = 0
        self.free_cpu = self.free_memory = self.free_gpus = 0
        self.held_cpu = self.held_memory = self.held_gpus = 0
        self.apps: dict[str, int] = {}  # app id -> replicas in the allocation
        self.held_apps: dict[str, int] | None = None  # app id -> replicas held by plans
        self.alloc_revision = 0  # mod_revision of alloc/{node}; 0 while absent
        self.alloc_bytes = 0  # the size of its encoded value
        #: The allocation's replicas, decoded once per change observed; never mutated
        #: (a new allocation replaces the dictionary).
        self.replicas: dict[str, Amounts] = {}
        self.seen_revision = 0  # the store revision the allocation was last observed at

    def count(self, app_id: str) -> int:
        """Replicas of ``app_id`` on the node, allocated or held."""
        held = self.held_apps
        return self.apps.get(app_id, 0) + (held.get(app_id, 0) if held else 0)

    def utilization(self, cpu: int = 0, memory: int = 0, gpus: int = 0) -> float:
        """The most used dimension's share of capacity (0 to 1) once ``cpu``, ``memory``
        and ``gpus`` are added; dimensions the node lacks do not count."""
        share = 0.0
        if self.cpu:
            share = (self.cpu - self.free_cpu + cpu) / self.cpu
        if self.memory:
            share = max(share, (self.memory - self.free_memory + memory) / self.memory)
        if self.gpus:
            share = max(share, (self.gpus - self.free_gpus + gpus) / self.gpus)
        return share

    def allocation(self) -> AllocRecord:
        """The node's allocation as last observed, a copy free to change. O(replicas),
        with no decoding."""
        return AllocRecord(self.node_id, dict(self.replicas))  # type: ignore[arg-type]  # AllocRecord says lists; tuples encode alike

    def __repr__(self) -> str:
        return (
            f"NodeState({self.node_id!r}, ready={self.ready}, free=({self.free_cpu}, "
            f"{self.free_memory}, {self.free_gpus}), alloc_revision={self.alloc_revision})"
        )


class FleetView:
    """Nodes, their allocations with ``mod_revision``, and placement indexes.

    All methods are synchronous and O(1) apart from the allocations they take in:
    one observed from the store is decoded once, O(replicas on the node); one this
    process committed costs O(its changes) (:meth:`commit_alloc`). A view belongs to
    one event loop.
    """

    def __init__(self) -> None:
        self.nodes: dict[str, NodeState] = {}
        self.revision = 0  # the newest store revision an allocation was observed at
        self.fed = 0  # the revision a feed has applied every allocation change up to
        self._fed: asyncio.Event | None = None
        self._own: set[int] = set()  # revisions of this process's commits after ``fed``
        self._by_accelerator: dict[str, Bag[NodeState]] = {}
        self._by_zone: dict[tuple[str, str], Bag[NodeState]] = {}
        self._by_label: dict[tuple[str, str], Bag[NodeState]] = {}
        self._by_app: dict[str, Bag[NodeState]] = {}
        #: Nodes live long: once there are many, the garbage collector leaves them be.
        self._long_lived = LongLived()

    # -- nodes ---------------------------------------------------------------------

    def apply_node(self, record: NodeRecord) -> None:
        """Add or update a node from its record (phase, capacity, labels, zone...)."""
        node = self.nodes.get(record.node_id)
        if node is None:
            node = self._add(record.node_id)
        self._unindex(node)
        committed = (
            node.cpu - node.free_cpu - node.held_cpu,
            node.memory - node.free_memory - node.held_memory,
            node.gpus - node.free_gpus - node.held_gpus,
        )
        capacity = record.capacity
        node.phase = record.phase
        node.ready = record.phase == NodePhase.READY
        node.zone = sys.intern(record.zone)
        node.accelerator = sys.intern(record.accelerator)
        node.labels = record.labels
        node.cpu, node.memory, node.gpus = capacity.cpu_millis, capacity.memory_bytes, capacity.gpus
        _set_free(node, committed)
        self._index(node)

    def _add(self, node_id: str) -> NodeState:
        node = self.nodes[node_id] = NodeState(node_id)
        self._long_lived.grew_to(len(self.nodes))
        return node

    def remove_node(self, node_id: str) -> None:
        """Forget a node that left the fleet; its allocation is kept while it names replicas."""
        node = self.nodes.get(node_id)
        if node is None:
            return
        self._unindex(node)
        if node.alloc_revision:
            node.phase, node.ready = "", False
        else:
            del self.nodes[node_id]

    def apply_nodes(
        self, records: Iterable[NodeRecord], removed: Iterable[str] = (), *, snapshot: bool = False
    ) -> None:
        """Apply one message of a snapshot-then-deltas node stream (``WatchCluster``).

        With ``snapshot``, nodes not in ``records`` are removed.
        """
        records = list(records)
        if snapshot:
            present = {record.node_id for record in records}
            removed = [
                node_id
                for node_id, node in self.nodes.items()
                if node.phase and node_id not in present
            ]
        for node_id in removed:
            self.remove_node(node_id)
        for record in records:
            self.apply_node(record)

    def node(self, node_id: str) -> NodeState | None:
        return self.nodes.get(node_id)

    def is_lost(self, node_id: str) -> bool:
        """Whether replicas on ``node_id`` are gone with it: the node is DEAD or unknown."""
        node = self.nodes.get(node_id)
        return node is None or node.phase in ("", NodePhase.DEAD)

    # -- allocations ---------------------------------------------------------------

    def apply_alloc(self, node_id: str, kv: KeyValue | None, *, observed: int) -> bool:
        """Record ``alloc/{node_id}`` as observed at store revision ``observed``
        (``kv`` ``None`` or empty: absent). Older observations than the last are ignored.

        Returns:
            Whether the allocation's ``mod_revision`` changed.
        """
        revision = kv.mod_revision if kv is not None and kv.value else 0
        node = self.nodes.get(node_id)
        if node is None:
            if not revision:
                return False
            node = self._add(node_id)
        if observed < node.seen_revision:
            return False
        node.seen_revision = observed
        self.revision = max(self.revision, observed)
        if revision == node.alloc_revision:
            return False
        if revision:
            assert kv is not None
            self._set_alloc(node, revision, len(kv.value), unpack_replicas(kv.value))
        else:
            self._set_alloc(node, 0, 0, {})
        return True

    def commit_alloc(
        self,
        record: AllocRecord,
        value: bytes,
        *,
        revision: int,
        base: int | None = None,
        added: Iterable[tuple[str, Amounts]] = (),
        removed: Iterable[tuple[str, Sequence[int]]] = (),
    ) -> None:
        """Record an allocation this process wrote at ``revision``: ``record``, encoded
        as ``value``. The view keeps ``record.replicas``: it must not change afterwards.

        With ``base``, the mod_revision the record was made from, ``added`` and
        ``removed`` are its differences from that allocation (the app id and amounts of
        each replica): while the view still holds that one, it is updated in
        O(changes) rather than O(replicas on the node).
        """
        node = self.nodes.get(record.node_id)
        if node is None or revision < node.seen_revision or revision == node.alloc_revision:
            return  # gone, or the feed was first
        node.seen_revision = revision
        self.revision = max(self.revision, revision)
        if revision > self.fed:
            self._own.add(revision)
        replicas: dict[str, Amounts] = record.replicas  # type: ignore[assignment]  # only read: list or tuple alike
        if base is not None and base == node.alloc_revision:
            apps, used = _changed(node, added, removed)
        else:
            apps, used = _summary(replicas)
        self._set_alloc(node, revision, len(value), replicas, apps, used)

    def _set_alloc(
        self,
        node: NodeState,
        revision: int,
        size: int,
        replicas: dict[str, Amounts],
        apps: dict[str, int] | None = None,
        used: Amounts = (0, 0, 0),
    ) -> None:
        """Make ``replicas`` (``size`` bytes encoded) the node's allocation at
        ``revision`` (0: absent), with its replicas per app and its total amounts
        when known. O(replicas) when not."""
        if apps is None:
            apps, used = _summary(replicas)
        node.alloc_revision = revision
        node.alloc_bytes = size
        node.replicas = replicas
        self._reindex_apps(node, apps)
        _set_free(node, used)
        if not node.phase and not revision and not node.held_apps:
            del self.nodes[node.node_id]

    def _reindex_apps(self, node: NodeState, apps: dict[str, int]) -> None:
        """Set the node's app counts, keeping :meth:`by_app` in step. O(apps on node)."""
        before, node.apps = node.apps, apps
        for app_id in before.keys() - apps.keys():
            bag = self._by_app[app_id]
            bag.discard(node)
            if not bag:
                del self._by_app[app_id]
        for app_id in apps.keys() - before.keys():
            _bag(self._by_app, app_id).add(node)

    # -- freshness -----------------------------------------------------------------

    def feed_to(self, revision: int) -> None:
        """A feed applied every allocation change up to ``revision``."""
        self.fed = max(self.fed, revision)
        self.revision = max(self.revision, revision)
        self._own = {own for own in self._own if own > self.fed}
        if self._fed is not None:
            self._fed.set()
            self._fed = None

    @property
    def lag(self) -> int:
        """Revisions this process has seen (by its commits and lost races) beyond what
        the feed has applied, less those of its own commits, which it knows already:
        how many changes by others the view may be missing. 0 while nothing feeds it."""
        return self.revision - self.fed - len(self._own) if self.fed else 0

    async def catch_up(self, max_lag: int, *, timeout: float) -> None:
        """Wait, at most ``timeout`` seconds, until :attr:`lag` is ``max_lag`` or less.

        Planning on a view far behind the store is what loses races: in a busy process
        the feed gets one turn of the event loop per watch message, while every
        scheduler commits in its own turns.
        """
        if self.lag <= max_lag:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self.lag > max_lag:
                    if self._fed is None:
                        self._fed = asyncio.Event()
                    await self._fed.wait()

    # -- holds of in-flight plans --------------------------------------------------

    def hold(self, node: NodeState, app_id: str, resources: Quantity) -> None:
        """Reserve ``resources`` on ``node`` for a replica of ``app_id`` being planned."""
        _add_hold(node, app_id, resources, 1)

    def release(self, node_id: str, app_id: str, resources: Quantity, count: int = 1) -> None:
        """Undo ``count`` identical :meth:`hold` calls once their plan is committed or
        rejected. O(1), whatever ``count``."""
        node = self.nodes.get(node_id)
        if node is not None:
            _add_hold(node, app_id, resources, -count)

    # -- indexes -------------------------------------------------------------------

    def by_accelerator(self, accelerator: str) -> Bag[NodeState] | None:
        """READY nodes with ``accelerator`` (``""``: CPU-only)."""
        return self._by_accelerator.get(accelerator)

    def by_zone(self, accelerator: str, zone: str) -> Bag[NodeState] | None:
        """READY nodes with ``accelerator`` in ``zone``."""
        return self._by_zone.get((accelerator, zone))

    def by_label(self, key: str, value: str) -> Bag[NodeState] | None:
        """READY nodes labelled ``key=value``."""
        return self._by_label.get((key, value))

    def by_app(self, app_id: str) -> Bag[NodeState] | None:
        """Nodes whose allocation holds replicas of ``app_id`` (READY or not)."""
        return self._by_app.get(app_id)

    def gpu_accelerators(self) -> list[str]:
        """Accelerator types with READY nodes, sorted."""
        return sorted(name for name, bag in self._by_accelerator.items() if name and bag)

    def zones(self, accelerator: str) -> list[str]:
        """Zones with READY nodes of ``accelerator``, sorted."""
        return sorted(
            zone for (name, zone), bag in self._by_zone.items() if name == accelerator and bag
        )

    def _index(self, node: NodeState) -> None:
        if not node.ready:
            return
        _bag(self._by_accelerator, node.accelerator).add(node)
        _bag(self._by_zone, (node.accelerator, node.zone)).add(node)
        for item in node.labels.items():
            _bag(self._by_label, item).add(node)

    def _unindex(self, node: NodeState) -> None:
        if not node.ready:
            return
        self._by_accelerator[node.accelerator].discard(node)
        self._by_zone[(node.accelerator, node.zone)].discard(node)
        for item in node.labels.items():
            self._by_label[item].discard(node)


K = TypeVar("K")


def _bag(index: dict[K, Bag[NodeState]], key: K) -> Bag[NodeState]:
    bag = index.get(key)
    if bag is None:
        bag = index[key] = Bag()
    return bag


def _summary(replicas: dict[str, Amounts]) -> tuple[dict[str, int], Amounts]:
    """An allocation's replicas per app and total amounts. O(replicas)."""
    apps: dict[str, int] = {}
    cpu = memory = gpus = 0
    for name, (r_cpu, r_memory, r_gpus) in replicas.items():
        app_id = sys.intern(replica_app(name))
        apps[app_id] = apps.get(app_id, 0) + 1
        cpu += r_cpu
        memory += r_memory
        gpus += r_gpus
    return apps, (cpu, memory, gpus)


def _changed(
    node: NodeState,
    added: Iterable[tuple[str, Sequence[int]]],
    removed: Iterable[tuple[str, Sequence[int]]],
) -> tuple[dict[str, int], Amounts]:
    """:func:`_summary` of the node's allocation with ``added`` and ``removed`` applied.
    O(changes + apps on the node)."""
    apps = dict(node.apps)
    cpu = node.cpu - node.free_cpu - node.held_cpu  # what the allocation uses now
    memory = node.memory - node.free_memory - node.held_memory
    gpus = node.gpus - node.free_gpus - node.held_gpus
    for sign, changes in ((1, added), (-1, removed)):
        for app_id, (r_cpu, r_memory, r_gpus) in changes:
            count = apps.get(app_id, 0) + sign
            if count:
                apps[app_id] = count
            else:
                del apps[app_id]
            cpu += sign * r_cpu
            memory += sign * r_memory
            gpus += sign * r_gpus
    return apps, (cpu, memory, gpus)


def _set_free(node: NodeState, committed: tuple[int, int, int]) -> None:
    node.free_cpu = node.cpu - committed[0] - node.held_cpu
    node.free_memory = node.memory - committed[1] - node.held_memory
    node.free_gpus = node.gpus - committed[2] - node.held_gpus


def _add_hold(node: NodeState, app_id: str, resources: Quantity, times: int) -> None:
    """Hold ``resources`` ``times`` more (fewer, when negative) on ``node`` for ``app_id``."""
    cpu, memory, gpus = (
        times * resources.cpu_millis,
        times * resources.memory_bytes,
        times * resources.gpus,
    )
    node.held_cpu += cpu
    node.held_memory += memory
    node.held_gpus += gpus
    node.free_cpu -= cpu
    node.free_memory -= memory
    node.free_gpus -= gpus
    held = node.held_apps
    if held is None:
        held = node.held_apps = {}
    count = held.get(app_id, 0) + times
    if count:
        held[app_id] = count
    else:
        del held[app_id]
        if not held:
            node.held_apps = None


__all__ = ["Bag", "FleetView", "NodeState", "replica_app"]
