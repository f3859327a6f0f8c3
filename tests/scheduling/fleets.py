"""Fleets, specs and invariant checks shared by the scheduling tests.

The invariants are checked against the store, independently of the scheduler's code:
the history of every allocation is replayed to prove that no node was ever
over-committed and no replica was ever on two nodes.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass

from hypothesis import strategies as st

from astra import keys
from astra.records import AllocRecord, NodePhase, NodeRecord, Quantity, ReplicaRecord
from astra.store import MAX_TXN_OPS, Compare, Event, Lease, Op, Put, RangeResult, Store, TxnResult
from scheduling import AppSpec, ConflictMode, Strategy

GIB = 1 << 30
ZONES = ("z0", "z1", "z2")
GPU_TYPES = ("a10g", "h100")


def node_record(
    node_id: str,
    *,
    cpu: int = 8000,
    memory: int = 16 * GIB,
    gpus: int = 0,
    accelerator: str = "",
    zone: str = "z0",
    labels: dict[str, str] | None = None,
    phase: NodePhase = NodePhase.READY,
) -> NodeRecord:
    return NodeRecord(
        node_id=node_id,
        uid=f"uid-{node_id}",
        capacity=Quantity(cpu, memory, gpus),
        zone=zone,
        accelerator=accelerator,
        labels=labels or {},
        phase=phase.value,
    )


def spec(
    app_id: str,
    replicas: int,
    *,
    cpu: int = 500,
    memory: int = GIB,
    gpus: int = 0,
    **options: object,
) -> AppSpec:
    return AppSpec(
        app_id=app_id, replicas=replicas, resources=Quantity(cpu, memory, gpus), **options
    )  # type: ignore[arg-type]


async def write_nodes(store: Store, records: Iterable[NodeRecord]) -> int:
    """Put node records, many per transaction; returns the last revision."""
    puts = [Put(keys.node(record.node_id), record.to_bytes()) for record in records]
    revision = 0
    for start in range(0, len(puts), MAX_TXN_OPS):
        revision = (await store.txn((), puts[start : start + MAX_TXN_OPS])).revision
    return revision


async def eventually(condition: Callable[[], bool], *, timeout: float = 5.0) -> None:
    """Wait until ``condition()`` holds, checking every few milliseconds, or fail."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.005)


class JitterStore(Store):
    """A real store whose every call first yields to the event loop a random number of
    times, so that racing schedulers interleave differently from one example to the next."""

    def __init__(self, inner: Store, rng: random.Random, *, max_yields: int = 4) -> None:
        self._inner = inner
        self._rng = rng
        self._max_yields = max_yields

    async def _jitter(self) -> None:
        for _ in range(self._rng.randint(0, self._max_yields)):
            await asyncio.sleep(0)

    async def _range(self, key: str, *, prefix: bool, limit: int, revision: int) -> RangeResult:
        await self._jitter()
        return await self._inner._range(key, prefix=prefix, limit=limit, revision=revision)

    async def _txn(
        self, compares: list[Compare], success: list[Op], failure: list[Op]
    ) -> TxnResult:
        await self._jitter()
        result = await self._inner.txn(compares, success, failure)
        await self._jitter()
        return result

    async def _watch(self, prefix: str, start_revision: int) -> AsyncIterator[list[Event]]:
        async for events in self._inner.watch(prefix, start_revision=start_revision):
            await self._jitter()
            yield events

    async def lease_grant(self, ttl: int) -> Lease:
        return await self._inner.lease_grant(ttl)

    async def lease_keepalive(self, lease_id: int) -> int:
        return await self._inner.lease_keepalive(lease_id)

    async def lease_revoke(self, lease_id: int) -> None:
        await self._inner.lease_revoke(lease_id)

    async def compact(self, revision: int) -> None:
        await self._inner.compact(revision)

    async def current_revision(self) -> int:
        return await self._inner.current_revision()

    async def close(self) -> None:
        await self._inner.close()


# -- what the store holds ----------------------------------------------------------------


@dataclass
class Holdings:
    """The store's allocations and replica records, decoded."""

    nodes: dict[str, NodeRecord]
    allocs: dict[str, AllocRecord]
    replicas: dict[str, ReplicaRecord]  # by replica name

    def names_on(self, node_id: str) -> set[str]:
        alloc = self.allocs.get(node_id)
        return set(alloc.replicas) if alloc is not None else set()

    def of_app(self, app_id: str) -> list[ReplicaRecord]:
        return [record for record in self.replicas.values() if record.app_id == app_id]


async def holdings(store: Store) -> Holdings:
    nodes = {kv.key: NodeRecord.from_bytes(kv.value) for kv in (await store.range(keys.NODES)).kvs}
    allocs = {
        keys.last_segment(kv.key): AllocRecord.from_bytes(kv.value)
        for kv in (await store.range(keys.ALLOC)).kvs
    }
    replicas = [ReplicaRecord.from_bytes(kv.value) for kv in (await store.range(keys.REPLICAS)).kvs]
    return Holdings(
        {record.node_id: record for record in nodes.values()}, allocs, {r.name: r for r in replicas}
    )


def assert_consistent(held: Holdings) -> None:
    """Allocations and replica records agree: every record is in its node's allocation
    with its resources, and every allocation entry has its record."""
    allocated = {}
    for node_id, alloc in held.allocs.items():
        for name, amounts in alloc.replicas.items():
            assert name not in allocated, f"{name} is allocated on {allocated[name]} and {node_id}"
            allocated[name] = node_id
            record = held.replicas.get(name)
            assert record is not None, f"{name} is allocated on {node_id} but has no record"
            assert record.node_id == node_id, (
                f"{name} is allocated on {node_id}, its record says {record.node_id}"
            )
            resources = record.resources
            assert amounts == [resources.cpu_millis, resources.memory_bytes, resources.gpus]
    missing = set(held.replicas) - set(allocated)
    assert not missing, f"records without an allocation: {sorted(missing)[:5]}"


async def assert_history_safe(
    store: Store, capacities: dict[str, Quantity], *, since: int = 1
) -> int:
    """Replay every allocation written since revision ``since``: no node is ever over
    its capacity, no replica is ever allocated on two nodes. Returns the revisions seen."""
    current = await store.range(keys.ALLOC)
    target = max((kv.mod_revision for kv in current.kvs if kv.mod_revision >= since), default=0)
    if not target:
        return 0
    where: dict[str, str] = {}
    on_node: dict[str, set[str]] = {}
    seen = 0
    async for events in store.watch(keys.ALLOC, start_revision=since):
        for event in events:
            node_id = keys.last_segment(event.kv.key)
            alloc = (
                AllocRecord.from_bytes(event.kv.value) if event.kv.value else AllocRecord(node_id)
            )
            capacity = capacities[node_id]
            revision = event.kv.mod_revision
            assert alloc.used().fits_in(capacity), f"{node_id} over-committed at {revision}"
            for name in on_node.get(node_id, set()) - set(alloc.replicas):
                del where[name]
            for name in set(alloc.replicas) - on_node.get(node_id, set()):
                assert name not in where, (
                    f"{name} on {where[name]} and {node_id} at revision {event.kv.mod_revision}"
                )
                where[name] = node_id
            on_node[node_id] = set(alloc.replicas)
        seen += 1
        if events[-1].kv.mod_revision >= target:
            return seen
    raise AssertionError("the watch ended early")


def acceptable_accelerator(app: AppSpec, node: NodeRecord) -> bool:
    if app.accelerators:
        return node.accelerator in app.accelerators
    return bool(node.accelerator) or not app.resources.gpus


def fitting_node(app: AppSpec, held: Holdings) -> str | None:
    """A node where one more replica of ``app`` fits now, judged from the store alone."""
    for node in held.nodes.values():
        if node.phase != NodePhase.READY or not acceptable_accelerator(app, node):
            continue
        if any(node.labels.get(key) != value for key, value in app.node_selector.items()):
            continue
        alloc = held.allocs.get(node.node_id, AllocRecord(node.node_id))
        if not app.resources.fits_in(node.capacity - alloc.used()):
            continue
        apps_here = [name.split("/")[1] for name in alloc.replicas]
        if set(apps_here) & app.anti_affinity:
            continue
        if app.max_per_node and apps_here.count(app.app_id) >= app.max_per_node:
            continue
        return node.node_id
    return None


# -- hypothesis strategies ---------------------------------------------------------------


@st.composite
def fleets(draw: st.DrawFn, *, max_nodes: int = 24) -> list[NodeRecord]:
    count = draw(st.integers(1, max_nodes))
    records = []
    for index in range(count):
        accelerator = draw(st.sampled_from(("", "", *GPU_TYPES)))
        records.append(
            node_record(
                f"n{index:03d}",
                cpu=draw(st.sampled_from((2000, 4000, 8000))),
                memory=draw(st.sampled_from((4, 8, 16))) * GIB,
                gpus=draw(st.integers(1, 4)) if accelerator else 0,
                accelerator=accelerator,
                zone=draw(st.sampled_from(ZONES)),
                labels=draw(
                    st.sampled_from(
                        ({}, {"pool": "a"}, {"pool": "b"}, {"pool": "a", "disk": "ssd"})
                    )
                ),
                phase=draw(
                    st.sampled_from((NodePhase.READY,) * 6 + (NodePhase.DRAINING, NodePhase.DEAD))
                ),
            )
        )
    return records


@st.composite
def app_specs(draw: st.DrawFn, app_id: str, others: Sequence[str]) -> AppSpec:
    gpus = draw(st.sampled_from((0, 0, 0, 1, 2)))
    accelerators = (
        draw(st.sampled_from(((), (), ("h100",), ("a10g", "h100"), ("",))))
        if not gpus
        else draw(st.sampled_from(((), ("h100",), ("a10g", "h100"))))
    )
    return spec(
        app_id,
        draw(st.integers(0, 10)),
        cpu=draw(st.sampled_from((250, 500, 1000, 2000))),
        memory=draw(st.sampled_from((1, 2, 4))) * GIB // 2,
        gpus=gpus,
        accelerators=accelerators,
        node_selector=draw(st.sampled_from(({}, {}, {"pool": "a"}, {"disk": "ssd"}))),
        anti_affinity=frozenset(draw(st.lists(st.sampled_from(others), max_size=2)))
        if others
        else frozenset(),
        affinity=frozenset(draw(st.lists(st.sampled_from(others), max_size=1)))
        if others
        else frozenset(),
        strategy=draw(st.sampled_from(Strategy)),
        max_per_node=draw(st.sampled_from((0, 0, 1, 2))),
        spread_zones=draw(st.booleans()),
        ray_clusters=draw(st.integers(1, 3)),
        workers_per_cluster=draw(st.sampled_from((0, 0, 1, 3))),
    )


@dataclass
class Scenario:
    """Apps racing for one fleet, then some deleted and the rest rescaled, all racing again."""

    nodes: list[NodeRecord]
    apps: list[AppSpec]
    mode: ConflictMode
    views: int  # how many views the schedulers share (1: all one view; len(apps): one each)
    deleted: set[str]
    rescaled: dict[str, int]
    seed: int


@st.composite
def scenarios(draw: st.DrawFn, *, apps: int = 16, max_nodes: int = 24) -> Scenario:
    ids = [f"app{index:02d}" for index in range(apps)]
    specs = [draw(app_specs(app_id, [other for other in ids if other != app_id])) for app_id in ids]
    deleted = set(draw(st.lists(st.sampled_from(ids), max_size=apps // 2)))
    return Scenario(
        nodes=draw(fleets(max_nodes=max_nodes)),
        apps=specs,
        mode=draw(st.sampled_from(ConflictMode)),
        views=draw(st.sampled_from((1, 4, apps))),
        deleted=deleted,
        rescaled={
            app_id: draw(st.integers(0, 12))
            for app_id in ids
            if app_id not in deleted and draw(st.booleans())
        },
        seed=draw(st.integers(0, 2**32 - 1)),
    )
