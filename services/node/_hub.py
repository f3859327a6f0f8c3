"""One store watch feeding every assignment stream of a Node service process.

Each WatchAssignments stream subscribes for its node. The hub watches the store once
and routes only what matters to whom:

- a change of ``alloc/{node}`` reaches that node's subscriptions as the replica names
  added and removed;
- a change of a replica record reaches the subscriptions that have the replica
  assigned, and only when its placement (what an agent runs) changed: status writes,
  which agents cause themselves, are not echoed back.

An event for a node or a replica that no stream watches costs one dict lookup, and a
routed one costs O(names on that node); nothing is re-sent that did not change. What a
subscription has not consumed yet is coalesced per replica name, so a slow stream
holds at most one pending entry per replica of its node.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Self

from astra import keys
from astra.records import AllocRecord, ReplicaRecord
from astra.store import (
    CompactedError,
    Event,
    EventType,
    Get,
    KeyValue,
    RangeResult,
    Store,
    UnavailableError,
)
from services.node._names import replica_key, replica_name

_log = logging.getLogger(__name__)

#: What an agent runs for a replica: its placement, without its status.
Placement = tuple[object, ...]


def placement(record: ReplicaRecord) -> Placement:
    """The fields of ``record`` an agent acts on; a change of any of them is sent."""
    resources = record.resources
    return (
        record.node_id,
        record.ray_cluster,
        record.role,
        (resources.cpu_millis, resources.memory_bytes, resources.gpus),
        tuple(tuple(sorted(model.items())) for model in record.models),
        record.app_generation,
        record.ray_head_address,
        record.retire_time,
    )


@dataclass(slots=True)
class Delta:
    """What changed for one node up to ``revision``.

    Attributes:
        revision: the store revision the delta brings its stream up to.
        upserts: replicas assigned or changed, by name; ``None`` when the record was
            not in the events and must be read (at ``revision``).
        removed: names no longer assigned.
        unchanged_since: on a resumed stream's first delta, the revision it resumes
            from: a replica in ``previous`` whose record is older needs no sending.
        previous: the names the resuming stream had.
    """

    revision: int
    upserts: dict[str, ReplicaRecord | None] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)
    unchanged_since: int = 0
    previous: frozenset[str] = frozenset()


class Subscription:
    """One stream's view of its node: what it has been sent, and what is pending."""

    def __init__(self, node_id: str, base_revision: int, names: Iterable[str]) -> None:
        self.node_id = node_id
        #: Events at or before this revision are already in the stream's first delta.
        self.base_revision = base_revision
        #: Names assigned to the node -> the placement last sent (``None``: none yet).
        self.assigned: dict[str, Placement | None] = dict.fromkeys(names)
        self._pending: Delta | None = None
        self._wake = asyncio.Event()
        self._error: Exception | None = None

    async def next(self) -> Delta:
        """The changes since the last call, coalesced; waits until there are some.

        Raises:
            UnavailableError: the hub lost its watch; the stream must be resumed.
        """
        while self._pending is None:
            if self._error is not None:
                raise self._error
            self._wake.clear()
            await self._wake.wait()
        if self._error is not None:
            raise self._error
        delta, self._pending = self._pending, None
        return delta

    def sent(self, name: str, record: ReplicaRecord) -> None:
        """Note that ``record`` was read and sent outside the events (by its stream)."""
        if name in self.assigned and self.assigned[name] is None:
            self.assigned[name] = placement(record)

    def _delta(self, revision: int) -> Delta:
        if self._pending is None:
            self._pending = Delta(revision)
            self._wake.set()
        self._pending.revision = revision
        return self._pending

    def upsert(self, revision: int, name: str, record: ReplicaRecord | None) -> None:
        """Queue ``name`` as assigned or changed (``record`` ``None``: to be read)."""
        delta = self._delta(revision)
        delta.removed.discard(name)
        delta.upserts[name] = record

    def remove(self, revision: int, name: str) -> None:
        """Queue ``name`` as no longer assigned."""
        delta = self._delta(revision)
        delta.upserts.pop(name, None)
        delta.removed.add(name)

    def fail(self, error: Exception) -> None:
        """End the subscription: :meth:`next` raises ``error``."""
        self._error = error
        self._wake.set()


class AssignmentHub:
    """Routes store changes to the subscriptions of the nodes they concern.

    Use as ``async with AssignmentHub(store) as hub`` or :meth:`start` / :meth:`close`.
    """

    def __init__(self, store: Store, *, history: int = 4096) -> None:
        """
        Args:
            store: where placements and replicas live.
            history: how many recent events are kept to bring a new subscription up to
                date with events the hub routed while it was reading its snapshot.
        """
        self._store = store
        self._history_cap = history
        self._history: deque[tuple[int, list[Event]]] = deque()
        self._history_size = 0
        #: Every routed event after this revision is in the history.
        self._history_floor = 0
        self._revision = 0
        self._by_node: dict[str, set[Subscription]] = {}
        self._by_replica: dict[str, set[Subscription]] = {}
        self._task: asyncio.Task[None] | None = None
        #: Set while the watch runs; ``_epoch`` counts its restarts.
        self._ready = asyncio.Event()
        self._epoch = 0

    @property
    def revision(self) -> int:
        """The store revision the hub has routed every change up to."""
        return self._revision

    async def start(self) -> None:
        """Start watching the store from its current revision. Idempotent."""
        if self._task is None:
            await self._reset()
            self._task = asyncio.create_task(self._run(), name="astra.node.assignment-hub")

    async def close(self) -> None:
        """Stop watching and end every subscription. Idempotent."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._fail_all(UnavailableError("the Node service is shutting down"))

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- subscriptions -----------------------------------------------------------------

    async def subscribe(self, node_id: str, start_revision: int = 0) -> tuple[Subscription, Delta]:
        """Subscribe to ``node_id``'s assignments.

        Returns the subscription and its first delta: every assigned replica (to be
        read) at the revision of the snapshot or, when resuming from
        ``start_revision``, the names removed since then as well.

        Raises:
            CompactedError: ``start_revision`` is older than the store's history.
            ValueError: ``start_revision`` is in the future.
        """
        alloc_key = keys.alloc(node_id)
        while True:
            await self._ready.wait()
            epoch = self._epoch
            read = (await self._store.txn((), [Get(alloc_key)])).results[0]
            assert isinstance(read, RangeResult)
            revision = read.revision
            kvs = read.kvs
            names = _assigned_names(kvs[0] if kvs else None)
            first = Delta(revision, upserts=dict.fromkeys(names))
            if start_revision:
                if start_revision > revision + 1:
                    raise ValueError(
                        f"start_revision {start_revision} is past the store's revision {revision}"
                    )
                previous = _assigned_names(
                    await self._store.get(alloc_key, revision=start_revision - 1)
                )
                first.removed = previous - names
                first.unchanged_since, first.previous = start_revision, frozenset(previous)
            if self._epoch == epoch and self._ready.is_set() and revision >= self._history_floor:
                break
            # The watch restarted, or routed more than the history holds, while reading.
        subscription = Subscription(node_id, revision, names)
        self._by_node.setdefault(node_id, set()).add(subscription)
        for name in names:
            self._by_replica.setdefault(name, set()).add(subscription)
        for event_revision, group in self._history:
            if event_revision > revision:
                self._route(event_revision, group, only=subscription)
        return subscription, first

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop routing to ``subscription``. Idempotent."""
        _discard(self._by_node, subscription.node_id, subscription)
        for name in subscription.assigned:
            _discard(self._by_replica, name, subscription)

    async def read(
        self, names: Iterable[str], revision: int
    ) -> dict[str, tuple[ReplicaRecord, int]]:
        """The records of the replicas ``names`` at ``revision`` (the latest if it was
        compacted meanwhile), with their ``mod_revision``; absent ones are left out."""
        names = list(names)
        kvs = await asyncio.gather(*(self._read_one(name, revision) for name in names))
        return {
            name: (ReplicaRecord.from_bytes(kv.value), kv.mod_revision)
            for name, kv in zip(names, kvs, strict=True)
            if kv is not None
        }

    async def _read_one(self, name: str, revision: int) -> KeyValue | None:
        key = replica_key(name)
        if key is None:
            _log.warning("an allocation names %r, which is not a replica name", name)
            return None
        try:
            return await self._store.get(key, revision=revision)
        except CompactedError:
            return await self._store.get(key)

    # -- routing -----------------------------------------------------------------------

    async def _reset(self) -> None:
        self._revision = await self._store.current_revision()
        self._history.clear()
        self._history_size = 0
        self._history_floor = self._revision
        self._ready.set()

    async def _run(self) -> None:
        delay = 0.1
        while True:
            try:
                if not self._ready.is_set():
                    await self._reset()
                async for events in self._store.watch(keys.ROOT, start_revision=self._revision + 1):
                    self._apply(events)
                    delay = 0.1
                error: Exception = UnavailableError("the store watch ended")
            except (CompactedError, UnavailableError) as exc:
                error = exc
            except Exception as exc:
                _log.exception("assignment watch failed; restarting it")
                error = exc
            _log.warning("assignment watch restarts: %s", error)
            # Subscriptions now miss events: end them, their agents resume from their revision.
            self._ready.clear()
            self._epoch += 1
            self._fail_all(
                UnavailableError(f"the assignment watch restarted ({error}); watch again")
            )
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 5.0)

    def _apply(self, events: list[Event]) -> None:
        self._revision = max(self._revision, events[-1].kv.mod_revision)
        relevant = [
            event for event in events if event.kv.key.startswith((keys.ALLOC, keys.REPLICAS))
        ]
        for revision, grouped in itertools.groupby(
            relevant, key=lambda event: event.kv.mod_revision
        ):
            group = list(grouped)
            self._remember(revision, group)
            self._route(revision, group)

    def _remember(self, revision: int, group: list[Event]) -> None:
        self._history.append((revision, group))
        self._history_size += len(group)
        while self._history_size > self._history_cap:
            dropped, dropped_group = self._history.popleft()
            self._history_size -= len(dropped_group)
            self._history_floor = dropped

    def _route(self, revision: int, group: list[Event], only: Subscription | None = None) -> None:
        """Route the events of one revision. Placements go first: they decide which
        replicas are whose, so a replica placed in the same revision is routed too."""
        for event in group:
            if event.kv.key.startswith(keys.ALLOC):
                node_id = event.kv.key.removeprefix(keys.ALLOC)
                subscriptions = self._targets(self._by_node.get(node_id), only)
                if subscriptions:
                    names = _assigned_names(event.kv if event.type is EventType.PUT else None)
                    for subscription in subscriptions:
                        if revision > subscription.base_revision:
                            self._reassign(subscription, revision, names)
        for event in group:
            if event.kv.key.startswith(keys.REPLICAS):
                name = replica_name(event.kv.key)
                subscriptions = self._targets(self._by_replica.get(name), only)
                if subscriptions:
                    record = (
                        ReplicaRecord.from_bytes(event.kv.value)
                        if event.type is EventType.PUT
                        else None
                    )
                    for subscription in subscriptions:
                        if revision > subscription.base_revision:
                            _replica_changed(subscription, revision, name, record)

    @staticmethod
    def _targets(
        subscriptions: set[Subscription] | None, only: Subscription | None
    ) -> list[Subscription]:
        if not subscriptions:
            return []
        if only is None:
            return list(subscriptions)
        return [only] if only in subscriptions else []

    def _reassign(self, subscription: Subscription, revision: int, names: set[str]) -> None:
        assigned = subscription.assigned
        for name in assigned.keys() - names:
            del assigned[name]
            _discard(self._by_replica, name, subscription)
            subscription.remove(revision, name)
        for name in names - assigned.keys():
            assigned[name] = None
            self._by_replica.setdefault(name, set()).add(subscription)
            subscription.upsert(revision, name, None)

    def _fail_all(self, error: Exception) -> None:
        for subscriptions in self._by_node.values():
            for subscription in subscriptions:
                subscription.fail(error)
        self._by_node.clear()
        self._by_replica.clear()


def _replica_changed(
    subscription: Subscription, revision: int, name: str, record: ReplicaRecord | None
) -> None:
    if record is None:  # deleted while still assigned: stop it; a new record is sent afresh
        subscription.assigned[name] = None
        subscription.remove(revision, name)
        return
    spec = placement(record)
    if subscription.assigned.get(name) != spec:
        subscription.assigned[name] = spec
        subscription.upsert(revision, name, record)


def _assigned_names(kv: KeyValue | None) -> set[str]:
    return set(AllocRecord.from_bytes(kv.value).replicas) if kv is not None and kv.value else set()


def _discard(index: dict[str, set[Subscription]], key: str, subscription: Subscription) -> None:
    subscriptions = index.get(key)
    if subscriptions is not None:
        subscriptions.discard(subscription)
        if not subscriptions:
            del index[key]
